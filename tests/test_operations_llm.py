"""An unusable model stops ``agentx run`` at start with one line (issue 15, point 7): an
endpoint nobody listens on, and a loopback stub of the OpenAI API that refuses the
configured structured-output method the way llama.cpp's server does (HTTP 500)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_stub import JsonHandler, base_url, stub_server

AGENTX = [sys.executable, "-m", "agentx.cli.app"]


def _env(**extra: str) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("AGENTX_", "OPENAI_"))
    }
    return {**clean, "NO_PROXY": "127.0.0.1,localhost", **extra}


class RefusesJsonSchema(JsonHandler):
    """``/v1/chat/completions`` answering 500 to ``response_format`` json_schema requests."""

    bodies: list[dict[str, Any]] = []

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        RefusesJsonSchema.bodies.append(body)
        return 500, {"error": {"message": "json_schema response_format is not supported"}}


@pytest.fixture
def refusing_server() -> Iterator[str]:
    with stub_server(RefusesJsonSchema) as server:
        yield base_url(server)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def _run(workspace: Path, **env: str) -> list[str]:
    result = subprocess.run(
        [*AGENTX, "run", "--world", "tiny", "--iterations", "1", "--workspace", str(workspace)],
        env=_env(AGENTX_LLM__MODEL="stub-model", **env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, lines
    assert not (workspace / "runs.json").exists()  # no run registered, nothing to resume
    return errors


def test_an_unreachable_endpoint_stops_the_run_at_start(tmp_path: Path) -> None:
    (line,) = _run(tmp_path / "ws", AGENTX_LLM__BASE_URL=f"http://127.0.0.1:{_closed_port()}/v1")
    assert "the model endpoint for 'stub-model' at http://127.0.0.1:" in line
    assert "is unreachable" in line


def test_a_refused_structured_output_method_stops_the_run_at_start(
    tmp_path: Path, refusing_server: str
) -> None:
    (line,) = _run(
        tmp_path / "ws",
        AGENTX_LLM__BASE_URL=refusing_server,
        AGENTX_LLM__STRUCTURED_METHOD="json_schema",
    )
    assert "rejects the structured output method 'json_schema' (HTTP 500" in line
    assert "json_schema response_format is not supported" in line
    assert len(RefusesJsonSchema.bodies) == 1  # one probe call, no retries
    assert RefusesJsonSchema.bodies[0]["response_format"]["type"] == "json_schema"
