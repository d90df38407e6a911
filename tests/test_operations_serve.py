"""Operating the LangServe endpoint (issue 15): ``agentx serve`` on a free loopback port,
driven with langserve's RemoteRunnable and the ``agentx`` CLI in subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langserve import RemoteRunnable
from langserve.lzstring import LZString
from servers import background_server

AGENTX = [sys.executable, "-m", "agentx.cli.app"]
KEY = "ops-key-1"
AUTH = {"X-API-Key": KEY}


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {**clean, "COLUMNS": "200", **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, int]]:
    """``agentx serve`` on a tiny-world workspace: (url, workspace, server pid)."""
    workspace = tmp_path_factory.mktemp("ops-serve") / "ws"
    port = _free_port()
    env = _env(AGENTX_WORLD="tiny", AGENTX_ITERATIONS="1", AGENTX_SERVE_LOG_LEVEL="warning")
    log = workspace.parent / "server.log"
    url = f"http://127.0.0.1:{port}"
    command = [*AGENTX, "serve", "--port", str(port), "--workspace", str(workspace)]
    with background_server(command, env, log, f"{url}/healthz", "agentx serve") as process:
        yield url, workspace, process.pid


def test_the_callers_thread_id_names_the_run(served: tuple[str, Path, int]) -> None:
    url, workspace, _ = served
    remote = RemoteRunnable(f"{url}/loop")
    output = remote.invoke({}, config={"configurable": {"thread_id": "team-a-1"}})
    assert output["run_id"] == "team-a-1" and len(output["experiments"]) == 1
    assert "team-a-1" in json.loads((workspace / "runs.json").read_text())
    with pytest.raises(httpx.HTTPStatusError) as again:  # the same id twice would mix runs
        remote.invoke({}, config={"configurable": {"thread_id": "team-a-1"}})
    assert again.value.response.status_code == 409


def test_a_refused_request_is_not_registered_and_status_still_reads(
    served: tuple[str, Path, int],
) -> None:
    url, workspace, _ = served
    remote = RemoteRunnable(f"{url}/loop")
    runs = workspace / "runs.json"
    before = json.loads(runs.read_text())  # the accepted run of the test above
    with pytest.raises(httpx.HTTPStatusError) as refused:
        remote.invoke({"iterations": 0})
    assert refused.value.response.status_code == 422
    assert "input.iterations" in refused.value.response.text
    assert json.loads(runs.read_text()) == before
    status = subprocess.run(
        [*AGENTX, "status", "--workspace", str(workspace), "--json"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert [run["run_id"] for run in json.loads(status.stdout)["runs"]] == before


def test_a_batch_naming_a_used_run_id_registers_none_of_its_runs(
    served: tuple[str, Path, int],
) -> None:
    url, workspace, _ = served
    runs = workspace / "runs.json"
    before = json.loads(runs.read_text())
    assert "team-a-1" in before  # run by the first test
    configs = [
        {"configurable": {"thread_id": "batch-new"}},
        {"configurable": {"thread_id": "team-a-1"}},
    ]
    refused = httpx.post(
        f"{url}/loop/batch", json={"inputs": [{}, {}], "config": configs}, timeout=60
    )
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith("inputs[1]: run id 'team-a-1' already exists") and "\n" not in detail
    assert json.loads(runs.read_text()) == before  # 'batch-new' was not registered either
    assert not (workspace / "run-settings" / "batch-new.json").exists()
    status = subprocess.run(
        [*AGENTX, "status", "--workspace", str(workspace), "--json"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert [run["run_id"] for run in json.loads(status.stdout)["runs"]] == before


def test_the_server_holds_its_workspace(served: tuple[str, Path, int]) -> None:
    url, workspace, pid = served
    for command in (["run", "--world", "tiny"], ["serve", "--port", str(_free_port())]):
        result = subprocess.run(
            [*AGENTX, *command, "--workspace", str(workspace)],
            env=_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        lines = _lines(result)
        assert result.returncode == 2 and len(lines) == 1, lines
        assert f"is in use by pid {pid} (agentx serve)" in lines[0]
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # still serving


def test_status_shows_a_registered_run_that_never_checkpointed(tmp_path: Path) -> None:
    """Versions before this one registered refused requests: such workspaces must still read."""
    (tmp_path / "runs.json").write_text(json.dumps(["api-refused"]))
    result = subprocess.run(
        [*AGENTX, "status", "--workspace", str(tmp_path), "--json"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)["runs"]
    assert run["run_id"] == "api-refused" and run["status"] == "not started (no checkpoint)"


# ------------------------------------------------------- every route form is gated


@pytest.fixture(scope="module")
def behind_a_prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``create_app()`` in the caller's own uvicorn, behind a proxy that strips ``/agentx``
    (``--root-path``: every request's path then starts with it), with an API key."""
    workspace = tmp_path_factory.mktemp("ops-serve-prefix") / "ws"
    port = _free_port()
    env = _env(AGENTX_WORLD="tiny", AGENTX_ITERATIONS="1", AGENTX_WORKSPACE=str(workspace),
               AGENTX_SERVE_API_KEY=KEY)  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "agentx.serve.app:create_app", "--factory",
               "--root-path", "/agentx", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = workspace.parent / "server.log"
    # the health probe stays open without the key under a root path too
    with background_server(command, env, log, f"{url}/healthz", "uvicorn create_app"):
        yield url, workspace


