"""The LangServe endpoint, driven by FastAPI's TestClient and by langserve's RemoteRunnable
against ``agentx serve`` running on a free local port (tiny world, one experiment a run).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Iterator

import httpx
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from langserve import RemoteRunnable
from pydantic import BaseModel
from servers import background_server

from agentx.report import list_runs, load_run
from agentx.serve import API_KEY_HEADER, ServeSettings, create_app, load_serve_settings
from agentx.serve.app import run_config_modifier
from agentx.serve.settings import is_loopback
from agentx.settings import SettingsError, load_settings

KEY = "test-key-123"
AUTH = {API_KEY_HEADER: KEY}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = load_settings(
        world="tiny", iterations=1, seed=0, workspace=tmp_path_factory.mktemp("serve-ws")
    )
    app = create_app(settings, ServeSettings(api_key=KEY))
    with TestClient(app) as test_client:
        test_client.app_state = {"settings": settings}  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``agentx serve`` as a user starts it, configured from the environment."""
    port = _free_port()
    env = {
        **os.environ,
        "AGENTX_WORLD": "tiny",
        "AGENTX_ITERATIONS": "1",
        "AGENTX_WORKSPACE": str(tmp_path_factory.mktemp("remote-ws")),
        "AGENTX_SERVE_API_KEY": KEY,
        "AGENTX_SERVE_LOG_LEVEL": "warning",
    }
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "agentx.cli.app", "serve", "--port", str(port)]
    with background_server(command, env, log, f"{url}/healthz", "agentx serve", 120):
        yield url


# ---------------------------------------------------------------- settings


def test_binding_beyond_localhost_needs_a_key() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    with pytest.raises(SettingsError, match="refusing to bind 0.0.0.0"):
        load_serve_settings(host="0.0.0.0")
    assert load_serve_settings(host="0.0.0.0", api_key="k").api_key is not None
    with pytest.raises(SettingsError, match="api_key is empty"):
        load_serve_settings(api_key=" ")


def test_cli_refuses_public_bind_without_key_in_one_line() -> None:
    from typer.testing import CliRunner

    from agentx.cli.app import app

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTX_SERVE_")}
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "refusing to bind 0.0.0.0" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- TestClient


def test_key_is_required_except_for_health(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    missing = client.get("/loop/input_schema")
    assert missing.status_code == 401 and API_KEY_HEADER in missing.json()["detail"]
    wrong = client.get("/loop/input_schema", headers={API_KEY_HEADER: "nope"})
    assert wrong.status_code == 401 and "wrong API key" in wrong.json()["detail"]
    schema = client.get("/loop/input_schema", headers=AUTH).json()
    assert set(schema["properties"]) == {"goal_text", "iterations", "answer"}
    assert schema["properties"]["iterations"]["default"] == 1  # the server's settings
    assert "null" not in json.dumps(schema)  # the playground's form cannot render nullables
    output = client.get("/loop/output_schema", headers=AUTH).json()
    assert "experiments" in output["properties"]


def test_playground_opens_with_the_key_once(client: TestClient) -> None:
    page = client.get(f"/loop/playground/?api_key={KEY}")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "agentx_api_key" in page.headers["set-cookie"]
    # the browser now sends the cookie: the playground's own calls get through
    assert client.get("/loop/input_schema").status_code == 200
    client.cookies.clear()
    assert client.get("/loop/input_schema").status_code == 401


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": {"goal_text": "raise the moon phase"}}, "known metrics: watch_time"),
        ({"input": {"iterations": 0}}, "greater than or equal to 1"),
        ({"input": {"goal": "raise watch time"}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_invoke_input_is_a_422_naming_the_problem(
    client: TestClient, body: dict, needle: str
) -> None:
    response = client.post("/loop/invoke", json=body, headers=AUTH)
    assert response.status_code == 422
    assert needle in response.text


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"inputs": "raise watch time"}, 422, "non-empty list"),
        ({"inputs": []}, 422, "non-empty list"),
        ({"inputs": [{}, {"iterations": -1}]}, 422, "inputs[1].iterations"),
        ({"inputs": [{}], "config": [{}, {}]}, 422, "2 configs for 1 inputs"),
        ({"inputs": [{}], "extra": 1}, 422, "unknown keys ['extra']"),
        (
            {"inputs": [{}, {}], "config": [{"configurable": {"thread_id": "a"}}] * 2},
            422,
            "used twice",
        ),
    ],
)
def test_bad_batch_is_a_4xx_naming_the_problem(
    client: TestClient, body: dict, status: int, needle: str
) -> None:
    response = client.post("/loop/batch", json=body, headers=AUTH)
    assert response.status_code == status
    assert needle in response.json()["detail"]


def test_batch_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/loop/batch", content=b"{nope", headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]


def test_invoke_runs_one_experiment(client: TestClient) -> None:
    response = client.post(
        "/loop/invoke",
        json={"input": {"goal_text": "raise watch time without hurting active days"}},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["run_id"].startswith("api-")
    assert output["goal"]["objective"] == "watch_time"
    assert len(output["experiments"]) == 1
    assert output["funnel"]["ideas"] >= output["funnel"]["admitted"] >= 1
    # The served run is registered and checkpointed in the workspace like a CLI run.
    settings = client.app_state["settings"]  # type: ignore[attr-defined]
    state = load_run(settings, output["run_id"])
    assert state.finished and state.run_id in list_runs(settings.workspace)
    assert [r.id for r in state.values["experiments"]] == [e["id"] for e in output["experiments"]]


def test_a_run_id_already_used_in_the_workspace_is_refused(client: TestClient) -> None:
    settings = client.app_state["settings"]  # type: ignore[attr-defined]
    modifier = run_config_modifier(settings, BaseModel)
    asked = {"configurable": {"thread_id": "api-dup"}}
    config = asyncio.run(modifier(asked, None))  # type: ignore[arg-type]
    assert config["configurable"]["thread_id"] == "api-dup"
    assert "api-dup" in list_runs(settings.workspace)
    with pytest.raises(HTTPException) as refused:
        asyncio.run(modifier(asked, None))  # type: ignore[arg-type]
    assert refused.value.status_code == 409 and "already exists" in refused.value.detail


# ---------------------------------------------------------------- RemoteRunnable


def test_remote_runnable_streams_events_and_batches(server: str) -> None:
    async def drive() -> tuple[list[dict], list[dict]]:
        remote = RemoteRunnable(f"{server}/loop", headers=AUTH)
        events = [event async for event in remote.astream_events({}, version="v2")]
        batch = await remote.abatch([{"iterations": 1}, {}])
        return events, batch

    events, batch = asyncio.run(drive())
    nodes = [e["name"] for e in events if e["event"] == "on_chain_start"]
    for node in ("intake", "brainstorm", "develop", "verify", "learn"):
        assert node in nodes
    root = [e for e in events if e["event"] == "on_chain_end" and not e.get("parent_ids")]
    assert root and len(root[-1]["data"]["output"]["experiments"]) == 1, [
        (e["event"], e["name"], e.get("parent_ids")) for e in events[-3:]
    ]
    assert len(batch) == 2
    assert all(len(result["experiments"]) == 1 for result in batch)
    assert batch[0]["run_id"] != batch[1]["run_id"]  # each input is its own run


def test_remote_runnable_without_key_is_refused(server: str) -> None:
    remote = RemoteRunnable(f"{server}/loop")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        remote.invoke({})
    assert raised.value.response.status_code == 401
