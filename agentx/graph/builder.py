"""Wiring of the loop: the agents' subgraphs, the experiment subgraph, the run's loop.

- the Brainstorm Agent's subgraph: a ranked batch of ideas, the admission gate (Studio's
  brainstorm graph starts with goal intake, which the loop runs once per run);
- the Developing Agent's subgraph: develop, verify, repair or abandon;
- the Evaluation Agent's subgraph: launch, staged rollout, review and launch gates, veto,
  verdict;
- the experiment subgraph: the developing agent, then (a verified change) the evaluation
  agent, then the outcome handed to the run;
- the loop: goal intake, the brainstorm agent and the scheduler (repeated until the wave
  is full), the wave's experiments side by side (``Send``), learn (ship, record, card),
  harness evolution.

Each subgraph has its own state (:mod:`agentx.graph.state`) and is a node of the graph
above it, so Studio shows every agent as its own graph and an experiment's state starts
empty. ``build_graph`` is the one place the loop is compiled; the CLI, the LangServe app,
the Studio entry points and embedding code all call it.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer, Send

from agentx.agents.evaluation.capacity import layer_slots, wave_salt
from agentx.agents.evaluation.review import needs_review
from agentx.graph.context import CONTEXT_KEY, ContextBoundNodes, ResourcePool, RunContext
from agentx.graph.nodes import (
    ABANDON,
    BRAINSTORM,
    BRAINSTORM_AGENT,
    CONCLUDE,
    DEVELOP,
    DEVELOP_AGENT,
    EVALUATE_AGENT,
    EVOLVE,
    EXPERIMENT,
    GATE,
    INTAKE,
    LAUNCH,
    LAUNCH_GATE,
    LEARN,
    REPAIR,
    REVIEW,
    SCHEDULE,
    STAGE,
    VERDICT,
    VERIFY,
    VETO,
    Nodes,
    offline_repair,
    room_for_another,
)
from agentx.graph.resources import Resources
from agentx.graph.state import (
    BrainstormState,
    DevelopState,
    EvaluateState,
    ExperimentInput,
    ExperimentOutput,
    ExperimentState,
    LoopInput,
    LoopOutput,
    LoopState,
    Scheduled,
)
from agentx.models import ExperimentStatus, FailureKind, RootCause
from agentx.settings import Settings, load_settings
from agentx.tracking.langsmith import ExperimentTracedNodes


# ---------------------------------------------------------------------- brainstorm agent
def after_brainstorm(state: BrainstormState) -> Literal["admission_gate", "__end__"]:
    """Stop when no admissible proposal is left."""
    return END if state.get("exhausted") else GATE


def after_gate(state: BrainstormState) -> Literal["__end__", "brainstorm"]:
    """A deferred or rejected proposal sends the agent back for another one."""
    return END if state.get("current") is not None else BRAINSTORM


# ---------------------------------------------------------------------- developing agent
def make_after_verify(resources_or_pool: Resources | ResourcePool):
    """Verification passed → done; failed → retry, repair, or abandon."""
    pool = ResourcePool.of(resources_or_pool)

    def after_verify(state: DevelopState) -> Literal["__end__", "develop", "repair", "abandon"]:
        resources = pool.for_state(state)
        max_repairs = resources.settings.max_repair_attempts
        history = state.get("verifications", [])
        last = history[-1]
        if last.passed:
            return END
        if last.failure_kind == FailureKind.TRANSIENT:
            transient_retries = sum(v.failure_kind == FailureKind.TRANSIENT for v in history)
            if transient_retries <= 1:
                return DEVELOP  # retried once, unchanged
        if last.cause == RootCause.INFRASTRUCTURE:
            return ABANDON  # no repair against a dead server: deferred, retried later
        if len(state.get("repairs") or []) >= max_repairs:
            return ABANDON
        if resources.llm is not None:
            return REPAIR
        if offline_repair(resources, state) is not None:
            return REPAIR
        return ABANDON

    return after_verify


# ---------------------------------------------------------------------- evaluation agent
def make_after_stage(resources_or_pool: Resources | ResourcePool):
    """Moderate breach under review → review; veto → veto; a canary that would go on (next
    stage, or an early win that ships) → the launch gate unless autonomous; last stage →
    verdict; else next."""
    pool = ResourcePool.of(resources_or_pool)

    def after_stage(
        state: EvaluateState,
    ) -> Literal["guardrail_review", "launch_gate", "rollout_stage", "veto", "verdict"]:
        settings = pool.for_state(state).settings
        stages = state["rollout"].stages
        last = stages[-1]
        if needs_review(last, settings):
            return REVIEW
        if last.decision == "halt":
            return VETO
        canary = len(stages) == 1 and len(settings.stages) > 1
        if canary and not settings.autonomous and last.decision in ("continue", "stop_early"):
            return LAUNCH_GATE
        if last.decision in ("complete", "stop_early"):
            return VERDICT
        return STAGE

    return after_stage


def after_launch_gate(state: EvaluateState) -> Literal["rollout_stage", "veto", "verdict"]:
    """Refused → veto (roll back); approved → the next stage, or the verdict of an early win."""
    last = state["rollout"].stages[-1]
    if last.decision == "halt":
        return VETO
    return VERDICT if last.decision == "stop_early" else STAGE


# ---------------------------------------------------------------------- experiment
def after_develop(state: ExperimentState) -> Literal["evaluation_agent", "conclude"]:
    """A verified change is evaluated online; an abandoned one goes straight to its outcome."""
    history = state.get("verifications") or []
    return EVALUATE_AGENT if history and history[-1].passed else CONCLUDE


# ---------------------------------------------------------------------- loop
def experiment_input(state: LoopState, item: Scheduled) -> dict[str, Any]:
    """What one experiment of the wave is sent: the run's keys it reads and its own."""
    return {
        CONTEXT_KEY: state.get(CONTEXT_KEY),
        "run_id": state.get("run_id"),
        "goal": state.get("goal"),
        "origin": state.get("origin"),
        "avoid": state.get("avoid") or {},
        "iteration": item.iteration,
        "current": item.proposal,
        "plan": item.plan,
        "slot": item.slot,
        "scheduled": item,
    }


