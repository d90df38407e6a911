"""Human gates answered through every interface with one answer shape (issue 15, point 4):
the ``agentx`` CLI in a subprocess and on a pseudo-terminal, and ``agentx serve`` driven
with RemoteRunnable (the SDK against ``langgraph dev`` is in test_interface_studio.py).
Tiny world, one experiment, ``AGENTX_AUTONOMOUS=false``."""

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
from servers import background_server
from terminal import ANSI, Terminal
from test_operations_serve import _free_port

AGENTX = [sys.executable, "-m", "agentx.cli.app"]
WAITING = 3  # the exit code of a command that leaves its run at a gate


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {**clean, "COLUMNS": "200", "AGENTX_AUTONOMOUS": "false", **extra}


def agentx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTX, *args], env=_env(), capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _gate(workspace: Path) -> dict[str, Any] | None:
    shown = agentx("gate", "show", "--workspace", str(workspace), "--json")
    assert shown.returncode in (0, WAITING), shown.stderr
    return json.loads(shown.stdout)


def test_cli_shows_the_gate_refuses_nonsense_and_answers(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    started = agentx("run", "--world", "tiny", "--iterations", "1", "--seed", "2",
                     "--workspace", str(workspace))  # fmt: skip
    assert started.returncode == WAITING, started.stderr[-2000:]
    assert "run-1 waits at gate proposal_admission" in started.stderr
    assert f"agentx gate answer --workspace {workspace} accept" in started.stderr
    assert "response: reject it" in started.stderr  # the answers this gate takes
    first = _gate(workspace)
    assert first is not None and first["gate"] == "proposal_admission"
    technique = first["evidence"]["proposal"]["technique"]
    assert technique in started.stderr  # the evidence is shown

    nonsense = agentx("gate", "answer", "maybe", "--workspace", str(workspace))
    lines = [line for line in (nonsense.stdout + nonsense.stderr).splitlines() if line.strip()]
    assert nonsense.returncode == 2 and len(lines) == 1, lines
    assert "answer to proposal_admission not understood" in lines[0]
    assert _gate(workspace) == first  # nothing was decided

    rejected = agentx("run", "--workspace", str(workspace), "--resume",
                      "--answer", "response", "--reason", "not this quarter")  # fmt: skip
    assert rejected.returncode == WAITING, rejected.stderr[-2000:]
    second = _gate(workspace)
    assert second is not None and second["gate"] == "proposal_admission"
    assert second["evidence"]["proposal"] != first["evidence"]["proposal"]

    for _ in range(6):  # accept every gate until the run ends
        answered = agentx("gate", "answer", "accept", "--reviewer", "ops",
                          "--workspace", str(workspace), "--json")  # fmt: skip
        assert answered.returncode in (0, WAITING), answered.stderr[-2000:]
        summary = json.loads(answered.stdout)
        if answered.returncode == 0:
            break
        assert summary["waiting_at"]["gate"] in {"launch_past_canary", "moderate_guardrail_review"}
    assert answered.returncode == 0 and summary["waiting_at"] is None
    (experiment,) = summary["experiments"]
    assert experiment["technique"] == second["evidence"]["proposal"]["technique"]
    assert _gate(workspace) is None


def test_a_terminal_is_asked_at_each_gate(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    args = ["run", "--world", "tiny", "--iterations", "1", "--seed", "2",
            "--workspace", str(workspace)]  # fmt: skip
    terminal = Terminal(args, _env(TERM="xterm"))
    asked = 0
    try:
        while asked < 6 and terminal.read_until("answer [accept/", timeout=300):
            assert "waits at gate" in ANSI.sub("", terminal.text)
            asked += 1
            os.write(terminal.fd, b"accept\n")
            terminal.text = ""  # the next prompt must be a new one
        code = terminal.wait()
    finally:
        terminal.kill()
    assert asked >= 1 and code == 0  # every gate asked at the terminal, the run finished
    state = json.loads((workspace / "runs.json").read_text())
    assert state == ["run-1"] and _gate(workspace) is None


# ---------------------------------------------------------------- LangServe


@pytest.fixture(scope="module")
def gated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workspace = tmp_path_factory.mktemp("gated-serve") / "ws"
    port = _free_port()
    env = _env(AGENTX_WORLD="tiny", AGENTX_ITERATIONS="1", AGENTX_SEED="2",
               AGENTX_SERVE_LOG_LEVEL="warning")  # fmt: skip
    log = workspace.parent / "server.log"
    url = f"http://127.0.0.1:{port}"
    command = [*AGENTX, "serve", "--port", str(port), "--workspace", str(workspace)]
    with background_server(command, env, log, f"{url}/healthz", "agentx serve"):
        yield url


def test_langserve_reports_the_gate_and_takes_the_answer(gated_server: str) -> None:
    remote = RemoteRunnable(f"{gated_server}/loop")
    config = {"configurable": {"thread_id": "gated-1"}}
    paused = remote.invoke({}, config=config)
    assert paused["run_id"] == "gated-1"
    assert paused["status"] == "waiting at gate proposal_admission"
    assert paused["waiting_at"]["evidence"]["proposal"]["technique"]
    assert paused["experiments"] == []

    with pytest.raises(httpx.HTTPStatusError) as refused:
        remote.invoke({"answer": {"type": "maybe"}}, config=config)
    assert refused.value.response.status_code == 422
    assert "proposal_admission not understood" in refused.value.response.text
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        remote.invoke({"answer": {"type": "accept"}}, config={"configurable": {"thread_id": "x"}})
    assert unknown.value.response.status_code == 404

    # an answer continues the run with its own world and seed (2): another seed is refused
    other = {"configurable": {"thread_id": "gated-1", "world": "tiny", "seed": 5}}
    with pytest.raises(httpx.HTTPStatusError) as conflict:
        remote.invoke({"answer": {"type": "accept"}}, config=other)
    response = conflict.value.response
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "config.configurable.seed is 5 but the run's seed is 2" in detail, detail
    assert "world" not in detail.split(": ", 1)[1] and "\n" not in detail  # tiny is its world
    with pytest.raises(httpx.HTTPStatusError) as still:  # nothing was resumed
        remote.invoke({"answer": {"type": "maybe"}}, config=config)
    assert "proposal_admission not understood" in still.value.response.text

    same = {"configurable": {"thread_id": "gated-1", "world": "tiny", "seed": 2, "iterations": 1}}
    output = paused
    for _ in range(6):  # the run's own values sent along are fine
        output = remote.invoke({"answer": {"type": "accept", "reviewer": "api"}}, config=same)
        if output["status"] == "finished":
            break
        assert output["status"].startswith("waiting at gate ")
    assert output["status"] == "finished" and output["waiting_at"] == {}
    assert len(output["experiments"]) == 1
