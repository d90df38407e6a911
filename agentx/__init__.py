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
    from agentx.graph.builder import build_graph
    from agentx.runner import run_loop
    from agentx.settings import Settings, load_settings
    from agentx.summary import RunSummary

__all__ = ["RunSummary", "Settings", "build_graph", "load_settings", "run_loop"]

_EXPORTS = {
    "build_graph": "agentx.graph.builder",
    "load_settings": "agentx.settings",
    "Settings": "agentx.settings",
    "run_loop": "agentx.runner",
    "RunSummary": "agentx.summary",
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