def test_the_run_gate_holds_under_a_root_path(behind_a_prefix: tuple[str, Path]) -> None:
    url, workspace = behind_a_prefix
    assert httpx.get(f"{url}/loop/input_schema", timeout=10).status_code == 401  # key still asked
    refused = httpx.post(  # the gate's own batch check answers, not LangServe's
        f"{url}/loop/batch", json={"inputs": [{}], "extra": 1}, headers=AUTH, timeout=30
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == "unknown keys ['extra']; send only inputs, config and kwargs"
    assert not (workspace / "runs.json").exists()


@pytest.mark.parametrize("endpoint", ["invoke", "batch", "stream", "stream_log", "stream_events"])
def test_config_hash_routes_are_refused_in_one_line(
    behind_a_prefix: tuple[str, Path], endpoint: str
) -> None:
    url, workspace = behind_a_prefix
    config_hash = LZString.compressToEncodedURIComponent(
        json.dumps({"configurable": {"seed": 3, "thread_id": "hashed"}})
    )
    body = {"inputs": [{}]} if endpoint == "batch" else {"input": {}}
    response = httpx.post(
        f"{url}/loop/c/{config_hash}/{endpoint}", json=body, headers=AUTH, timeout=30
    )
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert detail.startswith("config-hash runs (/loop/c/{config_hash}/...) are not served")
    assert "\n" not in detail
    assert not (workspace / "runs.json").exists()  # nothing registered or run


def test_the_playground_reads_schemas_through_config_hashes(
    behind_a_prefix: tuple[str, Path],
) -> None:
    """The playground fetches ``/c/{hash}/input_schema`` once a configurable field is edited;
    unmounted, it showed an error instead of the form."""
    url, workspace = behind_a_prefix
    config_hash = LZString.compressToEncodedURIComponent(
        json.dumps({"configurable": {"world": "tiny", "seed": 3}})
    )
    for schema in ("input_schema", "output_schema", "config_schema"):
        plain = httpx.get(f"{url}/loop/{schema}", headers=AUTH, timeout=30)
        hashed = httpx.get(f"{url}/loop/c/{config_hash}/{schema}", headers=AUTH, timeout=30)
        assert plain.status_code == hashed.status_code == 200, hashed.text
        assert hashed.json() == plain.json()
    assert httpx.get(f"{url}/loop/c/{config_hash}/input_schema", timeout=30).status_code == 401
    assert not (workspace / "runs.json").exists()


def test_an_unreadable_runs_file_is_one_line_and_registers_nothing(
    served: tuple[str, Path, int],
) -> None:
    """A hand-edited or truncated ``runs.json`` is the workspace's fault: every run route
    answers 500 with the line naming the file, and nothing is registered over it."""
    url, workspace, _ = served
    runs = workspace / "runs.json"
    good = runs.read_text()
    runs.write_text('["team-a-1", ')  # truncated: a disk filled up mid-write by hand
    try:
        answers = [
            httpx.post(f"{url}/loop/invoke", json={"input": {}}, timeout=60),
            httpx.post(
                f"{url}/loop/batch",
                json={"inputs": [{}], "config": [{"configurable": {"thread_id": "b-1"}}]},
                timeout=60,
            ),
        ]
        for answer in answers:
            assert answer.status_code == 500, answer.text
            detail = answer.json()["detail"]
            assert detail.startswith(f"cannot read {runs}: Invalid JSON"), detail
            assert "\n" not in detail and "Traceback" not in answer.text
        assert runs.read_text() == '["team-a-1", '  # not numbered over, not rewritten
        assert not (workspace / "run-settings" / "b-1.json").exists()
    finally:
        runs.write_text(good)
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