def make_after_schedule(resources_or_pool: Resources | ResourcePool):
    """Another proposal while the wave has room, budget and traffic for one more; else the
    wave's experiments, each on its own slice of the traffic, fanned out side by side;
    nothing left: the end."""
    pool = ResourcePool.of(resources_or_pool)

    def after_schedule(state: LoopState) -> str | list[Send]:
        resources = pool.for_state(state)
        wave = state.get("wave") or []
        budget = state.get("iterations") or resources.settings.iterations
        room = budget - spent(state) - len(wave)
        if not wave:
            return END
        closed = state.get("exhausted") or state.get("wave_closed") or room <= 0
        if not closed and room_for_another(resources, state):
            return BRAINSTORM_AGENT
        salt = wave_salt(str(state.get("run_id")), wave[0].iteration)
        slots = layer_slots(salt, len(wave))
        return [
            Send(EXPERIMENT, experiment_input(state, item.model_copy(update={"slot": slot})))
            for item, slot in zip(wave, slots, strict=True)
        ]

    return after_schedule


def make_after_learn(resources_or_pool: Resources | ResourcePool):
    """An SGPO step for every ``evolution.every`` experiments recorded; then the next wave,
    or the end."""
    pool = ResourcePool.of(resources_or_pool)

    def after_learn(state: LoopState) -> Literal["evolve_harness", "brainstorm_agent", "__end__"]:
        evolution = pool.for_state(state).settings.evolution
        if state.get("stopped"):
            return END  # the circuit breaker tripped
        owed = len(state.get("experiments") or []) // evolution.every
        if evolution.enabled and len(state.get("evolutions") or []) < owed:
            return EVOLVE
        return next_or_end(pool)(state)  # type: ignore[return-value]

    return after_learn


