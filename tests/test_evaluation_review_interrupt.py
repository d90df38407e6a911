"""The moderate-guardrail review as a LangGraph interrupt: the recipe the loop's wiring uses
(payload from ``review_request``, ``interrupt``, answer through ``apply_review``), run on a
two-node graph with an in-memory checkpointer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from agentx.agents.evaluation.review import apply_review, needs_review, review_request
from agentx.agents.evaluation.verdict import decide
from agentx.models import Decision, GuardrailResult, MetricEffect, Rollout, StageResult
from agentx.settings import Settings, load_settings


class State(TypedDict, total=False):
    rollout: Rollout
    verdict_decision: str


def _stage() -> StageResult:
    north = MetricEffect(
        metric="watch_time",
        control_mean=20.0,
        treatment_mean=22.0,
        absolute=2.0,
        relative=0.1,
        ci_low=0.05,
        ci_high=0.15,
        p_value=1e-5,
        method="cuped+welch",
        n_control=3000,
        n_treatment=3000,
    )
    tail = GuardrailResult(
        metric="tail_share",
        tier="moderate",
        relative=-0.15,
        ci_low=-0.2,
        ci_high=-0.1,
        breached=True,
        detail="-15.00% [-20.00%, -10.00%], p=1e-05, tolerance 10.0%",
    )
    return StageResult(
        stage="full",
        treatment_share=0.5,
        days=7,
        srm_p_value=0.4,
        srm_ok=True,
        effects=[north],
        guardrails=[tail],
        decision="complete",
        reason="moderate guardrail breach needs review: tail_share",
    )


def _graph(settings: Settings):
    def review(state: State) -> dict[str, Any]:
        rollout = state["rollout"].model_copy(deep=True)
        request = review_request(rollout.stages[-1], settings, rollout.experiment_id)
        if request is None:
            return {}
        answer = interrupt(request.model_dump(mode="json"))
        rollout.stages[-1] = apply_review(rollout.stages[-1], answer)
        return {"rollout": rollout}

    def route(state: State) -> Literal["review", "verdict"]:
        return "review" if needs_review(state["rollout"].stages[-1], settings) else "verdict"

    def verdict(state: State) -> dict[str, Any]:
        v = decide(state["rollout"], settings.north_star, settings.alpha)
        return {"verdict_decision": v.decision.value}

    graph = StateGraph(State)
    graph.add_node("stage", lambda state: {})
    graph.add_node("review", review)
    graph.add_node("verdict", verdict)
    graph.add_edge(START, "stage")
    graph.add_conditional_edges("stage", route)
    graph.add_conditional_edges("review", route)
    graph.add_edge("verdict", END)
    return graph.compile(checkpointer=InMemorySaver())


def _start(settings: Settings, thread: str):
    graph = _graph(settings)
    config = {"configurable": {"thread_id": thread}}
    first = graph.invoke({"rollout": Rollout(experiment_id="e7", stages=[_stage()])}, config)
    return graph, config, first


def test_review_pauses_and_approval_resumes_to_keep(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path, autonomous=False)
    graph, config, first = _start(settings, "approve")
    (pause,) = first["__interrupt__"]
    assert pause.value["kind"] == "moderate_guardrail_review"
    assert pause.value["guardrails"][0]["metric"] == "tail_share"
    final = graph.invoke(Command(resume={"approve": True, "reviewer": "ana"}), config)
    assert final["verdict_decision"] == Decision.KEEP.value


def test_veto_or_nonsense_answer_discards(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path, autonomous=False)
    for thread, answer in (("veto", "veto"), ("junk", {"ok": "sure"})):
        graph, config, _ = _start(settings, thread)
        final = graph.invoke(Command(resume=answer), config)
        assert final["verdict_decision"] == Decision.DISCARD.value
        assert final["rollout"].stages[-1].decision == "halt"


def test_autonomous_mode_never_pauses(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path, autonomous=True)
    _, _, first = _start(settings, "auto")
    assert "__interrupt__" not in first
    # A stage left with a pending moderate breach (run_stage halts it when autonomous) is
    # still never kept.
    assert first["verdict_decision"] == Decision.DISCARD.value
