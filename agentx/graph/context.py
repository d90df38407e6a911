"""Per-run context: what may differ between runs of one compiled graph.

Why: the graph used to be compiled over one world, seed and budget (bound into node
closures), so serving another world meant another graph, and reading a run back meant
building a graph over stand-in resources. Now the graph is compiled once over base
settings and a :class:`ResourcePool`; each run names its world, seed, budget and policy
values in its context, and each node finds the resources of its run's context.

Where a run's context comes from, first found wins:

1. the run's state (``context``, stored by intake at the start of a run, so a run resumed
   without a context, e.g. a Studio thread answering a gate, keeps its world and seed);
2. LangGraph's run context (``context=`` on invoke/stream; Studio's context form;
   LangGraph Server's ``context`` of a run), typed by :class:`RunContext`;
3. the run's ``configurable`` (what LangServe can pass: ``{"configurable": {"world": ...}}``);
4. the base settings.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.runtime import get_runtime
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentx.settings import Settings

CONTEXT_KEY = "context"


class RunContext(BaseModel):
    """Values a run may set for itself; unset ones come from the base settings."""

    model_config = ConfigDict(extra="forbid")

    world: str | None = Field(None, description="Sandbox world (a bundled name or a file).")
    seed: int | None = Field(None, description="Seed of the world, the policy and the traffic.")
    iterations: int | None = Field(None, ge=1, description="Experiment budget of the run.")
    autonomous: bool | None = Field(None, description="Skip the human gates.")
    alpha: float | None = Field(None, gt=0, lt=1, description="Significance level.")
    max_repair_attempts: int | None = Field(
        None, ge=0, description="Repairs before a change is abandoned."
    )

    def overrides(self) -> dict[str, Any]:
        """The values this context sets."""
        return self.model_dump(exclude_none=True)

    @classmethod
    def of(cls, settings: Settings) -> RunContext:
        """Every context value of ``settings`` (what a run started from settings records)."""
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})


class ContextError(ValueError):
    """A run's context cannot be served (an invalid value, or a fixed target's other world).

    ``problems`` lists the invalid values one a line (``seed: Input should be ...``).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


def effective_settings(base: Settings, context: RunContext | None) -> Settings:
    """``base`` with ``context``'s values put in (validated like any settings).

    Raises:
        ContextError: a value is not valid settings.
    """
    overrides = context.overrides() if context is not None else {}
    if all(getattr(base, key) == value for key, value in overrides.items()):
        return base
    data = base.model_dump()
    if "stages" not in base.model_fields_set:
        del data["stages"]  # the world's own allocation: the run's world decides it
    try:
        return Settings.model_validate({**data, **overrides})
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or '(context)'}: "
            + str(item["msg"]).removeprefix("Value error, ")
            for item in error.errors()
        ]
        raise ContextError(f"invalid run context: {'; '.join(problems)}", problems) from None


def _from_config() -> RunContext | None:
    """The running graph's context: LangGraph's runtime context, else ``configurable``."""
    try:
        config = get_config()
    except RuntimeError:  # outside a graph (a node called by hand)
        return None
    configurable = config.get("configurable") or {}
    context = getattr(get_runtime(), "context", None)
    if isinstance(context, RunContext):
        return context
    if isinstance(context, dict):
        return RunContext.model_validate(context)
    picked = {k: configurable[k] for k in RunContext.model_fields if k in configurable}
    return RunContext.model_validate(picked) if picked else None


def context_of(state: Any) -> RunContext | None:
    """The context of the run ``state`` belongs to (see the module's order)."""
    stored = state.get(CONTEXT_KEY) if isinstance(state, dict) else None
    if isinstance(stored, RunContext):
        return stored
    if isinstance(stored, dict):
        return RunContext.model_validate(stored)
    return _from_config()


_CURRENT: ContextVar[Any] = ContextVar("agentx_resources", default=None)


#: Who holds a workspace served by the Studio / LangGraph Server graphs (``graphs/``).
STUDIO_HOLDER = "langgraph server (AgentX Studio graphs)"


