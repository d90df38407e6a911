"""The Postgres checkpointer (issue 16, scale-out) against a real PostgreSQL server on
127.0.0.1: the CLI, a kill -9 and an embedded resume, ``agentx serve``, readers, and a dead
or wrong DSN refused in one line before anything is registered."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from langserve import RemoteRunnable
from processes import kill_during_second_experiment
from servers import background_server

from agentx.memory.store import open_store
from agentx.report.workspace import load_run
from agentx.runner import run_loop
from agentx.settings import SettingsError, load_settings

AGENTX = [sys.executable, "-m", "agentx.cli.app"]


def _env(dsn: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {
        **clean,
        "COLUMNS": "200",
        "AGENTX_CHECKPOINTER": "postgres",
        "AGENTX_POSTGRES__DSN": dsn,
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _schemas(dsn: str) -> dict[str, list[str]]:
    """Each AgentX schema on the server and the thread ids (run ids) checkpointed there."""
    with psycopg.connect(dsn) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'agentx%' ORDER BY 1"
            )
        ]
        return {
            name: [
                row[0]
                for row in connection.execute(
                    f'SELECT DISTINCT thread_id FROM "{name}".checkpoints ORDER BY 1'
                )
            ]
            for name in names
        }


def _workspace_id(workspace: Path) -> str:
    return json.loads((workspace / "workspace.json").read_text())["id"]


def test_postgres_settings_are_checked_at_start() -> None:
    with pytest.raises(SettingsError, match=r'checkpointer "postgres" needs postgres.dsn'):
        load_settings(checkpointer="postgres")
    with pytest.raises(SettingsError, match=r"postgres.dsn.*not a libpq connection string"):
        load_settings(checkpointer="postgres", postgres={"dsn": "host=x = nonsense"})
    with pytest.raises(SettingsError, match=r'postgres.dsn is set but checkpointer is "sqlite"'):
        load_settings(postgres={"dsn": "postgresql://u@127.0.0.1/db"})
    with pytest.raises(SettingsError, match=r"postgres.secret"):
        load_settings(checkpointer="postgres", postgres={"dsn": "postgresql://h/d", "secret": 1})
    settings = load_settings(
        checkpointer="postgres", postgres={"dsn": "postgresql://u:hunter2@127.0.0.1/db"}
    )
    assert "hunter2" not in repr(settings)  # the DSN is a secret


def test_a_dead_or_wrong_server_is_one_line_and_registers_nothing(
    postgres_dsn: str, tmp_path: Path
) -> None:
    dead = f"postgresql://agentx@127.0.0.1:{_free_port()}/postgres"
    wrong_db = postgres_dsn.rsplit("/", 1)[0] + "/no_such_db"
    cases = (("dead", dead, "Connection refused"), ("wrong", wrong_db, 'database "no_such_db"'))
    for name, dsn, reason in cases:
        workspace = tmp_path / name
        result = subprocess.run(
            [*AGENTX, "run", "--world", "tiny", "--iterations", "1", "--workspace",
             str(workspace)],
            env=_env(dsn), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "Postgres checkpointer agentx@127.0.0.1:" in lines[0] and reason in lines[0]
        assert not (workspace / "runs.json").exists()  # no run without checkpoints left behind
        assert json.loads((workspace / "workspace.json").read_text())["checkpointer"] is None
        assert not (workspace / "checkpoints.sqlite").exists()

    status = subprocess.run(  # a reader says the same in one line, not "not started"
        [*AGENTX, "status", "--workspace", str(tmp_path / "dead"), "--json"],
        env=_env(dead), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 2 and "Traceback" not in status.stderr


def test_killed_cli_run_resumes_embedded_from_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    command = [
        *AGENTX, "run", "--world", "tiny", "--iterations", "2", "--seed", "3",
        "--workspace", str(workspace),
    ]  # fmt: skip
    kill_during_second_experiment(command, _env(postgres_dsn))
    schema = f"agentx_{_workspace_id(workspace)}"
    assert _schemas(postgres_dsn)[schema] == ["run-1"]
    assert not (workspace / "checkpoints.sqlite").exists()

    # Resumed without the Postgres settings, the run would be looked for in SQLite (and
    # "finish" with no experiments): refused in one line, nothing written.
    clean = {k: v for k, v in _env(postgres_dsn).items() if not k.startswith("AGENTX_")}
    resume = ["run", "--workspace", str(workspace), "--resume"]
    for command, env, needle in (
        (resume, clean, "run-1 is checkpointed in PostgreSQL: set AGENTX_CHECKPOINTER=postgres"),
        (resume, {**clean, "AGENTX_CHECKPOINTER": "sqlite"}, "checkpointer 'sqlite'"),
        (["gate", "show", "--workspace", str(workspace)], clean, "checkpointed in postgres"),
    ):
        refused = subprocess.run(
            [*AGENTX, *command], env=env, capture_output=True, text=True, timeout=300
        )
        lines = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1, lines
        assert needle in lines[0], lines[0]
        assert not (workspace / "checkpoints.sqlite").exists()
    assert _schemas(postgres_dsn)[schema] == ["run-1"]

    settings = load_settings(
        world="tiny", iterations=2, seed=3, workspace=workspace,
        checkpointer="postgres", postgres={"dsn": postgres_dsn},
    )  # fmt: skip
    summary = run_loop(settings, resume=True)  # embedded use, same checkpoints
    ids = [e.id for e in summary.experiments]
    assert summary.run_id == "run-1" and len(ids) == 2 and len(set(ids)) == 2
    store = open_store(settings.workspace, settings.memory, settings.embeddings)
    assert store.count() == 2  # one card per experiment: none lost, none repeated
    state = load_run(settings)  # the report's reader
    assert state.finished and [e.id for e in state.values["experiments"]] == ids

    status = subprocess.run(  # read without the Postgres settings: told where the runs are
        [*AGENTX, "status", "--workspace", str(workspace)],
        env=clean, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in status.stderr.splitlines() if line.strip()]
    assert status.returncode == 2 and len(lines) == 1, status.stderr
    assert "checkpointed in postgres" in lines[0] and "AGENTX_POSTGRES__DSN" in lines[0]


def test_agentx_serve_checkpoints_to_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    workspace = tmp_path / "served"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(
        postgres_dsn, AGENTX_WORLD="tiny", AGENTX_ITERATIONS="1", AGENTX_SERVE_LOG_LEVEL="warning"
    )
    command = [*AGENTX, "serve", "--port", str(port), "--workspace", str(workspace)]
    with background_server(command, env, tmp_path / "serve.log", f"{url}/healthz", "serve"):
        output = RemoteRunnable(f"{url}/loop").invoke(
            {}, config={"configurable": {"thread_id": "api-pg-1"}}
        )
    assert output["run_id"] == "api-pg-1" and len(output["experiments"]) == 1
    assert _schemas(postgres_dsn)[f"agentx_{_workspace_id(workspace)}"] == ["api-pg-1"]
    assert not (workspace / "checkpoints.sqlite").exists()
    status = subprocess.run(  # read back by another process, from Postgres
        [*AGENTX, "status", "--workspace", str(workspace), "--json"],
        env=_env(postgres_dsn), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    [run] = json.loads(status.stdout)["runs"]
    assert run["run_id"] == "api-pg-1" and run["status"] == "finished"
    assert run["experiments"] == 1
