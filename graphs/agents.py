"""Studio / LangGraph Server entry points for each agent's stage of the loop.

Each graph is the loop's own wiring cut before a node, so it stays in step with the
loop as nodes are added (a human gate, say) and its picture in Studio is the part of
the loop it runs:

- ``brainstorm``: goal intake and the Brainstorm Agent, ending on the chosen proposal
  (``current``), the batch (``ideas``) and the avoid set;
- ``develop``: that, then the Developing Agent: a change in a worktree, verified, with
  repairs; ends on the patch and every verification (the worktree is kept to inspect);
- ``evaluate``: that, then the Evaluation Agent's staged rollout and verdict; ends
  before ``learn``, so nothing is merged and no knowledge card is written;
- ``evolve``: one Harness Evolution (SGPO) step for the agent named in the input
  (``{"agent": "brainstorm"}`` or ``"evaluation"``) over the trajectories recorded in the
  workspace: diagnose, refine, safety check, replay, keep or roll back.

Like ``graphs/loop.py`` they are compiled without a checkpointer (the server brings
its own) and read their settings from ``AGENTX_*`` variables. (No ``from __future__
import annotations`` here: the output schemas' hints must resolve even when this file is
loaded by path, as the server does.)
"""

from collections import defaultdict, deque
from collections.abc import Iterable

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from agentx.evolution.graph import build_evolution_graph
from agentx.graph.builder import build_builder
from agentx.graph.nodes import DEVELOP, LAUNCH, LEARN
from agentx.graph.resources import Resources, build_resources
from agentx.models import Goal, Patch, Proposal, Rollout, TraceEvent, Verdict, Verification
from agentx.settings import load_settings


class BrainstormOutput(TypedDict, total=False):
    """What the brainstorm stage hands on: the goal and the chosen, admitted proposal."""

    run_id: str
    goal: Goal
    current: Proposal | None
    ideas: list[str]
    avoid: dict[str, str]
    exhausted: bool
    funnel: dict[str, int]
    trace: list[TraceEvent]


class DevelopOutput(BrainstormOutput, total=False):
    """The brainstorm output plus the change and how it verified."""

    patch: Patch | None
    verifications: list[Verification]


class EvaluateOutput(DevelopOutput, total=False):
    """The develop output plus the staged rollout and its verdict."""

    rollout: Rollout | None
    verdict: Verdict | None


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


STAGES: dict[str, tuple[frozenset[str], type]] = {
    "brainstorm": (frozenset({DEVELOP}), BrainstormOutput),
    "develop": (frozenset({LAUNCH, LEARN}), DevelopOutput),
    "evaluate": (frozenset({LEARN}), EvaluateOutput),
}


def stage_graph(stage: str, resources: Resources | None = None) -> CompiledStateGraph:
    """Compile one agent's stage (``brainstorm``, ``develop`` or ``evaluate``) of the loop.

    Example:
        >>> from agentx.graph.resources import build_resources  # doctest: +SKIP
        >>> graph = stage_graph("brainstorm", build_resources(load_settings(world="tiny")))
        >>> graph.invoke({"goal_text": "raise watch time"})["current"].technique
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    stop_before, output_schema = STAGES[stage]
    resources = resources or build_resources(load_settings())
    builder = cut_before(build_builder(resources), stop_before, output_schema)
    return builder.compile(checkpointer=None, name=f"agentx_{stage}")


_resources = build_resources(load_settings())
brainstorm = stage_graph("brainstorm", _resources)
develop = stage_graph("develop", _resources)
evaluate = stage_graph("evaluate", _resources)
evolve = build_evolution_graph(_resources.evolver())