class ResourcePool:
    """Resources per run context, built when a run first needs them and then kept.

    Runs that differ only in policy values (budget, autonomy, alpha, repairs) share the
    sandbox, the memory and the developer of their world and seed; another world or seed
    gets its own sandbox under ``<workspace>/sandboxes/`` (the base one stays at
    ``<workspace>/sandbox``, where earlier runs find it). Memory is one store per workspace.
    With ``holder`` (the Studio / LangGraph Server graphs), building the first resources
    takes the workspace lock for the rest of the process, naming ``holder``.
    """

    def __init__(
        self,
        settings: Settings,
        resources: Any = None,
        build: Callable[..., Any] | None = None,
        fixed: bool = True,
        holder: str | None = None,
    ):
        self.settings = settings
        self._build = build
        # a server's graphs (``graphs/``) hold the workspace from the first build on
        self._holder = holder
        self._lock = threading.Lock()
        self._by_world: dict[tuple[str, int], Any] = {}
        # a caller's own resources (their target) serve their world and seed only
        self._fixed = resources is not None and fixed
        self._given = resources
        if resources is not None:
            self._by_world[(settings.world, settings.seed)] = resources

    @classmethod
    def of(cls, resources_or_pool: Any) -> ResourcePool:
        """A pool over ``resources_or_pool`` (already a pool: itself)."""
        if isinstance(resources_or_pool, ResourcePool):
            return resources_or_pool
        return cls(resources_or_pool.settings, resources_or_pool)

    def get(self, context: RunContext | None = None) -> Any:  # -> Resources (no import cycle)
        """The resources of a run with ``context``.

        Raises:
            ContextError: the context is invalid, or names another world or seed than a
                caller's own target serves.
        """
        settings = effective_settings(self.settings, context)
        key = (settings.world, settings.seed)
        with self._lock:
            found = self._by_world.get(key)
            if found is None and self._fixed:
                raise ContextError(
                    f"this graph serves the caller's target {self._given.world_name!r}; "
                    f"a run cannot choose world {settings.world!r} seed {settings.seed}"
                )
            if found is None:
                found = self._make(settings)
                self._by_world[key] = found
        if found.settings == settings:
            return found
        return replace(found, settings=settings)

    def _make(self, settings: Settings) -> Any:
        from agentx.graph.resources import build_resources

        if self._holder is not None:
            from agentx.workspace.lock import hold_for_process

            hold_for_process(self.settings.workspace, self._holder)
        build = self._build or build_resources
        shared = next(iter(self._by_world.values()), None)
        return build(
            settings,
            sandbox_root=run_sandbox(self.settings, settings),
            store=shared.store if shared is not None else None,
        )

    def for_state(self, state: Any) -> Any:
        """The resources of the run ``state`` belongs to (set by :func:`bind` in a node)."""
        bound = _CURRENT.get()
        return bound if bound is not None else self.get(context_of(state))


def sandbox_root(settings: Settings) -> Path:
    """Where a run of another world or seed than the workspace's default keeps its sandbox."""
    world = Path(str(settings.world)).stem
    return settings.workspace / "sandboxes" / f"{world}-seed{settings.seed}"


def run_sandbox(base: Settings, settings: Settings) -> Path | None:
    """The sandbox of a run with ``settings`` in a graph over ``base``: None (the default,
    ``<workspace>/sandbox``) for the base world and seed, else :func:`sandbox_root`.

    A run records it (``run-settings/``), so a resume, which builds its resources from the
    run's own settings, opens the sandbox the run started in.
    """
    if (settings.world, settings.seed) == (base.world, base.seed):
        return None
    return sandbox_root(settings)


def bind(pool: ResourcePool, node: Callable[..., Any], wants_config: bool):
    """``node`` run with its run's resources as ``_CURRENT`` (what ``Nodes.r`` reads)."""

    def bound(state: Any, config: RunnableConfig) -> Any:
        token = _CURRENT.set(pool.get(context_of(state)))
        try:
            return node(state, config) if wants_config else node(state)
        finally:
            _CURRENT.reset(token)

    bound.__name__ = getattr(node, "__name__", "node")
    bound.__doc__ = getattr(node, "__doc__", None)
    return bound


def current_resources() -> Any:
    """The resources bound for the running node (None outside one)."""
    return _CURRENT.get()


class ContextBoundNodes:
    """A view of a nodes object whose methods run with their run's resources bound
    (:func:`bind`), so one compiled graph serves every run context."""

    def __init__(self, nodes: object, pool: ResourcePool):
        self._nodes = nodes
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._nodes, name)
        if name.startswith("_") or not inspect.ismethod(attribute):
            return attribute
        wants_config = "config" in inspect.signature(attribute).parameters
        return bind(self._pool, attribute, wants_config)
