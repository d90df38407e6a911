"""Per-run context through LangServe (issue 16): ``agentx serve`` (uvicorn on a free loopback
port) driven with langserve's RemoteRunnable. A request's ``configurable`` chooses its run's
world, seed and budget; each run gets its own sandbox, records its own context and settings
(read back by ``agentx status`` and continued by ``agentx gate answer``); a bad value is one
line and starts nothing. The server's own settings: tiny world, seed 0, one experiment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable
from servers import background_server, free_port

from agentx.report.workspace import load_run
from agentx.settings import load_settings
from agentx.workspace.records import load_run_record

AGENTX = [sys.executable, "-m", "agentx.cli.app"]
WAITING = 3  # the exit code of a command that leaves its run at a gate


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {**clean, "COLUMNS": "200", **extra}


def _agentx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTX, *args], env=_env(), capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _serve(workspace: Path) -> Any:
    """``agentx serve`` over ``workspace`` (a context manager yielding the process)."""
    port = free_port()
    env = _env(AGENTX_WORLD="tiny", AGENTX_ITERATIONS="1", AGENTX_SERVE_LOG_LEVEL="warning")
    command = [*AGENTX, "serve", "--port", str(port), "--workspace", str(workspace)]
    url = f"http://127.0.0.1:{port}"
    server = background_server(
        command, env, workspace.parent / "server.log", f"{url}/healthz", "agentx serve"
    )
    return url, server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workspace = tmp_path_factory.mktemp("serve-context") / "ws"
    url, server = _serve(workspace)
    with server:
        yield url, workspace


def _sandboxes(workspace: Path) -> set[str]:
    folder = workspace / "sandboxes"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_each_run_chooses_its_seed_and_gets_its_own_sandbox(served: tuple[str, Path]) -> None:
    url, workspace = served
    remote = RemoteRunnable(f"{url}/loop")
    context = {"world": "tiny", "iterations": 1, "autonomous": True}
    first = remote.invoke({}, config={"configurable": {"thread_id": "s1", "seed": 1, **context}})
    (second,) = remote.batch(
        [{}], config={"configurable": {"thread_id": "s2", "seed": 2, **context}}
    )
    assert [first["run_id"], second["run_id"]] == ["s1", "s2"]
    assert len(first["experiments"]) == len(second["experiments"]) == 1
    assert _sandboxes(workspace) == {"tiny-seed1", "tiny-seed2"}
    settings = load_settings(workspace=workspace)
    for run_id, seed in (("s1", 1), ("s2", 2)):
        assert (workspace / "sandboxes" / f"tiny-seed{seed}" / "repo" / ".git").is_dir()
        recorded = load_run(settings, run_id).values["context"]  # the run's own context
        assert (recorded.world, recorded.seed, recorded.iterations) == ("tiny", seed, 1)
        record = load_run_record(workspace, run_id)  # its settings, as `agentx run` keeps them
        assert record is not None and record.sandbox == f"sandboxes/tiny-seed{seed}"
        assert record.settings["seed"] == seed and record.settings["iterations"] == 1
        assert record.settings["checkpointer"] == "sqlite"
    status = _agentx("status", "--workspace", str(workspace), "--json")
    assert status.returncode == 0, status.stderr
    rows = {row["run_id"]: row for row in json.loads(status.stdout)["runs"]}
    assert (rows["s1"]["world"], rows["s1"]["seed"]) == ("tiny", 1)
    assert (rows["s2"]["world"], rows["s2"]["seed"]) == ("tiny", 2)


@pytest.mark.parametrize(
    ("configurable", "request_input", "needle"),
    [
        ({"seed": -1}, {}, "config.configurable.seed: Input should be greater than or equal to 0"),
        ({"seed": "seven"}, {}, "config.configurable.seed: Input should be a valid integer"),
        ({"world": "/etc/passwd"}, {}, "config.configurable.world: unknown world '/etc/passwd'"),
        ({"iterations": 5000}, {}, "config.configurable.iterations: Input should be less than"),
        ({"alpha": 1.5}, {}, "config.configurable.alpha: Input should be less than 1"),
        ({"iterations": 2}, {"iterations": 1}, "iterations given twice"),
    ],
)
def test_a_bad_context_value_is_one_line_and_starts_nothing(
    served: tuple[str, Path], configurable: dict, request_input: dict, needle: str
) -> None:
    url, workspace = served
    runs = workspace / "runs.json"
    before = (runs.read_text() if runs.exists() else None, _sandboxes(workspace))
    remote = RemoteRunnable(f"{url}/loop")
    with pytest.raises(httpx.HTTPStatusError) as refused:
        remote.invoke(request_input, config={"configurable": configurable})
    response = refused.value.response
    detail = response.json()["detail"]
    assert response.status_code == 422 and isinstance(detail, str), response.text
    assert needle in detail and "\n" not in detail and "Traceback" not in detail
    batch = httpx.post(  # the same check for each input of a batch
        f"{url}/loop/batch",
        json={"inputs": [{}, request_input], "config": [{}, {"configurable": configurable}]},
        timeout=30,
    )
    assert batch.status_code == 422 and batch.json()["detail"].startswith("inputs[1]: ")
    assert needle in batch.json()["detail"]
    after = (runs.read_text() if runs.exists() else None, _sandboxes(workspace))
    assert after == before  # nothing registered, no sandbox built


def test_a_served_run_paused_at_a_gate_resumes_from_the_cli_in_its_own_sandbox(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    url, server = _serve(workspace)
    with server:
        paused = RemoteRunnable(f"{url}/loop").invoke(
            {}, config={"configurable": {"thread_id": "gated", "seed": 1, "autonomous": False}}
        )
    assert paused["status"] == "waiting at gate proposal_admission", paused["status"]
    own, default = workspace / "sandboxes" / "tiny-seed1" / "repo", workspace / "sandbox" / "repo"
    before = {repo: _objects(repo) for repo in (own, default)}
    for _ in range(6):  # accept every gate until the run ends (as the run's settings say)
        answered = _agentx("gate", "answer", "accept", "--workspace", str(workspace), "--json")
        assert answered.returncode in (0, WAITING), answered.stderr[-2000:]
        if answered.returncode == 0:
            break
    summary = json.loads(answered.stdout)
    assert answered.returncode == 0 and summary["run_id"] == "gated"
    assert summary["seed"] == 1 and len(summary["experiments"]) == 1
    # the change was developed in the run's own sandbox, not the server's default one
    assert _objects(own) > before[own] and _objects(default) == before[default]


def _objects(repo: Path) -> int:
    """Objects in ``repo``'s store (worktree commits of an experiment add to it)."""
    out = subprocess.run(
        ["git", "-C", str(repo), "count-objects", "-v"], capture_output=True, text=True, check=True
    ).stdout
    counts = dict(line.split(": ") for line in out.splitlines())
    return int(counts["count"]) + int(counts["in-pack"])
