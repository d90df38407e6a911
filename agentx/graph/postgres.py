"""The Postgres checkpointer: several workers' runs in one server, one schema per workspace.

Why a schema per workspace: every workspace numbers its runs ``run-1``, ``run-2``... and
the run id is the graph's ``thread_id``, so two workers writing the same tables would
overwrite each other's checkpoints. Each workspace instead gets the schema ``agentx_``
followed by its random id (``workspace.json``, the id that already scopes card ids on a
shared Chroma server); the tables inside are langgraph-checkpoint-postgres' own. Nothing
else in AgentX needs to know.

Connection problems (server down, wrong password, unknown database) become one line
naming the server without its password (:class:`CheckpointerError`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from agentx.graph.checkpoint import serializer
from agentx.settings import Settings
from agentx.workspace.records import ensure_identity, read_identity

SCHEMA_PREFIX = "agentx_"

#: What a lost or refused server raises while a run writes checkpoints.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (psycopg.Error,)


class CheckpointerError(RuntimeError):
    """The checkpoint store cannot be reached or used; the message says which and why."""


def schema_name(workspace: Path, *, create: bool = True) -> str | None:
    """The schema holding ``workspace``'s checkpoints (None: a reader found no identity)."""
    identity = ensure_identity(workspace) if create else read_identity(workspace)
    return None if identity is None else f"{SCHEMA_PREFIX}{identity.id}"


def server_label(settings: Settings) -> str:
    """``user@host:port/db`` of the configured server, never its password."""
    assert settings.postgres.dsn is not None  # settings validation guarantees it
    parts = conninfo_to_dict(settings.postgres.dsn.get_secret_value())
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or parts.get("hostaddr") or "local socket"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{host}{port}/{parts.get('dbname') or parts.get('user') or '(default)'}"


def _reason(error: Exception) -> str:
    """The first meaningful line of a psycopg error (libpq prefixes and indents a hint)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].removeprefix("connection failed: ") if lines else type(error).__name__


def failure(settings: Settings, error: Exception, doing: str) -> CheckpointerError:
    """``error`` as one line naming the server (used by callers that catch mid-run too)."""
    return CheckpointerError(
        f"Postgres checkpointer {server_label(settings)}: cannot {doing}: {_reason(error)}"
    )


def _connect_kwargs(settings: Settings) -> dict[str, object]:
    # The settings that langgraph-checkpoint-postgres requires of a connection.
    return {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "connect_timeout": settings.postgres.connect_timeout_s,
    }


def _dsn(settings: Settings) -> str:
    assert settings.postgres.dsn is not None
    return settings.postgres.dsn.get_secret_value()


def _schema_exists(connection: psycopg.Connection, schema: str) -> bool:
    row = connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL AS present", (f"{schema}.checkpoints",)
    ).fetchone()
    return bool(row and row["present"])


def connect_saver(settings: Settings, *, read_only: bool = False) -> PostgresSaver | None:
    """The workspace's Postgres checkpointer over a connection of its own (``saver.conn``).

    A writer creates the workspace's schema and tables on first use. A reader
    (``read_only``) creates nothing and gets None when the workspace never checkpointed
    on this server.

    Raises:
        CheckpointerError: the server is unreachable or refuses the connection.
    """
    schema = schema_name(settings.workspace, create=not read_only)
    if schema is None:
        return None
    try:
        connection = psycopg.Connection.connect(_dsn(settings), **_connect_kwargs(settings))
    except psycopg.Error as error:
        raise failure(settings, error, "connect") from None
    try:
        if read_only and not _schema_exists(connection, schema):
            connection.close()
            return None
        if not read_only:
            connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        saver = PostgresSaver(connection, serde=serializer())
        if not read_only:
            saver.setup()
    except psycopg.Error as error:
        connection.close()
        raise failure(settings, error, f"prepare schema {schema}") from None
    return saver


@asynccontextmanager
async def async_postgres_saver(settings: Settings) -> AsyncIterator[AsyncPostgresSaver]:
    """The same checkpoints for async callers (LangServe), opened in their event loop."""
    schema = schema_name(settings.workspace)
    assert schema is not None
    try:
        connection = await psycopg.AsyncConnection.connect(
            _dsn(settings),
            **_connect_kwargs(settings),
        )
    except psycopg.Error as error:
        raise failure(settings, error, "connect") from None
    async with connection:
        try:
            await connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await connection.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))
            )
            saver = AsyncPostgresSaver(connection, serde=serializer())
            await saver.setup()
        except psycopg.Error as error:
            raise failure(settings, error, f"prepare schema {schema}") from None
        yield saver
