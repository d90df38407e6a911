"""``agentx report`` and ``agentx export``: a run as one HTML file, runs as tables or in MLflow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentx.cli.common import USER_ERRORS, CommandError, err, fail, out
from agentx.cli.progress import working

if TYPE_CHECKING:
    from agentx.settings import Settings


def report(
    run: Annotated[
        str | None, typer.Option("--run", help="Run id (see `agentx status`); default the last.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write [WORKSPACE/reports/RUN.html]."),
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="The workspace to read [env AGENTX_WORKSPACE; .agentx].")
    ] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
) -> None:
    """Write a self-contained HTML report of a run.

    Every experiment with its hypothesis and evidence, diff, verification, rollout stages
    (sample sizes, SRM), metrics at the level the decision used, guardrails, verdict and
    true effect; the baseline against the original; the history of the workspace's runs;
    interactive charts. One file, plotly.js inlined: it needs no network to open.
    """
    from agentx.report import ReportError, load_run, write_report
    from agentx.settings import load_settings

    try:
        settings = load_settings(settings_file, workspace=workspace)
        with working(err, "rendering the report"):
            state = load_run(settings, run)
            path = write_report(state, settings, output)
    except (*USER_ERRORS, ReportError) as error:
        fail(error)
    except OSError as error:
        fail(f"cannot write the report: {error}; choose another path with --out")
    out.print(f"report of {state.run_id} ({state.status}): {path}", highlight=False)


def export(
    csv_dir: Annotated[
        Path | None,
        typer.Option("--csv", help="Folder for experiments.csv, stages.csv and metrics.csv."),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="One JSON file with the three tables; - = stdout.")
    ] = None,
    mlflow_uri: Annotated[
        str | None,
        typer.Option("--mlflow", help="Publish the run(s) to this MLflow tracking URI."),
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run [every run].")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="The workspace to read [env AGENTX_WORKSPACE; .agentx].")
    ] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
) -> None:
    """Export experiments, stages and metrics as CSV or JSON, or publish runs to MLflow.

    Rows come from the workspace's trajectory archive (every run, old records too), with
    each interval at the level its decision used and that level in a column.
    """
    from agentx.report import ReportError, list_runs
    from agentx.report.export import workspace_tables, write_csv
    from agentx.report.history import decision_levels, read_trajectories
    from agentx.settings import load_settings

    try:
        if csv_dir is None and json_file is None and mlflow_uri is None:
            raise CommandError("nothing to export: give --csv DIR, --json FILE or --mlflow URI")
        settings = load_settings(settings_file, workspace=workspace)
        runs = list_runs(settings.workspace)
        if run is not None and run not in runs:
            raise CommandError(f"no run {run!r} in {settings.workspace}; runs: {', '.join(runs)}")
        stored = read_trajectories(settings.workspace)
        for item in stored:
            if item.problem and (run is None or item.run_id == run):
                out.print(f"skipped unreadable trajectory {item.problem}", highlight=False)
        data = workspace_tables(stored, decision_levels(settings), run)
        if csv_dir is not None:
            paths = write_csv(data, csv_dir)
            out.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False)
        if json_file is not None:
            text = data.model_dump_json(indent=2)
            if str(json_file) == "-":
                sys.stdout.write(text + "\n")
            else:
                json_file.parent.mkdir(parents=True, exist_ok=True)
                json_file.write_text(text + "\n", encoding="utf-8")
                out.print(f"wrote {json_file}", highlight=False)
        if mlflow_uri is not None:
            _publish(settings, mlflow_uri, [run] if run else runs)
    except (*USER_ERRORS, ReportError) as error:
        fail(error)
    except OSError as error:
        fail(f"cannot write the export: {error}")


def _publish(settings: Settings, uri: str, runs: list[str]) -> None:
    """Publish each run (from its checkpoint) to MLflow, with its report."""
    from agentx.report import load_run, render_report
    from agentx.report.workspace import run_settings, world_of
    from agentx.summary import summarise_run
    from agentx.tracking.mlflow_log import publish_run

    settings = settings.model_copy(
        update={"tracking": settings.tracking.model_copy(update={"mlflow_uri": uri})}
    )
    for run_id in runs:
        state = load_run(settings, run_id)
        ran = run_settings(settings, run_id)
        world = world_of(settings.workspace, run_id)
        summary = summarise_run(state.values, world, ran.seed, ran.north_star)
        mlflow_id = publish_run(
            settings,
            run_id,
            state.values,
            report_html=render_report(state, settings),
            summary_json=summary.model_dump_json(indent=2),
        )
        out.print(f"published {run_id} to MLflow run {mlflow_id}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``export`` to the root command."""
    app.command("report")(report)
    app.command("export")(export)
