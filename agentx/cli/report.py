"""``agentx report``: a self-contained HTML report of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentx.cli.common import USER_ERRORS, err, fail, out
from agentx.cli.progress import working


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

    It holds the experiment ledger, the funnel beside the paper's, the north-star
    trajectory (measured and true), guardrail vetoes and harness versions, with the
    plots embedded: one file that needs no network to open.
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


def register(app: typer.Typer) -> None:
    """Add ``report`` to the root command."""
    app.command("report")(report)
