"""Checkpointers: SQLite in the workspace by default, in-memory, or none."""

from __future__ import annotations

import enum
import inspect
import sqlite3
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Checkpointer

from agentx import models
from agentx.evolution import models as evolution_models
from agentx.settings import Settings
from agentx.target import models as target_models


def _checkpointed_types() -> list[tuple[str, str]]:
    """The domain types the state holds: the only custom types a checkpoint may revive."""
    allowed = []
    for module in (models, target_models, evolution_models):
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and (
                issubclass(obj, enum.Enum) or hasattr(obj, "model_fields")
            ):
                allowed.append((module.__name__, name))
    return allowed


def serializer() -> JsonPlusSerializer:
    """A serializer that revives AgentX's domain models and nothing else custom."""
    return JsonPlusSerializer(allowed_msgpack_modules=_checkpointed_types())


def open_checkpointer(settings: Settings) -> Checkpointer:
    """The checkpointer the settings ask for."""
    if settings.checkpointer == "none":
        return None
    if settings.checkpointer == "memory":
        return InMemorySaver(serde=serializer())
    path = Path(settings.workspace) / "checkpoints.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(connection, serde=serializer())
