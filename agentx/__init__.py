"""AgentX: agent-driven self-iteration of recommender systems, on LangGraph.

The public API, for embedding the loop in your own Python:

- :func:`load_settings` / :class:`Settings` — every knob of a run (workspace, world, seed,
  goal, budget, LLM, memory, rollout stages, guardrails), from defaults, a TOML file,
  ``AGENTX_*`` variables and keyword overrides.
- :func:`build_graph` — the compiled loop (a LangGraph ``CompiledStateGraph``) with your
  settings, checkpointer and resources (e.g. your own target); invoke or stream it.
- :func:`run_loop` — run (or ``resume=True``) a whole run with the workspace's SQLite
  checkpointer and progress callbacks, as ``agentx run`` does.
- :class:`RunSummary` — the stable summary a run returns (``agentx run --json``).
- :func:`build_resources` — the target, memory, catalog and model a graph runs on; pass your
  own ``target`` (any implementation of the target contract), ``store`` or ``llm``.
- :func:`open_memory` — the workspace's experiment memory: ``search``, ``list``, ``count``.
- :class:`HarnessStore` — the workspace's evolving harnesses: active versions, SGPO steps,
  archived run trajectories.

Example:
    >>> from agentx import load_settings, run_loop  # doctest: +SKIP
    >>> summary = run_loop(load_settings(world="tiny", iterations=2, workspace="/tmp/ax"))
    >>> summary.funnel, [e.status for e in summary.experiments]

The names load lazily, so ``import agentx.stats`` (plain numpy/scipy) does not pull in
LangGraph, Chroma or the sandbox.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentx.evolution.store import HarnessStore
    from agentx.graph.builder import build_graph
    from agentx.graph.resources import build_resources
    from agentx.memory.store import open_memory
    from agentx.runner import run_loop
    from agentx.settings import Settings, load_settings
    from agentx.summary import RunSummary

__all__ = [
    "HarnessStore",
    "RunSummary",
    "Settings",
    "build_graph",
    "build_resources",
    "load_settings",
    "open_memory",
    "run_loop",
]

_EXPORTS = {
    "build_graph": "agentx.graph.builder",
    "load_settings": "agentx.settings",
    "Settings": "agentx.settings",
    "run_loop": "agentx.runner",
    "RunSummary": "agentx.summary",
    "build_resources": "agentx.graph.resources",
    "open_memory": "agentx.memory.store",
    "HarnessStore": "agentx.evolution.store",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentx' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
