"""Harness evolution (SGPO) parts on hand-made trajectories: rubric, evaluator, refiner,
safety check, versioned store and replay."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml
from trajectories import kept, make_record, make_run, vetoed

from agentx.evolution.diagnose import diagnose
from agentx.evolution.models import EvolutionStep, FieldEdit, HarnessEdit
from agentx.evolution.refine import apply_edit, refine_offline, step_value
from agentx.evolution.replay import ReplayContext, replay_brainstorm
from agentx.evolution.rubric import load_rubric
from agentx.evolution.safety import unsafe_reasons
from agentx.evolution.store import HarnessStore
from agentx.harness import HarnessError, default_prompts_dir, load_harness
from agentx.models import Decision, ExperimentStatus
from agentx.research.catalog import load_catalog
from agentx.settings import load_settings


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(world="tiny", workspace=tmp_path / "ws")


def test_rubrics_ship_valid_and_point_at_evolvable_fields() -> None:
    for agent in ("brainstorm", "evaluation"):
        rubric = load_rubric(agent)
        harness = load_harness(agent)
        for name, criterion in rubric.criteria.items():
            assert criterion.field in rubric.evolvable, name
        for field in rubric.evolvable:
            node = harness
            for part in field.split("."):
                node = node[part]
            assert isinstance(node, int | float), field


def test_a_rubric_pointing_at_a_protected_field_is_refused(tmp_path: Path) -> None:
    agent_dir = tmp_path / "brainstorm"
    agent_dir.mkdir()
    data = yaml.safe_load((default_prompts_dir() / "brainstorm" / "rubric.yaml").read_text())
    data["criteria"]["regret"]["field"] = "rules"
    (agent_dir / "rubric.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError, match="not evolvable.*regret"):
        load_rubric("brainstorm", tmp_path)


def test_brainstorm_diagnosis_names_the_flagged_experiments(settings) -> None:
    runs = [
        make_run(
            [
                vetoed(0, "daily_rotation", true=0.0),
                make_record(
                    1,
                    "daily_rotation",
                    ExperimentStatus.DISCARDED,
                    measured=0.0,
                    true=-0.01,
                    cause="no_significance",
                ),
                make_record(
                    2,
                    "recency_feature",
                    ExperimentStatus.ABANDONED,
                    cause="implementation_defect: tests",
                ),
                make_record(3, "seen_item_filter", ExperimentStatus.KEPT, measured=0.08, true=0.07),
            ]
        )
    ]
    gradient = diagnose("brainstorm", runs, load_rubric("brainstorm"), settings)
    found = {item.criterion: item for item in gradient.items}
    assert found["guardrail_harm"].evidence == ["e0"]
    assert found["guardrail_harm"].field == "score_weights.risk"
    assert found["repeated_harm"].evidence == ["e1"]
    assert found["implementation_waste"].evidence == ["e2"]
    # e0..e2 were worse than the later seen_item_filter: mis-ordered picks.
    assert found["regret"].evidence == ["e0", "e1", "e2"]
    assert found["regret"].category == "mis-ordered"
    assert "e0" in gradient.loss_text and gradient.loss > 0
    assert [i.magnitude for i in gradient.items] == sorted(
        (i.magnitude for i in gradient.items), reverse=True
    )


def test_evaluation_diagnosis_uses_ground_truth(settings) -> None:
    runs = [
        make_run(
            [
                # kept, but truly hurt active_days by 3 % (tolerance 1 %)
                make_record(
                    0,
                    "daily_rotation",
                    ExperimentStatus.KEPT,
                    measured=0.05,
                    true=0.04,
                    true_guardrails={"active_days": -0.03},
                ),
                # vetoed on a guardrail, truly good and harmless
                make_record(
                    1,
                    "recency_feature",
                    ExperimentStatus.VETOED,
                    measured=0.02,
                    true=0.03,
                    cause="guardrail_harm",
                    decision=Decision.DISCARD,
                    true_guardrails={"active_days": 0.0},
                ),
                kept(2, "seen_item_filter", 0.05),
            ]
        )
    ]
    gradient = diagnose("evaluation", runs, load_rubric("evaluation"), settings)
    found = {item.criterion: item for item in gradient.items}
    assert found["kept_guardrail_harm"].evidence == ["e0"]
    assert found["false_veto"].evidence == ["e1"]
    assert found["false_veto"].direction == "decrease"
    assert "false_keep_early" not in found  # nothing stopped early


def test_no_gradient_when_nothing_went_wrong(settings) -> None:
    runs = [
        make_run(
            [
                make_record(
                    0,
                    "seen_item_filter",
                    ExperimentStatus.KEPT,
                    measured=0.05,
                    true=0.05,
                    expected=0.03,
                )
            ]
        )
    ]
    assert diagnose("brainstorm", runs, load_rubric("brainstorm"), settings).items == []


def test_refiner_steps_within_bounds_and_skips_tried_edits(settings) -> None:
    assert step_value(0.6, "increase", 1.5, 0.0, 4.0) == pytest.approx(0.9)
    assert step_value(3.5, "increase", 1.5, 0.0, 4.0) == 4.0
    assert step_value(0.0, "increase", 1.5, 0.0, 0.2) == pytest.approx(0.02)
    assert step_value(0.02, "decrease", 1.5, 0.005, 0.1) == pytest.approx(0.013333)
    runs = [
        make_run(
            [
                vetoed(0, "daily_rotation", true=0.0),
                kept(1, "recency_feature", 0.03),
            ]
        )
    ]
    rubric, harness = load_rubric("brainstorm"), load_harness("brainstorm")
    gradient = diagnose("brainstorm", runs, rubric, settings)
    first = refine_offline("brainstorm", gradient, harness, rubric, tried=set())
    assert first is not None and first.edits[0].field == gradient.items[0].field
    second = refine_offline("brainstorm", gradient, harness, rubric, tried={first.key()})
    assert second is not None and second.key() != first.key()
    edited = apply_edit(harness, first)
    field = first.edits[0].field.split(".")
    assert edited[field[0]][field[1]] == first.edits[0].new
    assert harness[field[0]][field[1]] == first.edits[0].old  # the original is untouched


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            HarnessEdit(
                agent="brainstorm", edits=[FieldEdit(field="policy.batch_size", old=6, new=9)]
            ),
            "not an evolvable field",
        ),
        (
            HarnessEdit(
                agent="brainstorm", edits=[FieldEdit(field="score_weights.risk", old=0.6, new=9.0)]
            ),
            "outside",
        ),
        (HarnessEdit(agent="brainstorm", files={"rubric.yaml": "criteria: {}"}), "protected"),
        (HarnessEdit(agent="brainstorm", files={"../developing/system.md": "x"}), "own directory"),
        (HarnessEdit(agent="brainstorm"), "changes nothing"),
    ],
)
def test_safety_check_refuses_unsafe_edits(edit: HarnessEdit, problem: str) -> None:
    problems = unsafe_reasons(edit, load_harness("brainstorm"), load_rubric("brainstorm"))
    assert any(problem in p for p in problems), problems


def test_safety_check_passes_a_bounded_edit_with_a_rule() -> None:
    edit = HarnessEdit(
        agent="brainstorm",
        edits=[FieldEdit(field="score_weights.risk", old=0.6, new=0.9)],
        add_rules=["Weigh guardrail history before the expected effect."],
    )
    assert unsafe_reasons(edit, load_harness("brainstorm"), load_rubric("brainstorm")) == []


def test_store_versions_harness_without_touching_the_checkout(tmp_path: Path) -> None:
    store = HarnessStore(tmp_path / "harness")
    bundled = load_harness("brainstorm")
    assert store.prompts_dir("brainstorm") == default_prompts_dir()
    assert store.version("brainstorm") == bundled["version"]
    harness = copy.deepcopy(bundled)
    harness["score_weights"]["risk"] = 0.9
    number = store.commit("brainstorm", harness, {}, "test edit\nsecond line")
    assert number == bundled["version"] + 1
    assert store.version("brainstorm") == number
    assert store.harness("brainstorm")["score_weights"]["risk"] == 0.9
    assert (store.prompts_dir("brainstorm") / "brainstorm" / "generate.md").exists()
    assert store.versions("brainstorm") == [bundled["version"], number]
    assert store.version("evaluation") == load_harness("evaluation")["version"]
    assert load_harness("brainstorm") == bundled  # prompts/ itself is unchanged
    repo = default_prompts_dir().parent
    status = subprocess.run(
        ["git", "status", "--porcelain", "prompts/brainstorm/harness.yaml"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.stdout.strip() == ""


def test_store_ledger_survives_a_torn_last_line(tmp_path: Path) -> None:
    store = HarnessStore(tmp_path / "harness")
    step = EvolutionStep(
        id="s1", agent="brainstorm", base_version=1, outcome="rolled_back", reason="r"
    )
    store.record_step(step)
    with (tmp_path / "harness" / "steps.jsonl").open("a") as handle:
        handle.write('{"id": "s2", "agent": "brainst')  # a writer killed mid-line
    assert [s.id for s in store.steps()] == ["s1"]
    assert store.step("s1") == step


def test_trajectories_round_trip_in_save_order(tmp_path: Path) -> None:
    store = HarnessStore(tmp_path / "harness")
    store.save_trajectory(
        make_run(
            [make_record(0, "daily_rotation", ExperimentStatus.KEPT, measured=0.1)], run_id="run-2"
        )
    )
    store.save_trajectory(make_run([], run_id="run-10"))
    updated = make_run(
        [
            make_record(0, "daily_rotation", ExperimentStatus.KEPT, measured=0.1),
            make_record(1, "recency_feature", ExperimentStatus.DISCARDED, measured=0.0),
        ],
        run_id="run-2",
    )
    store.save_trajectory(updated)  # re-saved: keeps its place
    runs = store.trajectories()
    assert [r.run_id for r in runs] == ["run-2", "run-10"]
    assert [r.id for r in runs[0].records] == ["e0", "e1"]


def test_brainstorm_replay_rewards_the_harness_that_picks_better(tiny_target) -> None:
    # daily_rotation has the higher prior but was vetoed; recency_feature truly won.
    runs = [
        make_run(
            [
                vetoed(0, "daily_rotation", true=-0.01),
                kept(1, "recency_feature", 0.03),
            ]
        )
    ]
    catalog = load_catalog()
    rubric = load_rubric("brainstorm")
    default = load_harness("brainstorm")
    cautious = copy.deepcopy(default)
    cautious["score_weights"]["risk"] = 4.0
    context = ReplayContext(catalog, tiny_target.describe(), tiny_target.analyse_data())
    args = (runs, rubric, context, 0)
    base = replay_brainstorm(default, *args)
    better = replay_brainstorm(cautious, *args)
    assert base.tasks == better.tasks == 1
    assert better.score > base.score
    assert replay_brainstorm(default, *args) == base  # common random numbers: reproducible
    assert -0.02 <= base.score <= 0.03  # an expectation over the two options' values


def test_regret_is_attributed_to_the_part_that_favoured_the_better_option(
    settings, tiny_target
) -> None:
    from agentx.evolution.diagnose import attribute_regret
    from agentx.evolution.replay import regret_attribution

    # The pick (daily_rotation) led on the objective prior; the better, later option
    # (recency_feature) is the safer one with a known watch-time lever (business "+").
    runs = [
        make_run(
            [
                make_record(
                    0,
                    "daily_rotation",
                    ExperimentStatus.DISCARDED,
                    measured=0.0,
                    true=-0.01,
                    cause="no_significance",
                ),
                kept(1, "recency_feature", 0.03),
            ]
        )
    ]
    rubric, harness = load_rubric("brainstorm"), load_harness("brainstorm")
    # The scenario's beliefs are set here, not read from the catalog's current priors.
    catalog = load_catalog()
    catalog["daily_rotation"] = catalog["daily_rotation"].model_copy(update={"prior_effect": 0.03})
    context = ReplayContext(catalog, tiny_target.describe(), tiny_target.analyse_data())
    advantage = regret_attribution(harness, runs, rubric, context, tolerance=0.01)
    assert advantage["business"] > advantage["risk"] > 0 > advantage["objective"]
    gradient = attribute_regret(diagnose("brainstorm", runs, rubric, settings), advantage, rubric)
    regret = [item for item in gradient.items if item.criterion == "regret"]
    assert [(i.field, i.direction) for i in regret] == [
        ("score_weights.business", "increase"),
        ("score_weights.objective", "decrease"),
    ]
    assert "led on business" in regret[0].finding


def test_a_broken_active_pointer_is_one_clear_error(tmp_path: Path) -> None:
    store = HarnessStore(tmp_path / "harness")
    store.commit("brainstorm", load_harness("brainstorm"), {}, "test")
    (tmp_path / "harness" / "active.json").write_text("{not json")
    with pytest.raises(HarnessError, match="delete it to run the bundled"):
        store.harness("brainstorm")
    (tmp_path / "harness" / "active.json").write_text('{"brainstorm": 9}')
    with pytest.raises(HarnessError, match="v9 is missing"):
        store.harness("brainstorm")
    assert store.harness("evaluation") == load_harness("evaluation")  # others unaffected


def test_cumulative_guardrail_harm_counts_as_guardrail_harm(settings) -> None:
    """A change stopped because it broke a guardrail on top of the earlier keeps teaches the
    policy the same as a veto: both brainstorm criteria flag it (it once matched by text)."""
    runs = [
        make_run(
            [
                make_record(
                    0,
                    "daily_rotation",
                    ExperimentStatus.DISCARDED,
                    measured=0.01,
                    true=0.0,
                    cause="cumulative_guardrail_harm",
                ),
                make_record(1, "daily_rotation", ExperimentStatus.DISCARDED, measured=0.0),
            ]
        )
    ]
    found = {
        item.criterion: item
        for item in diagnose("brainstorm", runs, load_rubric("brainstorm"), settings).items
    }
    assert found["guardrail_harm"].evidence == ["e0"]
    assert found["repeated_harm"].evidence == ["e1"]


def test_the_evaluation_replay_reads_the_traffic_the_experiment_had(settings, tiny_target) -> None:
    """An experiment that ran beside others (a traffic slot) is replayed on its own users,
    and the stages it already ran are read back, not simulated again: a replay step costs
    file reads, not rollouts (tens of seconds each on the default world)."""
    from agentx.agents.evaluation.capacity import layer_slots
    from agentx.agents.evaluation.policy import load_policy
    from agentx.agents.evaluation.rollout import run_rollout
    from agentx.evolution.replay import replay_evaluation

    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    slot = layer_slots("wave-salt", 2)[1]
    run_settings = settings.model_copy(update={"seed": 0, "autonomous": True})
    rollout = run_rollout(
        tiny_target, control, treatment, "e0", run_settings, rollback=False, slot=slot
    )
    tiny_target.rollback(treatment)
    record = make_record(0, "recency_feature", ExperimentStatus.DISCARDED, measured=0.0, true=0.0)
    record = record.model_copy(
        update={
            "rollout": rollout,
            "traffic": slot,
            "arms": {"control": control.model_dump(), "treatment": treatment.model_dump()},
        }
    )
    tiny_target.last_timing = {}
    score = replay_evaluation(
        load_policy(), [make_run([record])], load_rubric("evaluation"), tiny_target, settings
    )
    assert score.tasks == 1
    assert tiny_target.last_timing == {}  # every stage was read back
