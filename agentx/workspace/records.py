"""What a workspace remembers about itself: its id, the memory it used, each run's settings.

Why each record exists:

- **Identity** (``workspace.json``): every workspace's first run is ``run-1``, so card ids
  built from run ids collide on a shared Chroma server. A random id made once per
  workspace scopes them (see :func:`agentx.agents.evaluation.cards.make_card`).
- **Memory** (also ``workspace.json``): a run against a Chroma server leaves its cards
  there, not in the workspace; ``status`` and ``memory search`` read the recorded memory
  so they do not report an empty store when the variable is not set again.
- **Checkpointer** (also ``workspace.json``): runs checkpointed in Postgres are not in the
  workspace; a reader with other settings is told where they are instead of "no checkpoint".
- **Run settings** (``run-settings/RUN.json``): ``--resume`` restores the settings the run
  started with (world, seed, budget, stages, checkpointer...) and opens the sandbox it
  started in, so a resumed run is the same run. Runs started through ``agentx serve`` are
  recorded the same way, with the world and seed their request chose.

Writes are atomic (a temporary file renamed over the old one).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

IDENTITY = "workspace.json"
#: The workspace's run ids in start order: what status, report, resume and serve list.
RUNS = "runs.json"
_RUN_IDS = TypeAdapter(list[str])
RUN_SETTINGS_DIR = "run-settings"
#: Least free space a run starts with: the sandbox, worktrees and checkpoints need room.
MIN_FREE_BYTES = 64 * 1024 * 1024

#: Settings that define what a run does; restored on resume, a contradiction is an error.
#: (Where it runs and how it reaches models — workspace, keys, timeouts — may change.)
RUN_DEFINING = (
    "world",
    "seed",
    "goal",
    "iterations",
    "max_repair_attempts",
    "alpha",
    "autonomous",
    "checkpointer",
    "stages",
    "guardrails",
    "north_star",
    "evolution",
    "concurrency",
    "llm.model",
    "llm.structured_method",
    "memory.chroma_url",
    "memory.collection",
    "embeddings.provider",
    "embeddings.model",
)


class WorkspaceRecordError(RuntimeError):
    """A workspace record cannot be read or written; the message says which and why."""


class MemoryRecord(BaseModel):
    """The knowledge store a workspace's runs wrote to."""

    chroma_url: str | None = Field(None, description="None: the embedded store in memory/.")
    collection: str


class WorkspaceIdentity(BaseModel):
    """``workspace.json``."""

    id: str = Field(description="Random, made once; scopes ids written to shared stores.")
    memory: MemoryRecord | None = None
    checkpointer: str | None = Field(
        None, description="Where runs were last checkpointed (sqlite, postgres); no secrets."
    )


