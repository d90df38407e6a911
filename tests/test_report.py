"""The HTML report, its views and the export, on a workspace made by one real 3-experiment run
on the tiny world (what `make run` makes, smaller), plus hand-made records for the cases a
short run does not produce (vetoes, refusals, old and new record shapes)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from trajectories import make_record
from typer.testing import CliRunner

from agentx.cli.app import app
from agentx.models import Decision, ExperimentStatus, Rollout, StageResult
from agentx.report import load_run, render_report
from agentx.report.charts import evolution_figure, experiments_figure
from agentx.report.history import decision_levels, history_rows, read_trajectories
from agentx.report.levels import DecisionLevels, fmt_p, rescale
from agentx.report.view import DECISION_COLORS, decision_of, experiment_view
from agentx.runner import run_loop
from agentx.settings import Settings, load_settings
from agentx.summary import EvolutionLine

runner = CliRunner()
RUN = "run-1"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-ws")
    # one at a time: this run's three experiments include an SGPO step that reaches a replay
    settings = load_settings(
        world="tiny", iterations=3, seed=0, workspace=path, concurrency={"max_in_flight": 1}
    )
    run_loop(settings)
    return path


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return load_settings(workspace=workspace)


@pytest.fixture(scope="module")
def records(workspace: Path) -> list[dict[str, Any]]:
    data = json.loads((workspace / "harness" / "trajectories" / f"{RUN}.json").read_text())
    return data["records"]


@pytest.fixture(scope="module")
def html(settings: Settings) -> str:
    return render_report(load_run(settings), settings)


class _Text(HTMLParser):
    """The visible text of an HTML fragment (scripts and styles dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def text(fragment: str) -> str:
    parser = _Text()
    parser.feed(fragment)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def element(html: str, attribute: str, value: str, tag: str) -> str:
    """The first ``<tag ... attribute="value"...>...</tag>`` (no nesting of the same tag)."""
    match = re.search(rf'<{tag}\b[^>]*{attribute}="{re.escape(value)}"[^>]*>(.*?)</{tag}>', html,
                      re.S)  # fmt: skip
    assert match, f"no <{tag} {attribute}={value!r}>"
    return match.group(0)


def pct(value: float) -> str:
    return f"{value:+.2%}"


def test_report_shows_every_item_for_every_experiment(
    html: str, records: list[dict[str, Any]], settings: Settings
) -> None:
    levels = decision_levels(settings)
    assert (levels.north_star, levels.guardrail) == pytest.approx((0.04, 0.01))  # shipped harness
    assert len(records) == 3
    for record in records:
        section = element(html, "data-experiment", record["id"], "section")
        view = experiment_view(record, "watch_time", levels)
        visible = text(section)
        # hypothesis and evidence
        assert record["proposal"]["hypothesis"][:60] in text(
            element(section, "data-part", "hypothesis", "div")
        )
        for evidence in record["proposal"]["evidence"]:
            assert evidence["ref"] in visible
        # the diff, line by line
        diff = element(section, "data-part", "diff", "details")
        lines = record["patch"]["diff"].splitlines()
        added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
        assert added and all(str(escape(line)) in diff for line in added)
        assert diff.count('class="add"') == len(added)
        # verification dimensions
        verification = text(element(section, "data-part", "verification", "div"))
        for check in record["verifications"][-1]["checks"]:
            assert check["dimension"] in verification
        # every stage with its sample sizes and SRM
        stages = element(section, "data-part", "stages", "table")
        for stage in record["rollout"]["stages"]:
            row = text(element(stages, "data-stage", stage["stage"], "tr"))
            north = next(e for e in stage["effects"] if e["metric"] == "watch_time")
            assert f" {north['n_control']} {north['n_treatment']} " in f" {row} "
            assert f"p={fmt_p(stage['srm_p_value'])}" in row and "ok" in row
            assert "at 96%" in row
        # each metric with its interval at the level its decision used, guardrail status, truth
        metrics = element(section, "data-part", "metrics", "table")
        last = record["rollout"]["stages"][-1]
        for effect in last["effects"]:
            row = text(element(metrics, "data-metric", effect["metric"], "tr"))
            shown = next(m for m in view.metrics if m.metric == effect["metric"])
            assert pct(effect["relative"]) in row
            assert f"[{pct(shown.ci_low)}, {pct(shown.ci_high)}] at {shown.level_label}" in row
            assert fmt_p(effect["p_value"]) in row
            truth = record["verdict"]["true_effects"].get(effect["metric"])
            if truth is not None:
                assert pct(truth) in row
        for guard in last["guardrails"]:
            row = text(element(metrics, "data-metric", guard["metric"], "tr"))
            assert "at 99%" in row
            status = "breached" if guard["breached"] else "held"
            assert ("observed" if guard["tier"] == "observe" else status) in row
        # the verdict with its reason, and the true effect
        verdict = text(element(section, "data-part", "verdict", "p"))
        assert f"Verdict: {view.decision}" in verdict and f"Reason: {view.reason}" in verdict
        assert pct(record["verdict"]["true_effects"]["watch_time"]) in verdict
        if record["verdict"]["root_cause"]:
            assert record["verdict"]["root_cause"] in verdict


def test_report_shows_the_baseline_history_and_funnel(
    html: str, records: list[dict[str, Any]]
) -> None:
    kept = [r for r in records if r["status"] == "kept"]
    measured = 1.0
    true = 1.0
    for record in kept:
        measured *= 1 + record["verdict"]["north_star"]["relative"]
        true *= 1 + record["verdict"]["true_effects"]["watch_time"]
    cumulative = text(element(html, "data-part", "cumulative", "p"))
    assert f"{pct(measured - 1)} measured and {pct(true - 1)} true" in cumulative
    history = text(element(html, "data-part", "history", "table"))
    assert RUN in history and "tiny" in history and pct(true - 1) in history
    paper = text(element(html, "data-part", "paper", "p"))
    assert "the paper 10 of 374 (2.7%)" in paper and "is not compared" in paper
    funnel = text(element(html, "data-part", "funnel", "table"))
    assert "paper" not in funnel  # no admitted-share column beside the paper's funnel


def test_report_is_one_offline_file_with_interactive_charts(html: str) -> None:
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all("src=" not in tag for tag in scripts)  # every script inline
    assert "<link" not in html and "@import" not in html
    bundle_end = html.index("</script>")  # the plotly.js bundle comes first
    assert "plotly.js" in html[:bundle_end] and len(html[:bundle_end]) > 1_000_000
    rest = html[bundle_end:]
    assert not re.search(r"(src|href)=['\"]?https?://", rest)
    for chart in ("chart-funnel", "chart-cumulative", "chart-experiments", "chart-history",
                  "chart-evolution"):  # fmt: skip
        assert f'id="{chart}"' in rest, chart
    assert rest.count("Plotly.newPlot(") == 5
    assert not re.search(r">\s*0\.000\s*<", html)  # p-values never print as 0.000


def test_decisions_come_from_status_and_root_cause_not_halted_at() -> None:
    halted = Rollout(
        experiment_id="e1",
        stages=[StageResult(stage="canary", treatment_share=0.05, days=3, srm_p_value=0.5,
                            srm_ok=True, decision="halt")],
        halted_at="canary",
        halt_reason="launch refused by reviewer ana at canary: not now",
    )  # fmt: skip
    refused = make_record(1, "t", ExperimentStatus.DISCARDED, measured=0.01, true=0.0,
                          cause="launch_refused")  # fmt: skip
    refused.rollout = halted
    srm = make_record(2, "t", ExperimentStatus.DISCARDED, measured=0.0, true=0.0,
                      cause="traffic_mismatch")  # fmt: skip
    srm.rollout = halted
    vetoed = make_record(3, "t", ExperimentStatus.VETOED, measured=0.01, cause="guardrail_harm",
                         decision=Decision.DISCARD)  # fmt: skip
    vetoed.rollout = halted
    abandoned = make_record(4, "t", ExperimentStatus.ABANDONED)
    extended = make_record(5, "t", ExperimentStatus.EXTENDED, measured=0.009,
                           decision=Decision.EXTEND, cause="no_significance")  # fmt: skip
    labels = [decision_of(r.model_dump(mode="json"))
              for r in (refused, srm, vetoed, abandoned, extended)]  # fmt: skip
    assert labels == ["REFUSED", "DISCARD", "VETO", "ABANDONED", "EXTEND"]
    view = experiment_view(refused, "watch_time")
    assert view.decision == "REFUSED" and "launch refused" in view.reason


def test_intervals_are_rescaled_to_the_decision_level() -> None:
    low, high = rescale(0.02, 0.0, 0.04, recorded=0.05, wanted=0.05)
    assert (low, high) == (0.0, 0.04)
    low, high = rescale(0.02, 0.0, 0.04, recorded=0.05, wanted=0.01)  # 99%: z 2.576 vs 1.960
    assert low == pytest.approx(0.02 - 0.02 * 2.5758 / 1.9600, abs=1e-4) and low < 0.0
    assert high - 0.02 == pytest.approx(0.02 - low)
    record = make_record(1, "t", ExperimentStatus.KEPT, measured=0.02, true=0.01)
    view = experiment_view(record, "watch_time", DecisionLevels(north_star=0.04))
    assert view.north_star is not None and view.north_star.level_label == "96%"


def test_p_values_keep_their_magnitude() -> None:
    assert [fmt_p(p) for p in (0.274, 0.04, 0.00099, 1.8e-5, 0.0, None)] == [
        "0.274", "0.040", "9.9e-04", "1.8e-05", "<1e-300", "–",
    ]  # fmt: skip


def test_chart_colours_follow_the_decision_not_the_sign(records: list[dict[str, Any]]) -> None:
    # the run's experiments, and a copy of one with a positive estimate made inconclusive
    # (which decisions a seeded run reaches changes with the sandbox)
    positive = next(r for r in records if r["verdict"]["north_star"]["relative"] > 0)
    extended = json.loads(json.dumps(positive))
    extended.update(id="extended", status=ExperimentStatus.EXTENDED.value)
    extended["verdict"].update(decision=Decision.EXTEND.value, root_cause="no_significance")
    runs = [*records, extended]
    views = [experiment_view(r, "watch_time") for r in runs]
    extend = next(v for v in views if v.decision == "EXTEND")
    assert extend.north_star is not None and extend.north_star.relative > 0  # a positive estimate
    figure = experiments_figure(views, "watch_time")
    assert figure is not None
    colours = [trace.marker.color for trace in figure.data]
    assert colours == [DECISION_COLORS[v.decision] for v in views]
    assert DECISION_COLORS["EXTEND"] != DECISION_COLORS["KEEP"]
    # each experiment its own panel and axis: one large effect squashes no other interval
    assert len({trace.yaxis for trace in figure.data}) == len(views)


def test_empty_charts_are_not_drawn() -> None:
    assert evolution_figure([], 0.001) is None
    idle = EvolutionLine(iteration=3, agent="brainstorm", outcome="no_gradient", base_version=1)
    assert evolution_figure([idle], 0.001) is None  # no replay: nothing to compare
    never_launched = experiment_view(make_record(1, "t", ExperimentStatus.ABANDONED), "watch_time")
    assert experiments_figure([never_launched], "watch_time") is None


def _copy_workspace(source: Path, target: Path) -> Path:
    target.mkdir()
    shutil.copy2(source / "runs.json", target / "runs.json")
    with sqlite3.connect(source / "checkpoints.sqlite") as old:
        with sqlite3.connect(target / "checkpoints.sqlite") as new:
            old.backup(new)
    shutil.copytree(source / "harness", target / "harness")
    shutil.copytree(source / "sandbox" / "data", target / "sandbox" / "data")
    return target


def test_old_newer_and_broken_trajectories_still_render(
    workspace: Path, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    ws = _copy_workspace(workspace, tmp_path / "ws")
    folder = ws / "harness" / "trajectories"
    old = json.loads(json.dumps(records[0]))
    for key in ("verifications", "patch", "arms", "card_id"):
        old.pop(key)  # a record from before these fields existed
    for stage in old["rollout"]["stages"]:
        stage.pop("srm_p_value")
    newer = json.loads(json.dumps(records[1]))
    newer["verdict"]["final_alpha"] = 0.03  # typed decision fields of a newer AgentX
    newer["verdict"]["decision_reason"] = {"kind": "no_significance"}
    newer["rollout"]["stages"][-1]["guardrails"][0].update(breached=True, accepted=True)
    (folder / "run-0.json").write_text(json.dumps(
        {"run_id": "run-0", "world": "tiny", "north_star": "watch_time", "saved_at": 1.0,
         "records": [old, newer]}))  # fmt: skip
    (folder / "run-9.json").write_text("{not json")
    settings = load_settings(workspace=ws)
    html = render_report(load_run(settings), settings)
    history = text(element(html, "data-part", "history", "table"))
    assert "run-0" in history and "unreadable: run-9.json" in history
    levels = decision_levels(settings)
    old_view = experiment_view(old, "watch_time", levels)
    assert old_view.attempts == [] and old_view.diff == []
    assert old_view.stages[0].srm_p_value is None and old_view.stages[0].n_control is not None
    newer_view = experiment_view(newer, "watch_time", levels)
    assert newer_view.north_star is not None and newer_view.north_star.level_label == "97%"
    assert newer_view.metrics[1].status == "accepted"
    rows = history_rows(read_trajectories(ws), levels)
    assert [r.run_id for r in rows][:1] == ["run-0"] and rows[0].experiments == 2
    result = runner.invoke(app, ["export", "--workspace", str(ws), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert "skipped unreadable trajectory run-9.json" in result.output


def test_export_writes_experiments_stages_and_metrics(
    workspace: Path, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    csv_dir, json_file = str(tmp_path / "csv"), str(tmp_path / "x.json")
    result = runner.invoke(
        app, ["export", "--workspace", str(workspace), "--csv", csv_dir, "--json", json_file]
    )
    assert result.exit_code == 0, result.output
    tables = json.loads((tmp_path / "x.json").read_text())
    stages = sum(len(r["rollout"]["stages"]) for r in records)
    effects = sum(len(s["effects"]) for r in records for s in r["rollout"]["stages"])
    assert len(tables["experiments"]) == len(records)
    assert len(tables["stages"]) == stages and len(tables["metrics"]) >= effects
    first = tables["experiments"][0]
    assert first["experiment_id"] == records[0]["id"] and first["confidence"] == 0.96
    assert first["p_value"] == records[0]["verdict"]["north_star"]["p_value"]
    assert first["true_effect"] == records[0]["verdict"]["true_effects"]["watch_time"]
    with (tmp_path / "csv" / "stages.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == stages and {"n_control", "srm_p_value", "srm_ok"} <= set(rows[0])
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        metric_rows = list(csv.DictReader(handle))
    guard = next(r for r in metric_rows if r["role"].startswith("guardrail (severe)"))
    assert guard["confidence"] == "0.99" and guard["guardrail"] == "held"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--workspace", "{ws}"], "nothing to export"),
        (["export", "--workspace", "{ws}", "--run", "run-7", "--json", "-"], "no run 'run-7'"),
        (["export", "--workspace", "{missing}", "--json", "-"], "no AgentX runs in"),
    ],
)
def test_export_errors_are_one_line(
    workspace: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    filled = [a.format(ws=workspace, missing=tmp_path / "nowhere") for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")
