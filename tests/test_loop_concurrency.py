"""Experiments in flight side by side (issue 16): traffic layers, waiting for sample,
serialised merging, reproducibility and kill -9 resume at K = 4, through the real graph on
the tiny world (real sandbox, git worktrees, Chroma memory, SQLite checkpoints)."""

from __future__ import annotations

import os
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from processes import kill_during_second_experiment

from agentx.agents.evaluation.capacity import (
    MeasuredEffect,
    NoiseEstimate,
    detection_kept,
    effect_spread,
    final_stage_kept,
    fits,
    layer_slots,
    measured_effects,
    noise_estimate,
    plausible_effects,
    wave_salt,
)
from agentx.agents.evaluation.rollout import stage_assignment
from agentx.graph.context import ResourcePool, bind
from agentx.graph.nodes import Nodes, in_flight_keys
from agentx.graph.resources import build_resources
from agentx.graph.state import ExperimentOutcome, Finished, QueueReason, Scheduled
from agentx.memory.store import open_store
from agentx.models import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    Goal,
    MetricEffect,
    Proposal,
    Rollout,
    StageResult,
    Verdict,
)
from agentx.report.workspace import load_run
from agentx.research.catalog import load_catalog
from agentx.runner import run_loop
from agentx.settings import RolloutStage, load_settings
from agentx.summary import RunSummary
from agentx.target.models import MetricNoise
from agentx.workspace import git

STAGES = [
    {"name": "canary", "treatment_share": 0.05, "days": 2},
    {"name": "full", "treatment_share": 0.5, "days": 7},
]
ITERATIONS = 6


def _settings(workspace: Path, **overrides: Any):
    return load_settings(
        world="tiny",
        iterations=ITERATIONS,
        seed=3,
        workspace=workspace,
        evolution={"enabled": False},
        stages=STAGES,
        # tiny's 2,000 users power next to nothing, so by the default rule its experiments
        # would run one at a time (tested above): the waves' mechanics are what is tested here.
        concurrency={"max_in_flight": 4, "power_kept": 0.1},
        **overrides,
    )


def _decisions(summary: RunSummary) -> list[tuple[Any, ...]]:
    return [
        (e.iteration, e.technique, e.params, e.status, e.measured_effect, e.traffic_share)
        for e in summary.experiments
    ]


def _comparable(summary: RunSummary) -> dict[str, Any]:
    """The summary without the origin commit's hash (each workspace commits its own)."""
    dump = summary.model_dump()
    if dump.get("cumulative"):
        dump["cumulative"].pop("origin")
    return dump


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSummary, Path]:
    workspace = tmp_path_factory.mktemp("k4") / "ws"
    return run_loop(_settings(workspace)), workspace


def _records(workspace: Path) -> list[ExperimentRecord]:
    """The run's ledger, read back from its checkpoints as `agentx report` reads it."""
    return load_run(_settings(workspace)).values["experiments"]


# ---------------------------------------------------------------------- traffic layers
@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_a_wave_splits_users_into_disjoint_slices_that_keep_their_arms(k: int) -> None:
    users = np.arange(20_000)
    enrolled = []
    for index, slot in enumerate(layer_slots(wave_salt("run", 7), k)):
        previous = None
        for share in (0.05, 0.2, 0.5):
            arms = stage_assignment(users, f"experiment-{index}", share, slot)
            if previous is not None:  # a wider stage keeps every earlier user in their arm
                before = previous >= 0
                assert np.array_equal(arms[before], previous[before])
            previous = arms
        control, treatment = int((previous == 0).sum()), int((previous == 1).sum())
        assert abs(control - treatment) < 0.1 * control  # each slice has its own control
        enrolled.append(set(np.flatnonzero(previous >= 0).tolist()))
    for one, other in combinations(enrolled, 2):
        assert not one & other
    assert sum(map(len, enrolled)) > 0.95 * users.size  # the layer's traffic is used


def test_a_stage_that_fits_in_its_slice_keeps_the_users_it_would_have_alone() -> None:
    """Stage shares are shares of all users: a wave's slice caps them only where both arms
    do not fit in it. A canary beside three others is as big as alone, a ramp of 20% per
    arm is cut to the slice's halves, and the full stage to the slice."""
    users = np.arange(40_000)
    slot = layer_slots(wave_salt("run", 3), 4)[2]
    for share, kept in ((0.05, 1.0), (0.2, 0.625), (0.5, 0.25)):
        assert slot.kept(share) == pytest.approx(kept)
        alone = int((stage_assignment(users, "experiment", share) == 1).sum())
        beside = int((stage_assignment(users, "experiment", share, slot) == 1).sum())
        assert beside == pytest.approx(kept * alone, rel=0.1)


