"""One SGPO step through its graph: keep, roll back (stored as experience), unsafe model
edits, malformed model output; the kept version is what the agent loads next."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from trajectories import make_record, vetoed

from agentx.evolution.graph import Evolver, build_evolution_graph
from agentx.evolution.store import HarnessStore, RunTrajectory
from agentx.harness import load_harness
from agentx.models import Decision, ExperimentStatus
from agentx.research.catalog import load_catalog
from agentx.settings import load_settings


def _harmful_history() -> list[RunTrajectory]:
    """Two runs in which the high-prior, risky daily_rotation was picked first and vetoed,
    while the low-risk recency_feature and seen_item_filter truly won."""
    runs = []
    for run_id in ("run-1", "run-2"):
        runs.append(
            RunTrajectory(
                run_id=run_id,
                world="tiny",
                objective="watch_time",
                north_star="watch_time",
                records=[
                    vetoed(0, "daily_rotation", true=-0.01),
                    make_record(
                        1,
                        "candidate_pool_size",
                        ExperimentStatus.VETOED,
                        measured=0.0,
                        true=-0.02,
                        cause="guardrail_harm",
                        decision=Decision.DISCARD,
                    ),
                    make_record(
                        2, "recency_feature", ExperimentStatus.KEPT, measured=0.03, true=0.03
                    ),
                    make_record(
                        3, "seen_item_filter", ExperimentStatus.KEPT, measured=0.04, true=0.04
                    ),
                ],
            )
        )
    return runs


def _evolver(tmp_path: Path, tiny_target, llm=None, **evolution) -> Evolver:
    settings = load_settings(world="tiny", workspace=tmp_path / "ws", evolution=evolution)
    store = HarnessStore(settings.workspace / "harness")
    for run in _harmful_history():
        store.save_trajectory(run)
    return Evolver(settings, store, tiny_target, load_catalog(), tiny_target.analyse_data, llm)


def test_a_helpful_edit_is_kept_and_becomes_the_active_harness(tmp_path, tiny_target) -> None:
    evolver = _evolver(tmp_path, tiny_target, epsilon=0.0)
    graph = build_evolution_graph(evolver)
    steps = []
    for _ in range(5):  # roll back what does not help, try the next gradient item
        steps.append(graph.invoke({"agent": "brainstorm"})["step"])
        if steps[-1].outcome in ("kept", "no_gradient"):
            break
    kept = steps[-1]
    assert kept.outcome == "kept", [s.line() for s in steps]
    assert all(s.outcome == "rolled_back" and s.gain <= 0 for s in steps[:-1])
    assert len({s.edit.key() for s in steps}) == len(steps)  # never the same edit twice
    assert kept.gain is not None and kept.gain > 0
    assert kept.new_version == kept.base_version + 1
    [change] = kept.edit.edits
    active = evolver.store.harness("brainstorm")
    section, name = change.field.split(".")
    assert active[section][name] == pytest.approx(change.new)
    assert active["version"] == kept.new_version
    assert load_harness("brainstorm")[section][name] == pytest.approx(change.old)
    assert [s.id for s in evolver.store.steps("brainstorm")] == [s.id for s in steps]
    assert "e0" in kept.gradient.loss_text


def test_an_edit_below_epsilon_is_rolled_back_and_not_retried(tmp_path, tiny_target) -> None:
    evolver = _evolver(tmp_path, tiny_target, epsilon=1.0)
    graph = build_evolution_graph(evolver)
    first = graph.invoke({"agent": "brainstorm"})["step"]
    assert first.outcome == "rolled_back"
    assert evolver.store.version("brainstorm") == first.base_version  # nothing committed
    second = graph.invoke({"agent": "brainstorm"})["step"]
    assert second.outcome == "rolled_back"
    assert second.id != first.id
    assert second.edit.key() != first.edit.key()  # the refinement experience was used


def test_evaluation_without_replayable_rollouts_is_not_evolved(tmp_path, tiny_target) -> None:
    evolver = _evolver(tmp_path, tiny_target)
    step = build_evolution_graph(evolver).invoke({"agent": "evaluation"})["step"]
    # the hand-made records have no arms to replay, so no edit can be judged
    assert step.outcome in ("not_enough_tasks", "no_gradient")
    assert evolver.store.version("evaluation") == load_harness("evaluation")["version"]


def test_an_unknown_agent_is_a_recorded_failure_not_a_crash(tmp_path, tiny_target) -> None:
    step = build_evolution_graph(_evolver(tmp_path, tiny_target)).invoke({"agent": "developing"})
    assert step["step"].outcome == "failed"
    assert "not evolvable" in step["step"].reason


def _reply(payload: object) -> AIMessage:
    return AIMessage(content=json.dumps(payload))


_GRADIENT = {
    "loss_text": "Risky techniques were picked first and vetoed (e0, e1).",
    "items": [
        {
            "criterion": "guardrail_harm",
            "category": "missing",
            "finding": "risk is under-weighted",
            "field": "score_weights.risk",
            "direction": "increase",
            "magnitude": 0.9,
        }
    ],
}


def test_a_model_edit_outside_the_bounds_is_asked_again(tmp_path, tiny_target) -> None:
    """Semantic validation: an edit out of the rubric's bounds is shown back to the model;
    its corrected edit is used, and the re-ask is recorded in the step."""
    wild = {"changes": [{"field": "score_weights.risk", "value": 40.0}], "rationale": "more"}
    sane = {"changes": [{"field": "score_weights.risk", "value": 3.0}], "rationale": "more"}
    model = FakeMessagesListChatModel(responses=[_reply(_GRADIENT), _reply(wild), _reply(sane)])
    evolver = _evolver(tmp_path, tiny_target, model)
    step = build_evolution_graph(evolver).invoke({"agent": "brainstorm"})["step"]
    assert step.gradient.source == "model"
    assert step.edit.source == "model" and step.edit.edits[0].new == 3.0
    assert "score_weights.risk=40.0 is outside [0.0, 4.0]" in step.reason


def test_a_model_edit_that_stays_out_of_bounds_falls_back_to_the_rubric(
    tmp_path, tiny_target
) -> None:
    wild = {"changes": [{"field": "score_weights.risk", "value": 40.0}], "rationale": "more"}
    model = FakeMessagesListChatModel(responses=[_reply(_GRADIENT), *[_reply(wild)] * 3])
    evolver = _evolver(tmp_path, tiny_target, model)
    step = build_evolution_graph(evolver).invoke({"agent": "brainstorm"})["step"]
    assert step.edit is not None and step.edit.source == "rubric"
    assert "model edit unusable" in step.reason and "outside [0.0, 4.0]" in step.reason
    assert all(edit.new <= 4.0 for edit in step.edit.edits)


def test_an_empty_model_edit_is_not_accepted(tmp_path, tiny_target) -> None:
    """Junk output (no change at all) never replaces the rubric refiner's edit."""
    empty = {"changes": [], "add_rules": [], "rationale": "nothing to do"}
    model = FakeMessagesListChatModel(responses=[_reply(_GRADIENT), *[_reply(empty)] * 3])
    evolver = _evolver(tmp_path, tiny_target, model)
    step = build_evolution_graph(evolver).invoke({"agent": "brainstorm"})["step"]
    assert step.edit is not None and step.edit.source == "rubric" and step.edit.edits
    assert "the edit changes nothing" in step.reason


