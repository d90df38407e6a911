"""Harness evolution inside the loop on the tiny world: steps every N experiments, the
trajectory archive, exact replay of recorded rollouts, and the active version in use."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from trajectories import make_record

from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.evolution.outcomes import keep_utility
from agentx.evolution.replay import replay_evaluation
from agentx.evolution.rubric import load_rubric
from agentx.evolution.store import HarnessStore
from agentx.graph.builder import make_after_learn
from agentx.graph.diagram import loop_mermaid
from agentx.graph.resources import build_resources
from agentx.harness import load_harness
from agentx.models import ExperimentStatus
from agentx.runner import run_loop
from agentx.settings import load_settings


@pytest.fixture(scope="module")
def evolved_run(tmp_path_factory: pytest.TempPathFactory):
    workspace = tmp_path_factory.mktemp("evolving") / "ws"
    settings = load_settings(
        world="tiny",
        iterations=4,
        seed=0,
        workspace=workspace,
        evolution={"every": 2},
        concurrency={"max_in_flight": 1},  # the cadence, one experiment at a time
    )
    return settings, run_loop(settings)


def test_one_step_every_n_experiments_agents_in_turn(evolved_run) -> None:
    settings, summary = evolved_run
    assert [(s.iteration, s.agent) for s in summary.evolutions] == [
        (2, "brainstorm"),
        (4, "evaluation"),
    ]
    store = HarnessStore(settings.workspace / "harness")
    assert [s.outcome for s in store.steps()] == [s.outcome for s in summary.evolutions]
    assert summary.harness_versions == {
        agent: store.version(agent) for agent in ("brainstorm", "developing", "evaluation")
    }
    for step in summary.evolutions:
        if step.outcome in ("kept", "rolled_back"):
            assert step.old_score is not None and step.new_score is not None


def test_every_step_a_wave_made_due_is_taken(evolved_run) -> None:
    """A wave of four experiments at ``every = 2`` owes two steps: the loop takes both
    before the next wave (after the step it asks again), not one."""
    settings, summary = evolved_run
    after = make_after_learn(build_resources(settings))
    records = [make_record(i, "recency_feature", ExperimentStatus.DISCARDED) for i in range(4)]
    state = {"experiments": records, "iterations": 8, "evolutions": summary.evolutions[:1]}
    assert after(state) == "evolve_harness"
    assert after({**state, "evolutions": summary.evolutions[:2]}) == "brainstorm_agent"
    assert "evolve_harness -.-> evolve_harness" in loop_mermaid()  # wired: asked again


def test_the_run_is_archived_with_its_arms(evolved_run) -> None:
    settings, summary = evolved_run
    [run] = HarnessStore(settings.workspace / "harness").trajectories()
    assert run.run_id == summary.run_id and run.world == "tiny"
    assert [r.id for r in run.records] == [e.id for e in summary.experiments]
    for record in run.records:
        if record.rollout is not None:
            assert set(record.arms) == {"control", "treatment"}
            assert Path(record.arms["treatment"]["artefact"]).exists()
        else:
            assert record.arms == {}


def test_replaying_the_bundled_policy_reproduces_every_recorded_verdict(evolved_run) -> None:
    settings, _ = evolved_run
    resources = build_resources(settings)
    runs = HarnessStore(settings.workspace / "harness").trajectories()
    rubric = load_rubric("evaluation")
    policy = EvaluationPolicy.from_harness(load_harness("evaluation"))
    replay = replay_evaluation(policy, runs, rubric, resources.target, settings)
    assert replay.tasks >= 2
    records = {f"{run.run_id}/{r.id}": (run, r) for run in runs for r in run.records}
    for key, utility in replay.per_task.items():
        run, record = records[key]
        recorded = keep_utility(
            record.verdict.decision,
            record,
            run.north_star,
            run.direction,
            settings.guardrails,
            rubric.replay["harm_weight"],
        )
        assert utility == pytest.approx(recorded, abs=1e-6), key


def test_a_committed_version_is_what_the_next_run_loads(evolved_run) -> None:
    settings, _ = evolved_run
    store = HarnessStore(settings.workspace / "harness")
    harness = copy.deepcopy(store.harness("brainstorm"))
    harness["score_weights"]["risk"] = 1.234
    version = store.commit("brainstorm", harness, {}, "test")
    loaded = build_resources(settings).harness["brainstorm"]
    assert loaded["version"] == version
    assert loaded["score_weights"]["risk"] == 1.234
