"""The run's trace log: one JSON line per event in ``<workspace>/traces/<run_id>.jsonl``.

Why not graph state: the trace grows with every node of every experiment, and state is
checkpointed after each node, so a channel holding it made every checkpoint larger than
the last. The log is appended once per event and read back by the report, the CLI and
tests (:func:`read_trace`). Live callers get the same events on LangGraph's ``custom``
stream (``{"trace": [...]}``).

A node re-run after a crash or a human gate writes its events again; each event carries
the key of the task that wrote it (its checkpoint namespace, stable across the re-run) and
its index there, and :func:`read_trace` keeps the first copy.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from langgraph.config import get_config, get_stream_writer

from agentx.models import TraceEvent

STREAM_KEY = "trace"


_APPEND = threading.Lock()  # experiments of a wave log side by side


def trace_path(workspace: Path, run_id: str) -> Path:
    """Where ``run_id``'s trace log lives."""
    return Path(workspace) / "traces" / f"{run_id}.jsonl"


def _task_key() -> str | None:
    """The running task's checkpoint namespace (None outside a graph)."""
    try:
        config = get_config()
    except RuntimeError:
        return None
    metadata = config.get("metadata") or {}
    namespace = metadata.get("langgraph_checkpoint_ns") or config.get("configurable", {}).get(
        "checkpoint_ns"
    )
    return str(namespace) if namespace else None


def emit(workspace: Path, run_id: str, events: list[TraceEvent]) -> None:
    """Append ``events`` to the run's log and send them on the ``custom`` stream."""
    if not events:
        return
    task = _task_key()
    path = trace_path(workspace, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, event in enumerate(events):
        row: dict[str, Any] = event.model_dump(mode="json")
        row["key"] = f"{task}#{index}" if task else None
        lines.append(json.dumps(row, sort_keys=True))
    with _APPEND, path.open("a", encoding="utf-8") as log:  # whole lines, one writer at a time
        log.write("\n".join(lines) + "\n")
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph (a node run by hand)
        return
    writer({STREAM_KEY: events})


def read_trace(workspace: Path, run_id: str) -> list[TraceEvent]:
    """The run's events in order, each once (a re-run task's copies dropped).

    A line cut short by a crash mid-write is skipped: it is the only one that can be.
    """
    path = trace_path(workspace, run_id)
    if not path.is_file():
        return []
    seen: set[str] = set()
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = row.pop("key", None)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        events.append(TraceEvent.model_validate(row))
    return events