class RunSettingsRecord(BaseModel):
    """The run-defining settings a run started with (JSON values by dotted key)."""

    run_id: str
    settings: dict[str, Any]
    sandbox: str | None = Field(
        None,
        description="The run's sandbox, relative to the workspace, when not the default "
        "``sandbox`` (a served run of another world or seed: ``sandboxes/tiny-seed3``).",
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def check_writable(workspace: Path) -> None:
    """Refuse in one line before anything is written when the workspace cannot take a run.

    Raises:
        WorkspaceRecordError: read-only, not a directory, no permission, or nearly full.
    """
    workspace = Path(workspace)
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        probe = workspace / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
        free = shutil.disk_usage(workspace).free
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = f"{reason}; choose a writable --workspace"
        raise WorkspaceRecordError(f"cannot write to workspace {workspace}: {reason}") from None
    if free < MIN_FREE_BYTES:
        raise WorkspaceRecordError(
            f"workspace {workspace} has {free // 1024} KiB free; a run needs at least "
            f"{MIN_FREE_BYTES // (1024 * 1024)} MiB: free space or choose another --workspace"
        )


def short_of_space(workspace: Path) -> int | None:
    """Free bytes when the workspace holds less than a run needs, else None.

    A full disk surfaces mid-run as whatever wrote last failing (git, Chroma's SQLite, the
    checkpointer), each in its own words; asking the disk itself tells them apart from a
    real fault of that component without parsing their messages."""
    try:
        free = shutil.disk_usage(workspace).free
    except OSError:
        return None
    return free if free < MIN_FREE_BYTES else None


def read_identity(workspace: Path) -> WorkspaceIdentity | None:
    """``workspace.json`` if present (never creates it: readers must not write)."""
    path = Path(workspace) / IDENTITY
    if not path.is_file():
        return None
    try:
        return WorkspaceIdentity.model_validate_json(path.read_text())
    except (OSError, ValidationError) as error:
        raise WorkspaceRecordError(f"cannot read {path}: {error}") from None


def read_run_ids(workspace: Path) -> list[str]:
    """The workspace's run ids in start order (``[]`` before its first run).

    Raises:
        WorkspaceRecordError: ``runs.json`` cannot be read or is not a list of run ids
            (edited by hand, a disk fault); readers, runs and the server then refuse in one
            line instead of numbering a new run over the old ones.
    """
    path = Path(workspace) / RUNS
    if not path.is_file():
        return []
    try:
        return _RUN_IDS.validate_json(path.read_bytes())
    except OSError as error:
        reason = error.strerror or str(error)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"{first['msg']}{f' at {where}' if where else ''}"
    raise WorkspaceRecordError(
        f"cannot read {path}: {reason}; it must be a JSON list of run ids (repair it by "
        f"hand: each run's settings are in {RUN_SETTINGS_DIR}/)"
    )


def add_run_id(workspace: Path, run_id: str) -> None:
    """Append ``run_id`` to ``runs.json`` atomically (callers hold the workspace lock).

    Raises:
        WorkspaceRecordError: ``runs.json`` is unreadable (see :func:`read_run_ids`).
    """
    runs = read_run_ids(workspace)
    _write_atomic(Path(workspace) / RUNS, json.dumps([*runs, run_id]))


def ensure_identity(workspace: Path) -> WorkspaceIdentity:
    """The workspace's identity, made on first use."""
    identity = read_identity(workspace)
    if identity is None:
        identity = WorkspaceIdentity(id=uuid.uuid4().hex[:16])
        _write_atomic(Path(workspace) / IDENTITY, identity.model_dump_json(indent=2))
    return identity


def record_memory(workspace: Path, chroma_url: str | None, collection: str) -> None:
    """Remember which memory the workspace's runs write to."""
    identity = ensure_identity(workspace)
    memory = MemoryRecord(chroma_url=chroma_url, collection=collection)
    if identity.memory != memory:
        updated = identity.model_copy(update={"memory": memory})
        _write_atomic(Path(workspace) / IDENTITY, updated.model_dump_json(indent=2))


def run_defining(settings: BaseModel) -> dict[str, Any]:
    """The run-defining settings as JSON values by dotted key."""
    dumped = settings.model_dump(mode="json")
    values: dict[str, Any] = {}
    for dotted in RUN_DEFINING:
        head, _, rest = dotted.partition(".")
        values[dotted] = dumped[head][rest] if rest else dumped[head]
    return values


def save_run_settings(
    workspace: Path, run_id: str, settings: BaseModel, sandbox: Path | None = None
) -> None:
    """Store the settings ``run_id`` starts with (and its sandbox when not the default)."""
    where = None
    if sandbox is not None:
        where = Path(sandbox).resolve().relative_to(Path(workspace).resolve()).as_posix()
    record = RunSettingsRecord(run_id=run_id, settings=run_defining(settings), sandbox=where)
    _write_atomic(
        Path(workspace) / RUN_SETTINGS_DIR / f"{run_id}.json", record.model_dump_json(indent=2)
    )


def load_run_record(workspace: Path, run_id: str) -> RunSettingsRecord | None:
    """The stored record of ``run_id`` (None for runs from before records were kept)."""
    path = Path(workspace) / RUN_SETTINGS_DIR / f"{run_id}.json"
    if not path.is_file():
        return None
    try:
        return RunSettingsRecord.model_validate_json(path.read_text())
    except (OSError, ValidationError) as error:
        raise WorkspaceRecordError(f"cannot read {path}: {error}") from None


def load_run_settings(workspace: Path, run_id: str) -> dict[str, Any] | None:
    """The stored run-defining settings of ``run_id`` (None for runs from before they were kept)."""
    record = load_run_record(workspace, run_id)
    return record.settings if record is not None else None


def run_sandbox_path(workspace: Path, run_id: str) -> Path | None:
    """Where ``run_id``'s sandbox is when it is not the default ``<workspace>/sandbox``."""
    record = load_run_record(workspace, run_id)
    if record is None or record.sandbox is None:
        return None
    return Path(workspace) / record.sandbox


def with_values(current: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """``current`` (a settings dump) with the stored dotted values put back in place."""
    merged = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in current.items()
    }
    for dotted, value in stored.items():
        head, _, rest = dotted.partition(".")
        if rest:
            merged[head] = {**merged[head], rest: value}
        else:
            merged[head] = value
    return merged


def record_checkpointer(workspace: Path, kind: str) -> None:
    """Remember where the workspace's runs are checkpointed (the kind, never the DSN)."""
    identity = ensure_identity(workspace)
    if identity.checkpointer != kind:
        updated = identity.model_copy(update={"checkpointer": kind})
        _write_atomic(Path(workspace) / IDENTITY, updated.model_dump_json(indent=2))
