"""Several AgentX workers on shared engines (issue 16, scale-out): two ``agentx run``
processes with their own workspaces, started together against one ``chroma run`` and one
PostgreSQL on loopback, with the same seed (so the same run id, experiment ids and card
texts), keep their own checkpoints and every card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from servers import chroma_server

from agentx.memory.store import open_store
from agentx.settings import EmbeddingSettings, MemorySettings

AGENTX = [sys.executable, "-m", "agentx.cli.app"]
ITERATIONS = 2


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {**clean, "ANONYMIZED_TELEMETRY": "False", "COLUMNS": "200", **extra}


def _threads(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            f'SELECT DISTINCT thread_id FROM "{schema}".checkpoints ORDER BY 1'
        ).fetchall()
    return [row[0] for row in rows]


def test_two_workers_share_one_chroma_and_one_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    with chroma_server(tmp_path / "chroma", _env()) as chroma_url:
        shared = _env(
            AGENTX_MEMORY__CHROMA_URL=chroma_url,
            AGENTX_CHECKPOINTER="postgres",
            AGENTX_POSTGRES__DSN=postgres_dsn,
        )
        workspaces = [tmp_path / "worker-a", tmp_path / "worker-b"]
        workers = [
            subprocess.Popen(
                [
                    *AGENTX,
                    "run",
                    "--world",
                    "tiny",
                    "--iterations",
                    str(ITERATIONS),
                    "--seed",
                    "0",
                    "--workspace",
                    str(workspace),
                    "--json",
                ],
                env=shared,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for workspace in workspaces
        ]  # both started before either is awaited: they run at the same time
        outputs = [worker.communicate(timeout=1200) for worker in workers]
        for worker, (_, stderr) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, stderr[-3000:]
        summaries = [json.loads(stdout) for stdout, _ in outputs]
        assert [s["run_id"] for s in summaries] == ["run-1", "run-1"]
        ids = [json.loads((w / "workspace.json").read_text())["id"] for w in workspaces]
        assert ids[0] != ids[1]

        # Checkpoints: one schema per workspace, each with its own run-1 (none overwritten).
        for workspace_id in ids:
            assert _threads(postgres_dsn, f"agentx_{workspace_id}") == ["run-1"]
        for workspace in workspaces:
            assert not (workspace / "checkpoints.sqlite").exists()
            status = subprocess.run(
                [*AGENTX, "status", "--workspace", str(workspace), "--json"],
                env=_env(AGENTX_CHECKPOINTER="postgres", AGENTX_POSTGRES__DSN=postgres_dsn),
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            [run] = json.loads(status.stdout)["runs"]
            assert run["status"] == "finished" and run["experiments"] == ITERATIONS
            assert json.loads(status.stdout)["memory_cards"] == 2 * ITERATIONS

        # Memory: every card of both workers, each under its own workspace id.
        store = open_store(tmp_path, MemorySettings(chroma_url=chroma_url), EmbeddingSettings())
        cards = store.list()
        assert len(cards) == 2 * ITERATIONS == len({card.id for card in cards})
        assert sorted(card.workspace_id for card in cards) == sorted(ids * ITERATIONS)
        for workspace_id, summary in zip(ids, summaries, strict=True):
            mine = [card for card in cards if card.workspace_id == workspace_id]
            assert {card.run_id for card in mine} == {"run-1"}
            techniques = sorted(e["technique"] for e in summary["experiments"])
            assert sorted(card.technique for card in mine) == techniques
