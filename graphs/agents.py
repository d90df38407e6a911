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

from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from agentx.evolution.graph import build_evolution_graph
from agentx.graph.builder import build_builder, cut_before
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