def test_stages_that_leave_traffic_spare_share_it_without_losing_detection() -> None:
    """With a final stage of 20% of the users per arm, two experiments fit side by side
    whole: no noise estimate is needed and nothing is lost, whatever the effects. Four
    keep 62.5% of their final stage's users, and the detection rule decides."""
    assert final_stage_kept(2, 0.2) == 1.0
    assert final_stage_kept(4, 0.2) == pytest.approx(0.625)
    assert final_stage_kept(2, 0.5) == pytest.approx(0.5)
    noisy = plausible_effects([], [0.005, 0.005])
    assert fits(2, noisy, None, final_share=0.2, alpha=0.05, power_kept=0.9)
    assert not fits(2, noisy, None, final_share=0.5, alpha=0.05, power_kept=0.9)
    clear = plausible_effects(_measured((0.05, 0.005), (-0.04, 0.005)), [0.01] * 4)
    assert fits(4, clear, _noise(0.005), final_share=0.2, alpha=0.05, power_kept=0.9)
    assert not fits(4, clear, _noise(0.005), final_share=0.5, alpha=0.05, power_kept=0.9)


def _noise(se_whole_traffic: float) -> NoiseEstimate:
    """A final stage whose north-star estimate has standard error ``se_whole_traffic``
    (relative) with all of the users."""
    users = 2.0 * (0.8 / se_whole_traffic) ** 2
    return NoiseEstimate(sd_relative=0.8, users_per_arm=users, source="e")


def _measured(*pairs: tuple[float, float]) -> list[MeasuredEffect]:
    return [MeasuredEffect(relative=relative, se=se) for relative, se in pairs]


def test_a_wave_forms_only_where_slices_keep_the_detection_of_the_effects_measured() -> None:
    """Where the run has measured effects well clear of the noise, quarter slices keep
    nearly all of the detection; where its effects are the size of the noise (a
    low-traffic target), even halving the users loses too much, and experiments run one
    at a time."""
    rule = {"final_share": 0.5, "alpha": 0.05, "power_kept": 0.7}
    clear = _measured((0.05, 0.005), (-0.04, 0.005), (0.03, 0.005), (0.0, 0.005))
    effects = plausible_effects(clear, [0.01] * 4)
    assert fits(4, effects, _noise(0.005), **rule)
    assert not fits(32, effects, _noise(0.005), **rule)  # a 32nd of the users is too few
    noisy = _measured((0.06, 0.033), (0.04, 0.033), (0.03, 0.033), (-0.03, 0.033), (0.0, 0.033))
    effects = plausible_effects(noisy, [0.01] * 2)
    assert not fits(2, effects, _noise(0.033), **rule)
    assert fits(1, effects, _noise(0.033), **rule)  # one alone always fits


def test_effects_near_the_noise_floor_do_not_pass_for_cheap_to_share() -> None:
    """The rule this replaced compared each proposal's power alone with its power on a
    slice: an expected +0.5% next to large noise has ~6% power either way, "nothing lost",
    though most of it is the test's chance rejections. Detection beyond chance halves with
    the users, so such a wave waits, however small its expected effects."""
    noise, small = _noise(0.033), plausible_effects([], [0.005] * 4)
    half = {"final_share": 0.5, "alpha": 0.05, "power_kept": 0.5}
    assert detection_kept(small, noise, 0.25, 0.05) == pytest.approx(0.25, abs=0.03)
    assert not fits(4, small, noise, final_share=0.5, alpha=0.05, power_kept=0.5)
    nothing = plausible_effects(_measured(*[(0.0, 0.005)] * 5), [0.0, 0.0])
    assert not fits(2, nothing, _noise(0.005), **half)  # nothing to see
    large = plausible_effects([], [0.03, 0.03])
    assert not fits(2, large, None, **half)  # no noise known yet


