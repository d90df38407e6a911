"""Checkpointers: SQLite in the workspace by default, in-memory, or none."""

from __future__ import annotations

import enum
import inspect
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
    which the sync SqliteSaver refuses); open it inside the event loop that will use it."""
    if settings.checkpointer != "sqlite":
        yield open_checkpointer(settings)
        return
    async with aiosqlite.connect(str(_sqlite_path(settings))) as connection:
        yield AsyncSqliteSaver(connection, serde=serializer())


def open_checkpointer(settings: Settings) -> Checkpointer:
    """The checkpointer the settings ask for."""
    if settings.checkpointer == "none":
        return None
    if settings.checkpointer == "memory":
        return InMemorySaver(serde=serializer())
    connection = sqlite3.connect(str(_sqlite_path(settings)), check_same_thread=False)
    return SqliteSaver(connection, serde=serializer())