def spent(state: LoopState) -> int:
    """Experiments that count in the budget: all but those deferred by an infrastructure
    failure (they taught nothing and are retried)."""
    return sum(r.status != ExperimentStatus.DEFERRED for r in state.get("experiments") or [])


def next_or_end(resources_or_pool: Resources | ResourcePool):
    """Next experiment while budget is left, else the end."""
    pool = ResourcePool.of(resources_or_pool)

    def after_budget_check(state: LoopState) -> Literal["brainstorm_agent", "__end__"]:
        budget = state.get("iterations") or pool.for_state(state).settings.iterations
        return BRAINSTORM_AGENT if spent(state) < budget else END

    return after_budget_check


def _nodes(pool: ResourcePool) -> ExperimentTracedNodes:
    # each node runs with its run's resources; every model call inside an experiment's
    # nodes carries its id (LangSmith metadata)
    bound = ContextBoundNodes(Nodes(pool), pool)
    return ExperimentTracedNodes(bound, skip=("intake", "evolve_harness"))


def _add_nodes(graph: StateGraph, nodes: Any, *names: str) -> None:
    """Add each named node, bound to the nodes object's method of that name."""
    for name in names:
        graph.add_node(name, getattr(nodes, _METHOD.get(name, name)))


_METHOD = {REVIEW: "review"}  # node names whose method is named otherwise


def brainstorm_builder(
    resources: Resources, nodes: ExperimentTracedNodes | None = None, *, intake: bool = False
):
    """The Brainstorm Agent's subgraph (uncompiled); with ``intake`` it starts from the
    goal's text (Studio's brainstorm graph), else from the run's goal (the loop's node)."""
    resources = ResourcePool.of(resources)
    nodes = nodes or _nodes(resources)
    graph = StateGraph(BrainstormState, context_schema=RunContext)
    _add_nodes(graph, nodes, BRAINSTORM, GATE)
    if intake:
        _add_nodes(graph, nodes, INTAKE)
        graph.add_edge(START, INTAKE)
        graph.add_edge(INTAKE, BRAINSTORM)
    else:
        graph.add_edge(START, BRAINSTORM)
    graph.add_conditional_edges(BRAINSTORM, after_brainstorm)
    graph.add_conditional_edges(GATE, after_gate)
    return graph


def develop_builder(resources: Resources | ResourcePool, nodes: Any = None) -> StateGraph:
    """The Developing Agent's subgraph (uncompiled)."""
    resources = ResourcePool.of(resources)
    nodes = nodes or _nodes(resources)
    graph = StateGraph(DevelopState, context_schema=RunContext)
    _add_nodes(graph, nodes, DEVELOP, VERIFY, REPAIR, ABANDON)
    graph.add_edge(START, DEVELOP)
    graph.add_edge(DEVELOP, VERIFY)
    graph.add_conditional_edges(VERIFY, make_after_verify(resources))
    graph.add_edge(REPAIR, DEVELOP)
    graph.add_edge(ABANDON, END)
    return graph


def evaluate_builder(resources: Resources | ResourcePool, nodes: Any = None) -> StateGraph:
    """The Evaluation Agent's subgraph (uncompiled)."""
    resources = ResourcePool.of(resources)
    nodes = nodes or _nodes(resources)
    graph = StateGraph(EvaluateState, context_schema=RunContext)
    _add_nodes(graph, nodes, LAUNCH, STAGE, REVIEW, LAUNCH_GATE, VETO, VERDICT)
    graph.add_edge(START, LAUNCH)
    graph.add_edge(LAUNCH, STAGE)
    graph.add_conditional_edges(STAGE, make_after_stage(resources))
    graph.add_conditional_edges(REVIEW, make_after_stage(resources))
    graph.add_conditional_edges(LAUNCH_GATE, after_launch_gate)
    graph.add_edge(VETO, VERDICT)
    graph.add_edge(VERDICT, END)
    return graph


