"""The LangChain config a run is invoked with: what LangSmith traces are named and tagged by.

LangSmith tracing itself is switched on by LangChain's own variables (``LANGSMITH_TRACING``,
``LANGSMITH_API_KEY``, ``LANGSMITH_PROJECT``); this config gives each run's trace a name,
tags and metadata (run id, world, seed, workspace) so runs can be found and filtered there.
The same values reach every node and model call, since LangGraph passes the config down.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs, set_config_context

from agentx.models import stable_id
from agentx.settings import Settings

RECURSION_LIMIT = 10_000


def run_config(settings: Settings, run_id: str, world: str) -> RunnableConfig:
    """The config of one run's graph invocation (thread = run id)."""
    metadata: dict[str, Any] = {
        "agentx_run_id": run_id,
        "world": world,
        "seed": settings.seed,
        "workspace": str(settings.workspace),
        "north_star": settings.north_star,
        "mode": "llm" if settings.llm.enabled else "offline",
    }
    tags = ["agentx", f"world:{world}", f"seed:{settings.seed}", f"run:{run_id}"]
    tags += [t for t in settings.tracking.tags if t not in tags]
    return RunnableConfig(
        configurable={"thread_id": run_id},
        recursion_limit=RECURSION_LIMIT,
        run_name=f"agentx {run_id}",
        tags=tags,
        metadata=metadata,
    )


def with_experiment_metadata(node: Callable[..., Any]) -> Callable[..., Any]:
    """``node`` run with the current experiment's id in the config its calls inherit.

    LangGraph hands each node the run's config; model and tool calls made inside the node
    inherit it. This adds ``agentx_experiment_id`` (the id the experiment's record gets:
    ``stable_id(run_id, iteration)``) and ``agentx_iteration``, so every LangSmith span of an
    experiment can be filtered by it. Nodes before the run id exists run unchanged.
    """
    wants_config = "config" in inspect.signature(node).parameters

    def traced(state: Any, config: RunnableConfig) -> Any:
        run_id = state.get("run_id") if isinstance(state, dict) else None
        if not run_id:
            return node(state, config) if wants_config else node(state)
        iteration = int(state.get("iteration", 0) or 0)
        child = merge_configs(
            config,
            RunnableConfig(
                metadata={
                    "agentx_experiment_id": stable_id(run_id, iteration),
                    "agentx_iteration": iteration,
                }
            ),
        )
        with set_config_context(child) as context:
            return context.run(node, state, child) if wants_config else context.run(node, state)

    traced.__name__ = getattr(node, "__name__", "node")
    traced.__doc__ = getattr(node, "__doc__", None)
    return traced


class ExperimentTracedNodes:
    """A view of a nodes object whose methods run under :func:`with_experiment_metadata`.

    ``build_builder`` adds its nodes from this view, so the graph's wiring stays as written.
    """

    def __init__(self, nodes: object, skip: tuple[str, ...] = ()):
        self._nodes = nodes
        self._skip = skip

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._nodes, name)
        if name.startswith("_") or name in self._skip or not callable(attribute):
            return attribute
        return with_experiment_metadata(attribute)