def test_the_spread_of_true_effects_is_fitted_from_noisy_estimates() -> None:
    """Maximum likelihood recovers the spread of true effects under noise of varying size,
    finds none in pure noise, and shrinks each estimate by its own noise."""
    rng = np.random.default_rng(0)
    ses = rng.choice([0.005, 0.01, 0.03], size=3000)
    truths = rng.normal(0.0, 0.02, size=3000)
    measured = _measured(*zip(truths + rng.normal(0.0, ses), ses, strict=True))
    assert effect_spread(measured) == pytest.approx(0.02, rel=0.05)
    noise_only = _measured(*((float(x), 0.01) for x in rng.normal(0.0, 0.01, size=3000)))
    assert effect_spread(noise_only) < 0.002
    assert effect_spread([]) == 0.0
    # each measurement becomes its posterior: a precise one stays where it was measured, a
    # noisy one is pulled toward zero and keeps a wide spread
    effects = plausible_effects(_measured((0.04, 0.001), (0.04, 0.05)), [0.01])
    precise, noisy = np.split(np.asarray(effects.values[:-1]), 2)
    weights = np.asarray(effects.weights[: precise.size])
    assert np.average(precise, weights=weights) == pytest.approx(0.04, rel=0.01)
    assert 0.0 < np.average(noisy, weights=weights) < 0.02
    assert np.ptp(noisy) > 10 * np.ptp(precise)
    assert effects.values[-1] == 0.01 and effects.weights[-1] == 1.0


def test_measured_effects_read_each_experiments_deepest_stage() -> None:
    """A canary-halted experiment counts (with its wide interval): leaving out what a
    guard stopped early would hide the large effects."""
    record = _record_with_final_stage(sd=0.8, n_per_arm=20_000)
    [effect] = measured_effects([record], "watch_time", 0.05)
    assert effect.se == pytest.approx(0.8 * (2.0 / 20_000) ** 0.5, rel=1e-6)
    canary = record.model_copy(deep=True)
    canary.rollout.stages[0].stage = "canary"
    assert len(measured_effects([canary, record], "watch_time", 0.05)) == 2
    assert measured_effects([record], "clicks", 0.05) == []


def test_before_any_final_stage_the_logged_noise_sizes_the_traffic() -> None:
    """The data report's between-user noise of the north star stands in until the run has
    measured a final stage (then the measurement wins); a target reporting none keeps the
    first wave to one experiment."""
    final = RolloutStage(name="full", treatment_share=0.5, days=14)
    logged = MetricNoise(sd_relative=1.2, users=40_000, days=10)
    prior = noise_estimate([], "watch_time", final, 0.05, logged=logged)
    assert prior == NoiseEstimate(sd_relative=1.2, users_per_arm=20_000, source="logs")
    assert noise_estimate([], "watch_time", final, 0.05) is None
    measured = _record_with_final_stage(sd=0.8, n_per_arm=20_000)
    estimate = noise_estimate([measured], "watch_time", final, 0.05, logged=logged)
    assert estimate is not None and estimate.source == measured.id
    assert estimate.sd_relative == pytest.approx(0.8, rel=1e-3)


def test_a_final_stage_its_slice_held_whole_is_not_scaled_up_to_all_the_traffic() -> None:
    """The noise estimate scales a slice's measurement to the users the final stage has
    alone: by the share of them its slice kept, not by the slice's share of all users."""
    slot = layer_slots("wave", 2)[0]  # half the users
    final = RolloutStage(name="full", treatment_share=0.2, days=14)
    for share, users_alone in ((0.2, 5_000), (0.5, 10_000)):
        record = _record_with_final_stage(sd=0.8, n_per_arm=5_000, share=share)
        record.traffic = slot
        estimate = noise_estimate([record], "watch_time", final, 0.05)
        assert estimate is not None and estimate.users_per_arm == pytest.approx(users_alone)


def _record_with_final_stage(sd: float, n_per_arm: int, share: float = 0.5) -> ExperimentRecord:
    """A record whose final stage (``share`` of the users per arm) measured the north star
    with per-user sd ``sd`` (relative to a control mean of 1)."""
    half_width = 1.959963984540054 * sd * (2.0 / n_per_arm) ** 0.5
    effect = MetricEffect(
        metric="watch_time",
        control_mean=1.0,
        treatment_mean=1.0,
        absolute=0.0,
        relative=0.0,
        ci_low=-half_width,
        ci_high=half_width,
        p_value=1.0,
        method="welch",
        n_control=n_per_arm,
        n_treatment=n_per_arm,
    )
    stage = StageResult(
        stage="full", treatment_share=share, days=14, srm_p_value=1.0, srm_ok=True,
        effects=[effect],
    )  # fmt: skip
    proposal = Proposal(
        id="p", technique="t", lever="x", hypothesis="h", target_metric="watch_time",
        expected_size=0.01,
    )  # fmt: skip
    return ExperimentRecord(
        id="e-measured",
        iteration=0,
        proposal=proposal,
        rollout=Rollout(experiment_id="e-measured", stages=[stage]),
        status=ExperimentStatus.DISCARDED,
    )