def experiment_builder(resources: Resources | ResourcePool, nodes: Any = None) -> StateGraph:
    """One experiment's subgraph (uncompiled): develop, evaluate, hand back the outcome."""
    resources = ResourcePool.of(resources)
    nodes = nodes or _nodes(resources)
    graph = StateGraph(
        ExperimentState,
        context_schema=RunContext,
        input_schema=ExperimentInput,
        output_schema=ExperimentOutput,
    )
    graph.add_node(DEVELOP_AGENT, develop_builder(resources, nodes).compile(name=DEVELOP_AGENT))
    graph.add_node(EVALUATE_AGENT, evaluate_builder(resources, nodes).compile(name=EVALUATE_AGENT))
    _add_nodes(graph, nodes, CONCLUDE)
    graph.add_edge(START, DEVELOP_AGENT)
    graph.add_conditional_edges(DEVELOP_AGENT, after_develop)
    graph.add_edge(EVALUATE_AGENT, CONCLUDE)
    graph.add_edge(CONCLUDE, END)
    return graph


def build_builder(resources: Resources | ResourcePool) -> StateGraph:
    """The uncompiled loop graph over ``resources`` (or a pool serving every run context)."""
    resources = ResourcePool.of(resources)
    nodes = _nodes(resources)
    graph = StateGraph(
        LoopState, context_schema=RunContext, input_schema=LoopInput, output_schema=LoopOutput
    )
    graph.add_node(
        BRAINSTORM_AGENT, brainstorm_builder(resources, nodes).compile(name=BRAINSTORM_AGENT)
    )
    graph.add_node(EXPERIMENT, experiment_builder(resources, nodes).compile(name=EXPERIMENT))
    _add_nodes(graph, nodes, SCHEDULE, LEARN, EVOLVE, INTAKE)
    graph.add_edge(START, INTAKE)
    graph.add_edge(INTAKE, BRAINSTORM_AGENT)
    graph.add_edge(BRAINSTORM_AGENT, SCHEDULE)
    graph.add_conditional_edges(
        SCHEDULE, make_after_schedule(resources), [BRAINSTORM_AGENT, EXPERIMENT, END]
    )
    graph.add_edge(EXPERIMENT, LEARN)
    graph.add_conditional_edges(LEARN, make_after_learn(resources))
    graph.add_conditional_edges(EVOLVE, make_after_learn(resources))  # steps owed by a wave
    return graph


def build_graph(
    settings: Settings | None = None,
    checkpointer: Checkpointer = None,
    resources: Resources | None = None,
    *,
    any_world: bool = False,
    holder: str | None = None,
) -> CompiledStateGraph:
    """Compile the AgentX loop: one graph for every run; each run's context
    (:class:`~agentx.graph.context.RunContext`: world, seed, budget, policy values) picks
    the resources its nodes use, built when first needed.

    Args:
        settings: base settings (a run's context overrides some); defaults come from the
            environment and settings file.
        checkpointer: e.g. ``SqliteSaver``; None compiles without persistence (as
            ``langgraph dev`` requires).
        resources: prebuilt resources (a custom target, memory or model); they serve runs
            of their own world and seed only, unless ``any_world``.
        any_world: other worlds and seeds get sandboxes of their own even though
            ``resources`` were given (the LangServe app: its resources are the default's).
        holder: the first run takes the workspace lock for the rest of the process, naming
            this holder (Studio / LangGraph Server, which start runs with no lock of their
            own; the CLI and ``run_loop`` take the lock around each run themselves).

    Example:
        >>> from agentx import build_graph, load_settings
        >>> graph = build_graph(load_settings(world="tiny", iterations=2))  # doctest: +SKIP
        >>> graph.invoke(
        ...     {"goal_text": "raise watch time"},
        ...     {"configurable": {"thread_id": "t1"}},
        ...     context={"seed": 7},
        ... )
    """
    settings = settings or (resources.settings if resources is not None else load_settings())
    pool = ResourcePool(
        settings, resources, fixed=resources is not None and not any_world, holder=holder
    )
    return build_builder(pool).compile(checkpointer=checkpointer, name="agentx_loop")
