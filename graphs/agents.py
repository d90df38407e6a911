"""Studio / LangGraph Server entry points: each agent's own subgraph, as the loop runs it.

- ``brainstorm``: the Brainstorm Agent: goal intake, a ranked batch, the admission gate;
  input ``{"goal_text": ...}``; ends on the chosen proposal (``current``), the batch
  (``ideas``) and the avoid set;
- ``develop``: the Developing Agent: a change in a worktree, verified, with repairs; input a
  proposal (``{"current": {...}}``, e.g. brainstorm's output); ends on the patch and every
  verification (the worktree is kept to inspect);
- ``experiment``: one whole experiment: the Developing Agent, then the Evaluation Agent's
  staged rollout, gates and verdict; input a proposal; nothing is merged and no knowledge
  card is written (that is the loop's ``learn``);
- ``evaluate``: the Evaluation Agent alone, over a developed change (``current`` and
  ``patch`` from ``develop``'s output);
- ``evolve``: one Harness Evolution (SGPO) step for the agent named in the input
  (``{"agent": "brainstorm"}`` or ``"evaluation"``) over the trajectories recorded in the
  workspace: diagnose, refine, safety check, replay, keep or roll back.

They are the same builders the loop compiles (:mod:`agentx.graph.builder`), so Studio shows
what runs, and like the loop each takes a per-run context (world, seed, budget, policy
values: :class:`agentx.graph.context.RunContext`). Like ``graphs/loop.py`` they are
compiled without a checkpointer (the server brings its own) and read their base settings
from ``AGENTX_*`` variables. Their resources are built when this module loads (``evolve``
needs them), and with them the server takes the workspace lock until it stops.
"""

from functools import partial

from langgraph.graph.state import CompiledStateGraph

from agentx.evolution.graph import build_evolution_graph
from agentx.graph.builder import (
    brainstorm_builder,
    develop_builder,
    evaluate_builder,
    experiment_builder,
)
from agentx.graph.context import STUDIO_HOLDER, ResourcePool
from agentx.graph.resources import Resources
from agentx.settings import load_settings

BUILDERS = {
    "brainstorm": partial(brainstorm_builder, intake=True),
    "develop": develop_builder,
    "experiment": experiment_builder,
    "evaluate": evaluate_builder,
}


def stage_graph(
    stage: str, resources: Resources | ResourcePool | None = None
) -> CompiledStateGraph:
    """Compile one agent's subgraph (``brainstorm``, ``develop``, ``experiment``, ``evaluate``).

    Example:
        >>> from agentx.graph.resources import build_resources  # doctest: +SKIP
        >>> graph = stage_graph("brainstorm", build_resources(load_settings(world="tiny")))
        >>> graph.invoke({"goal_text": "raise watch time"})["current"].technique
    """
    if stage not in BUILDERS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(BUILDERS)}")
    pool = resources if resources is not None else ResourcePool(load_settings(), fixed=False)
    return BUILDERS[stage](pool).compile(checkpointer=None, name=f"agentx_{stage}")


# each run's context picks its world; the server holds the workspace (see loop.py)
_pool = ResourcePool(load_settings(), fixed=False, holder=STUDIO_HOLDER)
brainstorm = stage_graph("brainstorm", _pool)
develop = stage_graph("develop", _pool)
experiment = stage_graph("experiment", _pool)
evaluate = stage_graph("evaluate", _pool)
evolve = build_evolution_graph(_pool.get().evolver())