# ---------------------------------------------------------------------- the loop at K = 4
def test_concurrent_experiments_never_share_a_user(
    uninterrupted: tuple[RunSummary, Path],
) -> None:
    summary, workspace = uninterrupted
    settings = _settings(workspace)
    users = build_resources(settings).target.user_ids()
    waves: dict[str, list[ExperimentRecord]] = {}
    for record in _records(workspace):
        if record.traffic is not None:
            waves.setdefault(record.traffic.salt, []).append(record)
    assert any(len(wave) >= 2 for wave in waves.values()), "no experiments ran side by side"
    for wave in waves.values():
        enrolled = []
        for record in wave:
            final = record.rollout.stages[-1]
            arms = stage_assignment(users, record.id, final.treatment_share, record.traffic)
            north = next(e for e in final.effects if e.metric == settings.north_star)
            # the readout counted exactly the users of the experiment's own slice
            assert (north.n_control, north.n_treatment) == (
                int((arms == 0).sum()),
                int((arms == 1).sum()),
            )
            enrolled.append(set(np.flatnonzero(arms >= 0).tolist()))
        for one, other in combinations(enrolled, 2):
            assert not one & other


def test_a_final_stage_that_leaves_traffic_spare_runs_side_by_side_at_full_size(
    tmp_path: Path,
) -> None:
    """With a final stage of 25% of the users per arm, two experiments fit in halves of the
    layer whole: the loop runs them side by side at the shipped ``power_kept`` from the
    first wave (before any noise is measured, which sharing the traffic would need), and
    each final stage counts as many users as it would alone."""
    stages = [STAGES[0], {"name": "full", "treatment_share": 0.25, "days": 5}]
    settings = load_settings(
        world="tiny", iterations=2, seed=5, workspace=tmp_path / "ws", stages=stages,
        evolution={"enabled": False}, concurrency={"max_in_flight": 2},
    )  # fmt: skip
    run_loop(settings)
    records = load_run(settings).values["experiments"]
    assert len(records) == 2 and all(r.traffic is not None for r in records)
    assert records[0].traffic.salt == records[1].traffic.salt  # one wave
    users = build_resources(settings).target.user_ids()
    for record in records:
        final = record.rollout.stages[-1]
        assert final.stage == "full"
        north = next(e for e in final.effects if e.metric == settings.north_star)
        alone = int((stage_assignment(users, record.id, 0.25) == 1).sum())
        assert north.n_treatment == pytest.approx(alone, rel=0.15)


def test_a_wave_tests_one_value_per_technique(uninterrupted: tuple[RunSummary, Path]) -> None:
    """A technique's next value follows from its last outcome, unknown while one of its
    values is in flight: brainstorm does not put a second value of it into the wave."""
    _, workspace = uninterrupted
    waves: dict[str, list[str]] = {}
    for record in _records(workspace):
        if record.traffic is not None:
            waves.setdefault(record.traffic.salt, []).append(record.proposal.technique)
    assert waves and all(len(set(names)) == len(names) for names in waves.values()), waves
    catalog = load_catalog()
    wave = [
        Scheduled(
            iteration=0,
            proposal=Proposal(
                id="p", technique="ips_debiasing", lever="x", hypothesis="h",
                target_metric="watch_time", expected_size=0.01, params={"max_weight": 10.0},
            ),
        )
    ]  # fmt: skip
    keys = in_flight_keys({"wave": wave}, catalog)
    values = catalog["ips_debiasing"].params[0].values
    assert {f'ips_debiasing:{{"max_weight": {v}}}' for v in values} <= set(keys)


