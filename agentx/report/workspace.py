"""A workspace's runs, read back from its SQLite or Postgres checkpointer without side effects.

The run state is read through the loop graph (``build_graph(...).get_state``) so it is
exactly what the loop wrote. Building the graph builds no resources (each run's are made
lazily from its context when it runs), so reading never creates or rewrites a sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentx.evolution.store import HarnessStore
from agentx.graph.builder import build_graph
from agentx.graph.checkpoint import checkpointer_session
from agentx.graph.postgres import CheckpointerError
from agentx.settings import Settings
from agentx.workspace.records import (
    RUNS,
    WorkspaceRecordError,
    load_run_settings,
    read_identity,
    read_run_ids,
    run_sandbox_path,
    with_values,
)


class ReportError(RuntimeError):
    """A workspace or run cannot be read; the message says what to do."""


class CheckpointsUnavailable(ReportError):
    """The checkpoints cannot be read (server down, or kept by another checkpointer than the
    settings name): not the same as a run that has no checkpoint yet."""


class RunState(BaseModel):
    """One run as its last checkpoint left it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    values: dict[str, Any] = Field(description="The loop state (domain models, not JSON).")
    next_nodes: tuple[str, ...] = Field(default=(), description="Empty when the run finished.")
    interrupted: bool = Field(False, description="Paused at a human gate.")

    @property
    def finished(self) -> bool:
        """True when the loop reached its end."""
        return not self.next_nodes

    @property
    def status(self) -> str:
        """finished / waiting at a gate / stopped before a node (resumable)."""
        if self.finished:
            return "finished"
        where = ", ".join(self.next_nodes)
        return f"waiting at {where}" if self.interrupted else f"stopped before {where}"


def list_runs(workspace: Path) -> list[str]:
    """Run ids of ``workspace`` in start order (from ``runs.json``)."""
    path = Path(workspace) / RUNS
    if not path.is_file():
        raise ReportError(
            f"no AgentX runs in {workspace} (no runs.json); "
            f"start one with `agentx run --workspace {workspace}`"
        )
    try:
        return read_run_ids(workspace)
    except WorkspaceRecordError as error:
        raise ReportError(str(error)) from None


def run_settings(settings: Settings, run_id: str) -> Settings:
    """The settings ``run_id`` ran with: its recorded run-defining values (world, seed,
    stages...) over ``settings``, so a report shows the run as it ran, whichever interface
    started it. The reader's own checkpointer is kept (it is how the run is read); a run
    without a record, or whose record no longer validates, is shown with ``settings``.
    """
    try:
        stored = load_run_settings(settings.workspace, run_id) or {}
    except WorkspaceRecordError:
        return settings
    stored = {key: value for key, value in stored.items() if key != "checkpointer"}
    try:
        return Settings.model_validate(with_values(settings.model_dump(), stored))
    except ValidationError:
        return settings


def world_of(workspace: Path, run_id: str | None = None) -> str:
    """The world the workspace's sandbox (or ``run_id``'s own) was built from (``?`` when
    unknown)."""
    sandbox = None
    if run_id is not None:
        try:
            sandbox = run_sandbox_path(workspace, run_id)
        except WorkspaceRecordError:
            sandbox = None
    marker = (sandbox or Path(workspace) / "sandbox") / "data" / "world.json"
    try:
        data = json.loads(marker.read_text())
        world = data.get("world", data)  # {"world": params, "simulator": hash}, or bare params
        return str(world.get("name", "?"))
    except (OSError, json.JSONDecodeError, AttributeError):
        return "?"


def _no_checkpoints(settings: Settings) -> ReportError:
    """Why the configured checkpointer has nothing: elsewhere (say where), or never written."""
    workspace = Path(settings.workspace)
    identity = read_identity(workspace)
    used = identity.checkpointer if identity is not None else None
    if used and used != settings.checkpointer:
        how = (
            'checkpointer = "postgres" and postgres.dsn (AGENTX_CHECKPOINTER=postgres, '
            "AGENTX_POSTGRES__DSN)"
            if used == "postgres"
            else f'checkpointer = "{used}"'
        )
        return CheckpointsUnavailable(
            f"the runs of {workspace} are checkpointed in {used}, not {settings.checkpointer}: "
            f"set {how} to read them"
        )
    return ReportError(
        f"no checkpoints of {workspace} in its {settings.checkpointer} checkpointer: runs can "
        "be read back only from the SQLite or Postgres checkpointer they were written to"
    )


def load_run(settings: Settings, run_id: str | None = None) -> RunState:
    """The state of ``run_id`` (default: the workspace's last run).

    Raises:
        ReportError: no runs, an unknown run id, or no checkpoint for it.
    """
    workspace = Path(settings.workspace)
    runs = list_runs(workspace)
    if not runs:
        raise ReportError(f"no runs recorded in {workspace}/runs.json")
    run_id = run_id or runs[-1]
    if run_id not in runs:
        raise ReportError(f"no run {run_id!r} in {workspace}; runs: {', '.join(runs)}")
    try:
        with checkpointer_session(settings, read_only=True) as checkpointer:
            if checkpointer is None:
                raise _no_checkpoints(settings)
            graph = build_graph(settings, checkpointer=checkpointer)  # builds no resources
            snapshot = graph.get_state({"configurable": {"thread_id": run_id}})
    except CheckpointerError as error:
        raise CheckpointsUnavailable(str(error)) from None
    if not snapshot.values:
        raise ReportError(f"run {run_id!r} has no checkpoint yet (stopped before its first step)")
    interrupted = any(task.interrupts for task in snapshot.tasks)
    return RunState(
        run_id=run_id,
        values=dict(snapshot.values),
        next_nodes=tuple(snapshot.next),
        interrupted=interrupted,
    )


def harness_store(workspace: Path) -> HarnessStore:
    """The workspace's versioned harnesses (read only here; nothing is created)."""
    return HarnessStore(Path(workspace) / "harness")


def harness_versions(workspace: Path) -> dict[str, int]:
    """The active harness version of each agent in ``workspace``.

    Its harness store is the truth: the bundled ``prompts/`` version until harness evolution
    (SGPO) keeps an edit, then the version it committed.
    """
    store = harness_store(workspace)
    agents = {path.parent.name for path in store.bundled.glob("*/harness.yaml")}
    active = store.root / "active.json"
    if active.is_file():
        try:
            agents |= set(json.loads(active.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise ReportError(f"cannot read {active}: {error}") from None
    return {agent: store.version(agent) for agent in sorted(agents)}


def evolution_counts(workspace: Path) -> dict[str, dict[str, int]]:
    """SGPO steps recorded in the workspace per agent: kept, rolled back, other, total."""
    counts: dict[str, dict[str, int]] = {}
    for step in harness_store(workspace).steps():
        row = counts.setdefault(step.agent, {"kept": 0, "rolled_back": 0, "other": 0, "total": 0})
        row[step.outcome if step.outcome in ("kept", "rolled_back") else "other"] += 1
        row["total"] += 1
    return dict(sorted(counts.items()))
