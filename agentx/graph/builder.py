"""Wiring of the loop: nodes, conditional edges, checkpointer.

``build_graph`` is the one place the loop is compiled; the CLI, the LangServe app, the
Studio entry points and embedding code all call it.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from agentx.agents.evaluation.review import needs_review
from agentx.graph.nodes import (
    ABANDON,
    BRAINSTORM,
    DEVELOP,
    EVOLVE,
    GATE,
    INTAKE,
    LAUNCH,
    LAUNCH_GATE,
    LEARN,
    REPAIR,
    REVIEW,
    STAGE,
    VERDICT,
    VERIFY,
    VETO,
    Nodes,
    offline_repair,
)
from agentx.graph.resources import Resources, build_resources
from agentx.graph.state import LoopInput, LoopOutput, LoopState
from agentx.models import ExperimentStatus, FailureKind, RootCause
from agentx.settings import Settings, load_settings
from agentx.tracking.langsmith import ExperimentTracedNodes


def after_brainstorm(state: LoopState) -> Literal["admission_gate", "__end__"]:
    """Stop when no admissible proposal is left."""
    return END if state.get("exhausted") else GATE


def after_gate(state: LoopState) -> Literal["develop", "brainstorm"]:
    """A deferred or rejected proposal sends the loop back for another one."""
    return DEVELOP if state.get("current") is not None else BRAINSTORM


def make_after_verify(resources: Resources):
    """Verification passed → launch; failed → retry, repair, or abandon."""
    max_repairs = resources.settings.max_repair_attempts

    def after_verify(state: LoopState) -> Literal["launch", "develop", "repair", "abandon"]:
        history = state.get("verifications", [])
        last = history[-1]
        if last.passed:
            return LAUNCH
        if last.failure_kind == FailureKind.TRANSIENT:
            transient_retries = sum(v.failure_kind == FailureKind.TRANSIENT for v in history)
            if transient_retries <= 1:
                return DEVELOP  # retried once, unchanged
        if last.cause == RootCause.INFRASTRUCTURE:
            return ABANDON  # no repair against a dead server: deferred, retried later
        if state.get("repairs", 0) >= max_repairs:
            return ABANDON
        if resources.llm is not None:
            return REPAIR
        if offline_repair(resources, state) is not None:
            return REPAIR
        return ABANDON

    return after_verify


def make_after_stage(resources: Resources):
    """Moderate breach under review → review; veto → veto; a canary that would go on (next
    stage, or an early win that ships) → the launch gate unless autonomous; last stage →
    verdict; else next."""
    settings = resources.settings

    def after_stage(
        state: LoopState,
    ) -> Literal["guardrail_review", "launch_gate", "rollout_stage", "veto", "verdict"]:
        last = state["rollout"].stages[-1]
        if needs_review(last, settings):
            return REVIEW
        if last.decision == "halt":
            return VETO
        canary = state.get("stage_index", 0) == 1 and len(settings.stages) > 1
        if canary and not settings.autonomous and last.decision in ("continue", "stop_early"):
            return LAUNCH_GATE
        if last.decision in ("complete", "stop_early"):
            return VERDICT
        return STAGE

    return after_stage


def after_launch_gate(state: LoopState) -> Literal["rollout_stage", "veto", "verdict"]:
    """Refused → veto (roll back); approved → the next stage, or the verdict of an early win."""
    last = state["rollout"].stages[-1]
    if last.decision == "halt":
        return VETO
    return VERDICT if last.decision == "stop_early" else STAGE


def make_after_learn(resources: Resources):
    """An SGPO step every ``evolution.every`` experiments; then the next one, or the end."""
    evolution = resources.settings.evolution

    def after_learn(state: LoopState) -> Literal["evolve_harness", "brainstorm", "__end__"]:
        if state.get("stopped"):
            return END  # the circuit breaker tripped
        done = state.get("iteration", 0)
        if evolution.enabled and done % evolution.every == 0:
            return EVOLVE
        return next_or_end(resources)(state)  # type: ignore[return-value]

    return after_learn


def spent(state: LoopState) -> int:
    """Experiments that count in the budget: all but those deferred by an infrastructure
    failure (they taught nothing and are retried)."""
    return sum(r.status != ExperimentStatus.DEFERRED for r in state.get("experiments") or [])


def next_or_end(resources: Resources):
    """Next experiment while budget is left, else the end."""

    def after_budget_check(state: LoopState) -> Literal["brainstorm", "__end__"]:
        budget = state.get("iterations") or resources.settings.iterations
        return BRAINSTORM if spent(state) < budget else END

    return after_budget_check


def build_builder(resources: Resources) -> StateGraph:
    """The uncompiled loop graph over ``resources``."""
    # every model call inside an experiment's nodes carries its id (LangSmith metadata)
    nodes = ExperimentTracedNodes(Nodes(resources), skip=("intake", "evolve_harness"))
    graph = StateGraph(LoopState, input_schema=LoopInput, output_schema=LoopOutput)
    graph.add_node(INTAKE, nodes.intake)
    graph.add_node(BRAINSTORM, nodes.brainstorm)
    graph.add_node(GATE, nodes.admission_gate)
    graph.add_node(DEVELOP, nodes.develop)
    graph.add_node(VERIFY, nodes.verify)
    graph.add_node(REPAIR, nodes.repair)
    graph.add_node(ABANDON, nodes.abandon)
    graph.add_node(LAUNCH, nodes.launch)
    graph.add_node(STAGE, nodes.rollout_stage)
    graph.add_node(REVIEW, nodes.review)
    graph.add_node(LAUNCH_GATE, nodes.launch_gate)
    graph.add_node(VETO, nodes.veto)
    graph.add_node(VERDICT, nodes.verdict)
    graph.add_node(LEARN, nodes.learn)
    graph.add_node(EVOLVE, nodes.evolve_harness)
    graph.add_edge(START, INTAKE)
    graph.add_edge(INTAKE, BRAINSTORM)
    graph.add_conditional_edges(BRAINSTORM, after_brainstorm)
    graph.add_conditional_edges(GATE, after_gate)
    graph.add_edge(DEVELOP, VERIFY)
    graph.add_conditional_edges(VERIFY, make_after_verify(resources))
    graph.add_edge(REPAIR, DEVELOP)
    graph.add_edge(ABANDON, LEARN)
    graph.add_edge(LAUNCH, STAGE)
    graph.add_conditional_edges(STAGE, make_after_stage(resources))
    graph.add_conditional_edges(REVIEW, make_after_stage(resources))
    graph.add_conditional_edges(LAUNCH_GATE, after_launch_gate)
    graph.add_edge(VETO, VERDICT)
    graph.add_edge(VERDICT, LEARN)
    graph.add_conditional_edges(LEARN, make_after_learn(resources))
    graph.add_conditional_edges(EVOLVE, next_or_end(resources))
    return graph


def build_graph(
    settings: Settings | None = None,
    checkpointer: Checkpointer = None,
    resources: Resources | None = None,
) -> CompiledStateGraph:
    """Compile the AgentX loop.

    Args:
        settings: run settings; defaults come from the environment and settings file.
        checkpointer: e.g. ``SqliteSaver``; None compiles without persistence (as
            ``langgraph dev`` requires).
        resources: prebuilt resources (a custom target, memory or model).

    Example:
        >>> from agentx import build_graph, load_settings
        >>> graph = build_graph(load_settings(world="tiny", iterations=2))  # doctest: +SKIP
        >>> graph.invoke({"goal_text": "raise watch time"}, {"configurable": {"thread_id": "t1"}})
    """
    settings = settings or load_settings()
    resources = resources or build_resources(settings)
    return build_builder(resources).compile(checkpointer=checkpointer, name="agentx_loop")


def cut_before(builder: StateGraph, stop_before: Iterable[str], output_schema: type) -> StateGraph:
    """A copy of ``builder`` in which every edge into ``stop_before`` goes to END instead.

    Nodes no longer reachable from START are dropped. Conditional edges keep their
    routing functions; only their destinations are remapped, which needs the ``Literal``
    return hints the loop's routers carry.

    Raises:
        ValueError: a router has no declared destinations, or the builder has fan-in edges.
    """
    stops = set(stop_before)
    if builder.waiting_edges:
        raise ValueError("cannot cut a graph with fan-in (waiting) edges")

    def target(node: str) -> str:
        return END if node in stops else node

    edges = {(source, target(dest)) for source, dest in builder.edges}
    branches: dict[str, dict] = {}
    for source, specs in builder.branches.items():
        branches[source] = {}
        for name, spec in specs.items():
            if not spec.ends:
                raise ValueError(f"router {name!r} after {source!r} declares no destinations")
            ends = {key: target(dest) for key, dest in spec.ends.items()}
            branches[source][name] = spec._replace(ends=ends)
    successors: dict[str, set[str]] = defaultdict(set)
    for source, dest in edges:
        successors[source].add(dest)
    for source, specs in branches.items():
        for spec in specs.values():
            successors[source].update(spec.ends.values())
    reachable: set[str] = set()
    queue = deque([START])
    while queue:
        for dest in successors[queue.popleft()]:
            if dest != END and dest not in reachable:
                reachable.add(dest)
                queue.append(dest)
    cut = StateGraph(
        builder.state_schema, input_schema=builder.input_schema, output_schema=output_schema
    )
    cut.nodes = {name: spec for name, spec in builder.nodes.items() if name in reachable}
    cut.edges = {(s, d) for s, d in edges if s == START or s in reachable}
    cut.branches = defaultdict(dict, {s: b for s, b in branches.items() if s in reachable})
    return cut
