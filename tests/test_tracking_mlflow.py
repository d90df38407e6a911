"""MLflow publishing against a real MLflow tracking server on loopback (SQLite backend, local
artifact store), started by the fixture in its own process group and stopped by it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentx.cli.app import app
from agentx.report.history import decision_levels
from agentx.report.view import experiment_view
from agentx.settings import load_settings
from agentx.tracking import TrackingError
from agentx.tracking.mlflow_log import EXPERIMENT_TAG, PARENT_TAG, RUN_TAG, publish_run

mlflow = pytest.importorskip("mlflow")  # the `mlflow` extra (in `dev`)
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("w")
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner pool
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        for _ in range(600):  # bounded: at most about five minutes on a loaded machine
            if server.poll() is not None or _healthy(uri):
                break
            try:
                server.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        if not _healthy(uri):
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()}")
        yield uri
    finally:
        _stop_group(server)
        log.close()


def _stop_group(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it (uvicorn)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def published(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A real 2-experiment run with the tracking URI set the way users set it (environment)."""
    workspace = tmp_path_factory.mktemp("mlflow-ws")
    env = {"AGENTX_TRACKING__MLFLOW_URI": mlflow_server, "AGENTX_TRACKING__TAGS": '["ci"]'}
    result = runner.invoke(
        app,
        ["run", "--world", "tiny", "--iterations", "2", "--seed", "0", "--json",
         "--workspace", str(workspace)],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # MLflow printed nothing into the JSON
    return workspace, summary


def _runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("agentx")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


def test_run_and_experiments_become_mlflow_runs(
    mlflow_server: str, published: tuple[Path, dict], tmp_path: Path
) -> None:
    workspace, summary = published
    client = mlflow.MlflowClient(mlflow_server)
    runs = _runs(mlflow_server)
    (parent,) = [r for r in runs if PARENT_TAG not in r.data.tags]
    assert parent.info.run_name == f"agentx {summary['run_id']}"
    assert parent.data.tags[RUN_TAG] == summary["run_id"] and parent.data.tags["tag.ci"] == "true"
    assert parent.data.params["world"] == "tiny" and parent.data.params["seed"] == "0"
    assert parent.data.metrics["experiments"] == 2
    assert parent.data.metrics["baseline_change_true"] == pytest.approx(
        summary["total_true_effect"], abs=1e-5
    )
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {f"report-{summary['run_id']}.html", "summary.json"} <= artifacts
    name = f"report-{summary['run_id']}.html"
    report = Path(client.download_artifacts(parent.info.run_id, name, str(tmp_path)))
    assert "AgentX run report" in report.read_text()

    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    assert len(children) == 2
    trajectory = json.loads(
        (workspace / "harness" / "trajectories" / f"{summary['run_id']}.json").read_text()
    )
    levels = decision_levels(load_settings(workspace=workspace))
    for record in trajectory["records"]:
        (child,) = [c for c in children if c.data.tags[EXPERIMENT_TAG] == record["id"]]
        view = experiment_view(record, "watch_time", levels)
        data = child.data
        assert data.params["technique"] == record["proposal"]["technique"]
        for name, value in record["proposal"]["params"].items():
            assert json.loads(data.params[f"param.{name}"]) == value
        assert data.tags["verdict"] == view.decision
        assert data.tags["root_cause"] == (record["root_cause"] or "none")
        north = record["verdict"]["north_star"]
        assert data.metrics["measured_effect"] == pytest.approx(north["relative"])
        assert data.metrics["p_value"] == pytest.approx(north["p_value"])
        assert view.north_star is not None
        assert data.metrics["ci_low"] == pytest.approx(view.north_star.ci_low)
        assert data.metrics["ci_high"] == pytest.approx(view.north_star.ci_high)
        assert data.metrics["confidence"] == pytest.approx(0.96)
        truth = record["verdict"]["true_effects"]
        assert data.metrics["true_effect"] == pytest.approx(truth["watch_time"])
        assert data.metrics["true.active_days"] == pytest.approx(truth["active_days"])
        diff = client.download_artifacts(child.info.run_id, "diff.patch", str(tmp_path))
        assert Path(diff).read_text() == record["patch"]["diff"]


def test_publishing_again_updates_instead_of_duplicating(
    mlflow_server: str, published: tuple[Path, dict]
) -> None:
    workspace, _ = published
    before = {r.info.run_id for r in _runs(mlflow_server)}
    args = ["export", "--workspace", str(workspace), "--mlflow", mlflow_server]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "published run-1 to MLflow run" in result.output
    assert {r.info.run_id for r in _runs(mlflow_server)} == before


def test_an_unreachable_server_is_one_clear_line(published: tuple[Path, dict]) -> None:
    workspace, _ = published
    closed = f"http://127.0.0.1:{_free_port()}"
    settings = load_settings(workspace=workspace, tracking={"mlflow_uri": closed})
    with pytest.raises(TrackingError, match="cannot reach the MLflow server"):
        publish_run(settings, "run-1", {"experiments": []})
    result = runner.invoke(app, ["export", "--workspace", str(workspace), "--mlflow", closed])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the MLflow server" in lines[0]
