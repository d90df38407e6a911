"""``agentx status``, ``agentx memory search`` and ``agentx report`` with typer's CliRunner,
on a workspace made by one real 1-experiment run on the tiny world."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentx.cli.app import app
from agentx.runner import run_loop
from agentx.settings import load_settings
from agentx.summary import RunSummary

runner = CliRunner()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    workspace = tmp_path_factory.mktemp("cli-ws")
    summary = run_loop(load_settings(world="tiny", iterations=1, seed=0, workspace=workspace))
    return workspace, summary


def test_every_command_has_help() -> None:
    for command in (["serve"], ["status"], ["memory", "search"], ["report"], ["run"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output and "--workspace" in result.output


def test_status_lists_runs_memory_and_harness(finished_run: tuple[Path, RunSummary]) -> None:
    workspace, summary = finished_run
    result = runner.invoke(app, ["status", "--workspace", str(workspace), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["world"] == "tiny"
    (run,) = status["runs"]
    assert run["run_id"] == summary.run_id and run["status"] == "finished"
    assert run["experiments"] == 1 == status["experiments"]
    assert run["funnel"] == summary.funnel
    assert status["memory_cards"] == 1  # one card per experiment
    assert {"brainstorm", "developing", "evaluation"} <= set(status["harness_versions"])
    table = runner.invoke(app, ["status", "--workspace", str(workspace)])
    assert table.exit_code == 0 and summary.run_id in table.output and "finished" in table.output


def test_memory_search_shows_what_agents_retrieve(finished_run: tuple[Path, RunSummary]) -> None:
    workspace, summary = finished_run
    technique = summary.experiments[0].technique
    result = runner.invoke(
        app, ["memory", "search", technique.replace("_", " "), "--workspace", str(workspace),
              "--json", "--world", "tiny"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (hit,) = json.loads(result.output)
    assert hit["technique"] == technique and hit["run_id"] == summary.run_id
    assert -1.0 <= hit["similarity"] <= 1.0
    other_world = runner.invoke(
        app, ["memory", "search", "x", "--workspace", str(workspace), "--world", "default"]
    )
    assert other_world.exit_code == 0 and "no card matches" in other_world.output


def test_report_is_one_self_contained_html_file(
    finished_run: tuple[Path, RunSummary], tmp_path: Path
) -> None:
    workspace, summary = finished_run
    target = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--workspace", str(workspace), "--out", str(target)])
    assert result.exit_code == 0, result.output
    html = target.read_text()
    for section in ("Experiment ledger", "Funnel", "North-star trajectory", "Guardrail vetoes",
                    "Harness versions", summary.experiments[0].technique, "374"):  # fmt: skip
        assert section in html
    assert len(re.findall(r"src='data:image/png;base64,", html)) == 2  # funnel + trajectory
    assert not re.search(r"(src|href)=['\"]https?://", html)  # nothing fetched on open


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--workspace", "{missing}"], "no AgentX runs in"),
        (["report", "--workspace", "{missing}"], "no AgentX runs in"),
        (["report", "--workspace", "{ws}", "--run", "run-42"], "no run 'run-42'"),
        (["memory", "search", "x", "--workspace", "{missing}"], "no memory in"),
    ],
)
def test_errors_are_one_line_with_the_fix(
    finished_run: tuple[Path, RunSummary], tmp_path: Path, args: list[str], message: str
) -> None:
    workspace, _ = finished_run
    filled = [a.format(missing=tmp_path / "nowhere", ws=workspace) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "nowhere").exists()  # looking never creates a workspace
