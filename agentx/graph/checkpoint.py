"""Checkpointers: SQLite in the workspace by default, Postgres, in-memory, or none.

Every checkpointer AgentX opens is built here (Postgres details in :mod:`agentx.graph.postgres`).
"""

from __future__ import annotations

import enum
import inspect
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Checkpointer

from agentx import models, settings
from agentx.evolution import models as evolution_models
from agentx.graph import context, state
from agentx.settings import Settings
from agentx.target import models as target_models
from agentx.workspace.records import record_checkpointer


def _checkpointed_types() -> list[tuple[str, str]]:
    """The domain types the state holds: the only custom types a checkpoint may revive
    (a follow-up's rollout stages are settings models; the queue is the graph's own)."""
    allowed = [(settings.__name__, settings.RolloutStage.__name__)]
    for module in (models, target_models, evolution_models, state, context):
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and (
                issubclass(obj, enum.Enum) or hasattr(obj, "model_fields")
            ):
                allowed.append((module.__name__, name))
    return allowed


def serializer() -> JsonPlusSerializer:
    """A serializer that revives AgentX's domain models and nothing else custom."""
    return JsonPlusSerializer(allowed_msgpack_modules=_checkpointed_types())


def _sqlite_path(settings: Settings) -> Path:
    path = Path(settings.workspace) / "checkpoints.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@asynccontextmanager
async def open_async_checkpointer(settings: Settings) -> AsyncIterator[Checkpointer]:
    """The same checkpoints for async callers (LangServe runs the graph with ``ainvoke``,
    which the sync savers refuse); open it inside the event loop that will use it."""
    if settings.checkpointer == "postgres":
        from agentx.graph.postgres import async_postgres_saver

        async with async_postgres_saver(settings) as saver:
            record_checkpointer(settings.workspace, settings.checkpointer)
            yield saver
        return
    if settings.checkpointer != "sqlite":
        yield open_checkpointer(settings)
        return
    async with aiosqlite.connect(str(_sqlite_path(settings))) as connection:
        record_checkpointer(settings.workspace, settings.checkpointer)
        yield AsyncSqliteSaver(connection, serde=serializer())


def open_checkpointer(settings: Settings, *, read_only: bool = False) -> Checkpointer:
    """The checkpointer the settings ask for.

    Args:
        read_only: for commands that only look (status, report): create nothing, and
            return None when the workspace has no checkpoints there.

    Raises:
        CheckpointerError: the Postgres server cannot be reached or used.
    """
    if settings.checkpointer == "none":
        return None
    if settings.checkpointer == "memory":
        return None if read_only else InMemorySaver(serde=serializer())
    if settings.checkpointer == "postgres":
        from agentx.graph.postgres import connect_saver

        saver: Checkpointer = connect_saver(settings, read_only=read_only)
    else:
        path = Path(settings.workspace) / "checkpoints.sqlite"
        if read_only and not path.is_file():
            return None
        connection = sqlite3.connect(str(_sqlite_path(settings)), check_same_thread=False)
        saver = SqliteSaver(connection, serde=serializer())
    if not read_only:  # remember where this workspace's runs are (once the store is open)
        record_checkpointer(settings.workspace, settings.checkpointer)
    return saver


@contextmanager
def checkpointer_session(settings: Settings, *, read_only: bool = False) -> Iterator[Checkpointer]:
    """:func:`open_checkpointer` whose connection closes when the block ends (a worker or
    an embedding program that runs many times must not keep one connection per run)."""
    saver = open_checkpointer(settings, read_only=read_only)
    try:
        yield saver
    finally:
        connection = getattr(saver, "conn", None)
        if connection is not None:
            connection.close()