def test_the_same_seed_and_k_give_the_same_run(
    uninterrupted: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    first, _ = uninterrupted
    second = run_loop(_settings(tmp_path / "ws", checkpointer="memory"))
    assert len(first.experiments) == ITERATIONS
    assert _comparable(first) == _comparable(second)
    assert any(line.traffic_share < 1.0 for line in first.experiments)
    # the first wave ran side by side, sized from the logged noise before any measurement
    assert first.experiments[0].traffic_share < 1.0


def test_a_kill_during_a_wave_resumes_with_nothing_lost_or_duplicated(
    uninterrupted: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    env = {
        **os.environ,
        "AGENTX_STAGES": '[{"name": "canary", "treatment_share": 0.05, "days": 2}, '
        '{"name": "full", "treatment_share": 0.5, "days": 7}]',
        "AGENTX_EVOLUTION__ENABLED": "false",
        "AGENTX_CONCURRENCY__MAX_IN_FLIGHT": "4",
        "AGENTX_CONCURRENCY__POWER_KEPT": "0.1",
    }
    command = [
        *(sys.executable, "-m", "agentx.cli.app", "run", "--world", "tiny"),
        *("--iterations", str(ITERATIONS), "--seed", "3", "--workspace", str(workspace)),
    ]
    kill_during_second_experiment(command, env=env, after_s=3.0)
    resumed = run_loop(_settings(workspace), resume=True)
    ids = [e.id for e in resumed.experiments]
    assert len(ids) == ITERATIONS and len(set(ids)) == ITERATIONS
    assert _decisions(resumed) == _decisions(uninterrupted[0])
    store = open_store(workspace, _settings(workspace).memory, _settings(workspace).embeddings)
    cards = store.list()
    assert len({card.id for card in cards}) == len(cards)
    recorded = {r.card_id for r in _records(workspace) if r.card_id}
    assert recorded <= {card.id for card in cards}


# ---------------------------------------------------------------------- serialised merging
def test_a_second_keep_of_a_wave_is_retested_not_merged_on_stale_evidence(
    tmp_path: Path,
) -> None:
    """Two KEEPs finish in one wave: the first ships, the second was measured against a
    baseline that no longer is the baseline, so it is queued for a re-test (a fresh
    worktree on the new baseline, then a new A/B), never merged on stale evidence; learn
    run again (a resume) merges nothing twice."""
    settings = _settings(tmp_path / "ws", checkpointer="memory")
    resources = build_resources(settings)
    developer, repo = resources.developer, resources.target.repo_path
    catalog = resources.catalog
    finished = []
    for iteration, technique in enumerate(("recency_feature", "creator_affinity")):
        proposal = Proposal(
            id=f"p{iteration}",
            technique=technique,
            lever=catalog[technique].lever,
            params=catalog[technique].default_params(),
            hypothesis="test",
            target_metric="watch_time",
        )
        patch, check = developer.implement(proposal, 1)
        assert check.passed, check.detail
        verdict = Verdict(experiment_id=f"e{iteration}", decision=Decision.KEEP)
        finished.append(
            Finished(
                scheduled=Scheduled(iteration=iteration, proposal=proposal),
                proposal=proposal,
                outcome=ExperimentOutcome(patch=patch, verdict=verdict),
            )
        )
    state = {
        "run_id": "wave",
        "goal": Goal(text="raise watch time", objective="watch_time"),
        "funnel": {},
        "queue": [],
        "experiments": [],
        "finished": finished,
        "wave": [f.scheduled for f in finished],
    }
    learn = bind(ResourcePool.of(resources), Nodes(resources).learn, wants_config=False)
    before = git.head(repo)
    update = learn(state, {})
    first, second = update["experiments"]
    assert first.status == ExperimentStatus.KEPT and second.status == ExperimentStatus.STALE
    shipped = git.subjects(repo, before, "HEAD")
    assert [line for line in shipped if line.startswith("Keep")] == [
        f"Keep recency_feature ({first.id})"
    ]
    assert not any("creator_affinity" in line for line in shipped)
    [retest] = update["queue"]
    assert retest.reason == QueueReason.RETEST and retest.parent == second.id
    assert retest.proposal.technique == "creator_affinity" and retest.retests == 1
    assert update["funnel"]["kept"] == 1 and update["funnel"]["retests"] == 1
    assert update["wave"] == [] and update["finished"] is None
    after = git.head(repo)
    learn(state, {})  # learn re-run after a crash between the merge and its checkpoint
    assert git.head(repo) == after
