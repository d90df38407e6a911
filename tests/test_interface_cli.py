"""``agentx status``, ``agentx memory search`` and ``agentx report`` with typer's CliRunner,
on a workspace made by one real 1-experiment run on the tiny world (plus, for harness
evolution, SGPO steps and committed harness versions added to a copy of it)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentx.cli.app import app
from agentx.evolution.models import (
    EvolutionStep,
    FieldEdit,
    HarnessEdit,
    ReplayScore,
    SemanticGradient,
)
from agentx.evolution.store import HarnessStore
from agentx.report import load_run, render_report
from agentx.runner import run_loop
from agentx.settings import load_settings
from agentx.summary import RunSummary, evolution_lines, summarise_run

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
    for section in ("Experiment ledger", "Funnel", "The baseline against the original",
                    "Guardrail vetoes", "History of the workspace", "Harness evolution (SGPO)",
                    "No SGPO step in this run", summary.experiments[0].technique,
                    "374"):  # fmt: skip
        assert section in html
    assert not re.search(r"<script[^>]*\ssrc=|<link\b", html)  # nothing fetched on open
    assert 'id="chart-evolution"' not in html  # no SGPO step: no chart, no bare axes


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


# ---------------------------------------------------------------- harness evolution (SGPO)


def _steps() -> list[EvolutionStep]:
    """A kept step, a rolled-back one and one with no replay; text that needs escaping."""
    gradient = SemanticGradient(
        agent="brainstorm", loss=0.42, loss_text="risky ideas <b>admitted</b> & launched"
    )
    raise_risk = HarnessEdit(
        agent="brainstorm",
        edits=[FieldEdit(field="score_weights.risk", old=0.2, new=0.3)],
        add_rules=["prefer <levers> already kept"],
    )
    return [
        EvolutionStep(
            id="s1", agent="brainstorm", base_version=1, new_version=2, outcome="kept",
            reason="replay gain +0.0300 > epsilon 0.001", gradient=gradient, edit=raise_risk,
            old_score=ReplayScore(score=0.10, tasks=3), new_score=ReplayScore(score=0.13, tasks=3),
            iteration=3,
        ),
        EvolutionStep(
            id="s2", agent="evaluation", base_version=1, outcome="rolled_back",
            reason="replay gain -0.0100 <= epsilon 0.001; stored as experience",
            edit=HarnessEdit(agent="evaluation",
                             edits=[FieldEdit(field="alpha_scale", old=1.0, new=0.8)]),
            old_score=ReplayScore(score=0.50, tasks=4), new_score=ReplayScore(score=0.49, tasks=4),
            iteration=6,
        ),
        EvolutionStep(
            id="s3", agent="brainstorm", base_version=2, outcome="no_gradient",
            reason="nothing to fix", iteration=9,
        ),
    ]  # fmt: skip


@pytest.fixture
def evolved_workspace(finished_run: tuple[Path, RunSummary], tmp_path: Path) -> Path:
    """A copy of the finished run's workspace whose store committed brainstorm v2."""
    source, _ = finished_run
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy2(source / "runs.json", workspace / "runs.json")
    with sqlite3.connect(source / "checkpoints.sqlite") as old:  # WAL pages included
        with sqlite3.connect(workspace / "checkpoints.sqlite") as new:
            old.backup(new)
    shutil.copytree(source / "memory", workspace / "memory")
    shutil.copytree(source / "sandbox" / "data", workspace / "sandbox" / "data")
    store = HarnessStore(workspace / "harness")
    bundled = store.version("brainstorm")
    harness = {**store.harness("brainstorm"), "score_weights": {"risk": 0.3}}
    assert store.commit("brainstorm", harness, {}, "test") == bundled + 1
    for step in _steps():
        store.record_step(step)
    return workspace


def test_summary_carries_sgpo_steps_and_final_versions() -> None:
    state = {"evolutions": _steps(), "harness_versions": {"brainstorm": 2, "evaluation": 1}}
    summary = summarise_run(state, "tiny", 0, "watch_time")
    kept, rolled, idle = summary.evolutions
    assert (kept.agent, kept.outcome, kept.base_version, kept.new_version) == (
        "brainstorm", "kept", 1, 2,
    )  # fmt: skip
    assert kept.edit == "score_weights.risk:+" and kept.tasks == 3
    assert kept.gain == pytest.approx(0.03) and kept.old_score == 0.1 and kept.new_score == 0.13
    assert rolled.new_version is None and rolled.gain == pytest.approx(-0.01)
    assert idle.edit is None and idle.gain is None and idle.tasks is None
    assert summary.harness_versions == {"brainstorm": 2, "evaluation": 1}
    lines = evolution_lines(summary)
    assert len(lines) == 4 and "kept v1->v2 score_weights.risk:+" in lines[0]
    assert lines[-1] == "harness versions at the end: brainstorm v2, evaluation v1"
    again = RunSummary.model_validate_json(summary.model_dump_json())
    assert again == summary
    empty = summarise_run({}, "tiny", 0, "watch_time")  # a state without the keys
    assert empty.evolutions == [] and empty.harness_versions == {}
    assert evolution_lines(empty) == []


def test_report_shows_sgpo_steps_versions_and_plot(evolved_workspace: Path) -> None:
    settings = load_settings(workspace=evolved_workspace)
    state = load_run(settings)
    store = HarnessStore(evolved_workspace / "harness")
    brainstorm, evaluation = store.version("brainstorm"), store.version("evaluation")
    at_end = {"brainstorm": brainstorm}
    values = {**state.values, "evolutions": _steps(), "harness_versions": at_end}
    html = render_report(state.model_copy(update={"values": values}), settings)
    section = html[html.index("Harness evolution (SGPO)") : html.index('<h2 id="trace">')]
    # the workspace's active version, and the one the run ended with
    assert f"<td>brainstorm</td><td>v{brainstorm}</td><td>v{brainstorm}</td>" in section
    assert f"<td>evaluation</td><td>v{evaluation}</td><td>–</td>" in section
    assert "3 SGPO step(s) in this run, 1 kept" in section
    assert section.count("<tr") == 3 + 1 + 3 + 1  # versions (+head), steps (+head)
    for text in ("kept", "rolled back", "no gradient", "v1→v2",
                 "score_weights.risk 0.2→0.3", "+0.1000→+0.1300", "+0.0300",
                 "-0.0100", "risky ideas &lt;b&gt;admitted&lt;/b&gt; &amp; launched",
                 "prefer &lt;levers&gt; already kept"):  # fmt: skip
        assert text in section, text
    assert "<b>admitted</b>" not in html and "<levers>" not in html
    assert section.count("Plotly.newPlot(") == 1  # the two replayed steps' gains
    assert 'id="chart-evolution"' in section


def test_status_shows_committed_versions_and_sgpo_counts(evolved_workspace: Path) -> None:
    result = runner.invoke(app, ["status", "--workspace", str(evolved_workspace), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    store = HarnessStore(evolved_workspace / "harness")
    bundled = store.versions("brainstorm")[0]
    assert status["harness_versions"]["brainstorm"] == bundled + 1  # the committed version
    assert status["harness_versions"]["evaluation"] == store.versions("evaluation")[0]
    assert status["evolution_steps"] == {
        "brainstorm": {"kept": 1, "rolled_back": 0, "other": 1, "total": 2},
        "evaluation": {"kept": 0, "rolled_back": 1, "other": 0, "total": 1},
    }
    table = runner.invoke(app, ["status", "--workspace", str(evolved_workspace)])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if "brainstorm" in line)
    assert re.search(rf"brainstorm\W+v{bundled + 1}\W+1\W+0\W+1", row), row
