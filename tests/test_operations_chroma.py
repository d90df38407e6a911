"""Two workspaces sharing one Chroma server (issue 15, point 3): a real ``chroma run`` on a
free loopback port, two ``agentx run`` processes with the same first run id (``run-1``)
and the same seed, then ``agentx status`` / ``memory search`` without the variable set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import chroma_server

AGENTX = [sys.executable, "-m", "agentx.cli.app"]


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {**clean, "ANONYMIZED_TELEMETRY": "False", **extra}


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma") / "db", _env()) as url:
        yield url


def _agentx(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTX, *args], env=_env(**env), capture_output=True, text=True, timeout=600
    )


def test_workspaces_sharing_a_chroma_server_keep_each_others_cards(
    chroma_url: str, tmp_path: Path
) -> None:
    workspaces = [tmp_path / "team-a", tmp_path / "team-b"]
    summaries = []
    for workspace in workspaces:
        result = _agentx(
            "run", "--world", "tiny", "--iterations", "1", "--seed", "0",
            "--workspace", str(workspace), "--json", AGENTX_MEMORY__CHROMA_URL=chroma_url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        summaries.append(json.loads(result.stdout))
    assert [s["run_id"] for s in summaries] == ["run-1", "run-1"]  # the ids that used to collide
    ids = [json.loads((w / "workspace.json").read_text())["id"] for w in workspaces]
    assert ids[0] != ids[1]

    # Later, without the variable: each workspace remembers the server it wrote to.
    status = _agentx("status", "--workspace", str(workspaces[0]), "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["memory"] == chroma_url
    assert report["memory_cards"] == 2  # one card per workspace, none overwritten
    technique = summaries[0]["experiments"][0]["technique"]
    search = _agentx(
        "memory", "search", technique.replace("_", " "), "--k", "5",
        "--workspace", str(workspaces[0]), "--json",
    )  # fmt: skip
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)
    assert sorted(hit["workspace_id"] for hit in hits) == sorted(ids)  # the other's is evidence
    assert len({hit["id"] for hit in hits}) == 2