def test_a_model_gradient_without_an_evolvable_field_keeps_the_rubric_gradient(
    tmp_path, tiny_target
) -> None:
    junk = {
        "loss_text": "Something is off somewhere.",
        "items": [
            {"criterion": "x", "category": "missing", "finding": "vague finding", "field": "1.0"}
        ],
    }
    model = FakeMessagesListChatModel(responses=[_reply(junk)] * 3 + [_reply({"changes": []})])
    evolver = _evolver(tmp_path, tiny_target, model)
    step = build_evolution_graph(evolver).invoke({"agent": "brainstorm"})["step"]
    assert step.gradient.source == "rubric"
    assert "model gradient unusable" in step.reason and "evolvable field" in step.reason


def test_malformed_model_output_falls_back_to_the_rubric(tmp_path, tiny_target) -> None:
    bad = AIMessage(content="I think you should weigh risk more.")
    model = FakeMessagesListChatModel(responses=[bad] * 6)
    evolver = _evolver(tmp_path, tiny_target, model, epsilon=0.0)
    step = build_evolution_graph(evolver).invoke({"agent": "brainstorm"})["step"]
    assert step.gradient.source == "rubric"
    assert step.edit.source == "rubric"
    assert "model gradient unusable" in step.reason
    assert step.outcome in ("kept", "rolled_back")


def test_a_step_inside_a_run_is_taken_once_even_when_the_node_reruns(tmp_path, tiny_target) -> None:
    evolver = _evolver(tmp_path, tiny_target, epsilon=1.0)
    graph = build_evolution_graph(evolver)
    request = {"agent": "brainstorm", "run_id": "run-7", "iteration": 3}
    first = graph.invoke(request)["step"]
    again = graph.invoke(request)["step"]  # a resumed run re-entering evolve_harness
    assert again == first
    assert [s.id for s in evolver.store.steps()] == [first.id]


def test_invalid_evolution_settings_name_the_field(tmp_path) -> None:
    from agentx.settings import SettingsError

    with pytest.raises(SettingsError, match="evolution.every"):
        load_settings(workspace=tmp_path, evolution={"every": 0})
    with pytest.raises(SettingsError, match="evolution.agents"):
        load_settings(workspace=tmp_path, evolution={"agents": ["developing"]})
