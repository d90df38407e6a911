"""Long-lived things the nodes use: the target, memory, catalog, agents, the model.

Built once per settings from :func:`build_resources`; callers embedding AgentX can
pass their own (e.g. another target implementing the contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from agentx.agents.developing.agent import Developer
from agentx.evolution.graph import Evolver
from agentx.evolution.store import HarnessStore
from agentx.llm.factory import make_chat_model
from agentx.memory.store import KnowledgeStore, open_store
from agentx.research.catalog import Technique, load_catalog
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldParams, load_world
from agentx.settings import Settings
from agentx.target.contract import Target, TargetError
from agentx.target.models import DataReport
from agentx.workspace import isolation
from agentx.workspace.records import ensure_identity, record_memory


@dataclass
class Resources:
    """Everything a run needs besides its state."""

    settings: Settings
    target: Target
    store: KnowledgeStore
    catalog: dict[str, Technique]
    developer: Developer
    world_name: str
    llm: BaseChatModel | None = None
    harness: dict[str, dict[str, Any]] = field(default_factory=dict)
    harness_store: HarnessStore | None = None
    horizon_days: int | None = None  # the longest stage the target can simulate, if known
    workspace_id: str = ""
    _data_report: DataReport | None = None

    def evolver(self) -> Evolver:
        """The SGPO step's nodes over this workspace's harness store and target."""
        store = self.harness_store or HarnessStore(self.settings.workspace / "harness")
        return Evolver(self.settings, store, self.target, self.catalog, self.data_report, self.llm)

    def reload_harness(self, agent: str) -> dict[str, Any]:
        """Re-read ``agent``'s active harness (after harness evolution kept an edit)."""
        store = self.harness_store or HarnessStore(self.settings.workspace / "harness")
        self.harness[agent] = store.harness(agent)
        return self.harness[agent]

    def data_report(self) -> DataReport:
        """The target's data analysis (computed once)."""
        if self._data_report is None:
            self._data_report = self.target.analyse_data()
        return self._data_report


def isolation_policy(settings: Settings) -> isolation.IsolationPolicy:
    """The run's confinement policy: an offline run executes only code shipped with AgentX.

    With a model configured any code may be model-written (the baseline too, once a
    model's change was merged), so only offline runs count as trusted.
    """
    return isolation.IsolationPolicy(
        trusted_code=not settings.llm.enabled,
        allow_unconfined_trusted=settings.sandbox.allow_unconfined_trusted,
    )


def check_stages_fit(settings: Settings, world: WorldParams) -> None:
    """Refuse rollout stages longer than ``world`` simulates, before any sandbox is built.

    Raises:
        TargetError: names the stages and the world's horizon.
    """
    too_long = [s.name for s in settings.stages if s.days > world.horizon_days]
    if too_long:
        raise TargetError(
            f"rollout stage(s) {', '.join(too_long)} last longer than world {world.name!r} "
            f"simulates ({world.horizon_days} days): shorten them or raise horizon_days"
        )


def build_resources(
    settings: Settings,
    target: Target | None = None,
    llm: BaseChatModel | None = None,
    store: KnowledgeStore | None = None,
    sandbox_root: Path | None = None,
) -> Resources:
    """Open the sandbox (or use ``target``), the memory (or use ``store``), the catalog and
    the model (or use ``llm``).

    The sandbox lives at ``sandbox_root`` (default ``<workspace>/sandbox``): a graph that
    serves runs of several worlds or seeds keeps one per world and seed
    (:class:`agentx.graph.context.ResourcePool`).

    Each agent's harness is the workspace's active version (the bundled ``prompts/`` until
    harness evolution keeps an edit).
    """
    settings.workspace.mkdir(parents=True, exist_ok=True)
    isolation.configure(isolation_policy(settings))
    if target is None:
        world = load_world(settings.world)
        check_stages_fit(settings, world)
        root = sandbox_root or settings.workspace / "sandbox"
        target = SandboxTarget.create(root, world, settings.seed)
        world_name, horizon_days = world.name, world.horizon_days
    else:
        world_name = getattr(target, "name", "custom")
        params = getattr(target, "world_params", None)
        horizon_days = getattr(params, "horizon_days", None)
    model = llm if llm is not None else make_chat_model(settings.llm)
    harness_store = HarnessStore(settings.workspace / "harness")
    harness = {
        agent: harness_store.harness(agent) for agent in ("brainstorm", "developing", "evaluation")
    }
    catalog = load_catalog()
    developer = Developer(
        target,
        catalog,
        settings.workspace / "worktrees",
        harness["developing"],
        llm=model,
        llm_settings=settings.llm.model_dump(),
        max_detail_chars=settings.sandbox.max_detail_chars,
    )
    if store is None:  # a caller's own store is theirs to describe
        store = open_store(settings.workspace, settings.memory, settings.embeddings)
        record_memory(settings.workspace, settings.memory.chroma_url, settings.memory.collection)
    return Resources(
        settings=settings,
        target=target,
        store=store,
        catalog=catalog,
        developer=developer,
        world_name=world_name,
        llm=model,
        harness=harness,
        harness_store=harness_store,
        horizon_days=horizon_days,
        workspace_id=ensure_identity(settings.workspace).id,
    )
