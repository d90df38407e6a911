"""Human gates: the admission and launch-past-canary interrupts pause the loop and resume
with the answer; the routers send each stage to the right gate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentx.agents.brainstorm.policy import belief_for
from agentx.agents.evaluation import reasons
from agentx.agents.evaluation.review import apply_review
from agentx.agents.evaluation.verdict import decide, status_of
from agentx.graph.builder import after_launch_gate, build_graph, make_after_stage
from agentx.graph.checkpoint import open_checkpointer, serializer
from agentx.graph.resources import build_resources
from agentx.graph.tracelog import read_trace
from agentx.models import (
    Acceptance,
    Decision,
    ExperimentStatus,
    GuardrailResult,
    Rollout,
    RootCause,
    StageResult,
)
from agentx.settings import load_settings


def _innermost(snapshot):
    """The deepest subgraph state a paused run waits in (an agent's subgraph)."""
    for task in snapshot.tasks:
        if task.state is not None and not isinstance(task.state, dict):
            return _innermost(task.state)
    return snapshot


def _pending(graph, config, node: str = "admission_gate") -> dict:
    snapshot = graph.get_state(config)
    assert _innermost(graph.get_state(config, subgraphs=True)).next == (node,)
    [task] = [t for t in snapshot.tasks if t.interrupts]  # the run's top level sees it too
    return task.interrupts[0].value


def test_admission_gate_reject_then_approve(tmp_path: Path) -> None:
    settings = load_settings(
        world="tiny", iterations=1, seed=2, workspace=tmp_path, autonomous=False
    )
    graph = build_graph(settings, checkpointer=InMemorySaver(serde=serializer()))
    config = {"configurable": {"thread_id": "gate"}}
    graph.invoke({"goal_text": "raise watch time"}, config)
    first = _pending(graph, config)
    assert first["gate"] == "proposal_admission" and "approve" in first["choices"]
    rejected = first["proposal"]["technique"], first["proposal"]["params"]

    graph.invoke(Command(resume={"action": "reject", "reason": "not this quarter"}), config)
    second = _pending(graph, config)
    assert (second["proposal"]["technique"], second["proposal"]["params"]) != rejected
    # the reject joined the avoid set of the brainstorm subgraph, which still runs
    assert _innermost(graph.get_state(config, subgraphs=True)).values["avoid"]

    graph.invoke(Command(resume={"action": "approve"}), config)
    launch = _pending(graph, config, "launch_gate")  # the canary continued: launch past it?
    assert launch["gate"] == "launch_past_canary" and launch["choices"] == ["approve", "halt"]
    assert (launch["stage"], launch["next_stage"]) == ("canary", "ramp")
    assert launch["north_star"]["metric"] == "watch_time"
    assert {g["metric"] for g in launch["guardrails"]} >= {"active_days", "tail_share"}

    answer = {"action": "approve", "reviewer": "ana", "note": "canary looks clean"}
    final = graph.invoke(Command(resume=answer), config)
    reviewed = graph.get_state(config).next == ("guardrail_review",)
    if reviewed:  # a moderate harm at a later stage
        review = {"approve": True, "reviewer": "ana", "note": "accepted trade-off"}
        final = graph.invoke(Command(resume=review), config)
    [experiment] = final["experiments"]
    for stage in experiment.rollout.stages:
        assert stage.halt_cause is None and not stage.review_pending  # typed: nothing pending
        approved = [g for g in stage.guardrails if g.accepted == Acceptance.REVIEW]
        assert bool(approved) == (reviewed and stage is experiment.rollout.stages[-1])
    assert experiment.proposal.technique == second["proposal"]["technique"]
    assert experiment.proposal.params == second["proposal"]["params"]
    stages = [s.stage for s in experiment.rollout.stages]
    assert stages[:2] == ["canary", "ramp"] and experiment.verdict is not None
    assert not experiment.rollout.halted_at
    assert "approved by ana" in experiment.rollout.stages[0].reason
    [event] = [e for e in read_trace(tmp_path, "gate") if e.node == "launch_gate"]
    assert event.data == {"action": "approve", "reviewer": "ana", "note": "canary looks clean"}


def test_launch_refused_past_canary_rolls_back_and_teaches_nothing(tmp_path: Path) -> None:
    settings = load_settings(
        world="tiny", iterations=1, seed=2, workspace=tmp_path, autonomous=False
    )
    resources = build_resources(settings)
    graph = build_graph(settings, open_checkpointer(settings), resources)  # SQLite
    config = {"configurable": {"thread_id": "refuse"}}
    graph.invoke({"goal_text": "raise watch time"}, config)
    graph.invoke(Command(resume="approve"), config)
    assert _pending(graph, config, "launch_gate")["gate"] == "launch_past_canary"

    answer = {"action": "halt", "reviewer": "bo", "reason": "launch freeze this week"}
    final = graph.invoke(Command(resume=answer), config)
    [experiment] = final["experiments"]
    rollout = experiment.rollout
    assert [s.stage for s in rollout.stages] == ["canary"]
    assert rollout.halted_at == "canary" and rollout.rolled_back
    assert rollout.halt_reason.startswith(reasons.LAUNCH_REFUSED)
    assert "bo" in rollout.halt_reason and "launch freeze" in rollout.halt_reason
    # The decision travels as a typed field of the stage and the record (issue 14, point 7).
    assert rollout.stages[-1].halt_cause == RootCause.LAUNCH_REFUSED
    assert experiment.cause == RootCause.LAUNCH_REFUSED
    assert experiment.verdict.decision == Decision.DISCARD
    assert experiment.verdict.root_cause == RootCause.LAUNCH_REFUSED
    assert experiment.status == ExperimentStatus.DISCARDED  # not a guardrail veto
    assert experiment.root_cause == "launch_refused"
    [event] = [e for e in read_trace(tmp_path, "refuse") if e.node == "launch_gate"]
    assert event.data["reviewer"] == "bo" and event.data["note"] == "launch freeze this week"

    card = resources.store.get(experiment.card_id)
    assert card is not None and card.root_cause == "launch_refused"
    assert card.kind == "counterexample" and "guardrail" not in card.title
    assert "not evidence" in card.text
    technique = resources.catalog[experiment.proposal.technique]
    policy = resources.harness["brainstorm"]["policy"]
    assert belief_for(technique, [card], "tiny", policy) == belief_for(
        technique, [], "tiny", policy
    )


def test_autonomous_mode_never_pauses_at_the_launch_gate(tmp_path: Path) -> None:
    settings = load_settings(world="tiny", iterations=1, seed=2, workspace=tmp_path)
    assert settings.autonomous
    graph = build_graph(settings, checkpointer=InMemorySaver(serde=serializer()))
    config = {"configurable": {"thread_id": "auto"}}
    final = graph.invoke({"goal_text": "raise watch time"}, config)
    assert "__interrupt__" not in final and graph.get_state(config).next == ()
    [experiment] = final["experiments"]
    assert len(experiment.rollout.stages) >= 2  # went past the canary without asking
    trace = read_trace(tmp_path, "auto")
    assert trace and not any(e.node == "launch_gate" for e in trace)
    assert "trace" not in final and "trace" not in graph.get_state(config).values


def _stage(name: str, decision: str = "continue", moderate_breach: bool = False) -> StageResult:
    guardrail = GuardrailResult(
        metric="tail_share",
        tier="moderate",
        relative=-0.15 if moderate_breach else 0.0,
        ci_low=-0.2,
        ci_high=0.1,
        breached=moderate_breach,
        detail="",
    )
    return StageResult(
        stage=name,
        treatment_share=0.05,
        days=3,
        srm_p_value=0.5,
        srm_ok=True,
        guardrails=[guardrail],
        decision=decision,
    )


def _route(settings, *stages: StageResult) -> str:
    after_stage = make_after_stage(SimpleNamespace(settings=settings))
    state = {"rollout": Rollout(experiment_id="e", stages=list(stages))}
    return after_stage(state)


def test_routing_reaches_the_launch_gate_after_the_canary_only(tmp_path: Path) -> None:
    gated = load_settings(workspace=tmp_path, autonomous=False)
    autonomous = load_settings(workspace=tmp_path, autonomous=True)
    canary, ramp = _stage("canary"), _stage("ramp")
    assert _route(gated, canary) == "launch_gate"
    assert _route(gated, _stage("canary", "stop_early")) == "launch_gate"  # would ship
    assert _route(gated, _stage("canary", "halt")) == "veto"
    assert _route(gated, canary, ramp) == "rollout_stage"
    assert _route(autonomous, canary) == "rollout_stage"
    # A moderate breach is reviewed first; once approved the canary still needs the gate.
    breach = _stage("canary", moderate_breach=True)
    assert _route(gated, breach) == "guardrail_review"
    assert _route(gated, apply_review(breach, "approve")) == "launch_gate"
    # One stage only: there is nothing past the canary.
    single = gated.model_copy(update={"stages": gated.stages[:1]})
    assert _route(single, _stage("canary", "stop_early")) == "verdict"

    refused = _stage("canary", "halt")
    refused.reason, refused.halt_cause = reasons.halted(
        reasons.LAUNCH_REFUSED, "bo at canary: no", separator=" "
    )
    rollouts = {
        "rollout_stage": canary,
        "verdict": _stage("canary", "stop_early"),
        "veto": refused,
    }
    for expected, stage in rollouts.items():
        assert after_launch_gate({"rollout": Rollout(experiment_id="e", stages=[stage])}) == (
            expected
        )
    verdict = decide(Rollout(experiment_id="e", stages=[refused]), "watch_time", 0.05)
    assert verdict.root_cause == RootCause.LAUNCH_REFUSED
    assert status_of(verdict) == ExperimentStatus.DISCARDED
