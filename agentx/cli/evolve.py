"""``agentx evolve``: one Harness Evolution (SGPO) step outside a run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agentx.cli.common import USER_ERRORS, err, fail, out
from agentx.cli.progress import working
from agentx.workspace.lock import WorkspaceLock


def evolve(
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent", help="Agent to evolve: brainstorm or evaluation (repeat for both)."
        ),
    ] = None,
    world: Annotated[str | None, typer.Option(help="Shipped world name or world file.")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="The workspace to evolve [env AGENTX_WORKSPACE; .agentx].")
    ] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the steps as JSON.")] = False,
) -> None:
    """Diagnose, refine, check and replay one agent's harness on the recorded runs.

    The edit is kept (a new harness version becomes active in the workspace) only if the
    replay on the same recorded tasks scores better by more than evolution.epsilon;
    otherwise it is rolled back and stored as refinement experience.
    """
    from agentx.evolution.graph import EVOLVABLE_AGENTS, build_evolution_graph
    from agentx.graph.resources import build_resources
    from agentx.report.workspace import world_of
    from agentx.settings import load_settings

    agents = agent or list(EVOLVABLE_AGENTS)
    unknown = [a for a in agents if a not in EVOLVABLE_AGENTS]
    if unknown:
        fail(f"cannot evolve {', '.join(unknown)}; choose from {', '.join(EVOLVABLE_AGENTS)}")
    try:
        settings = load_settings(settings_file, workspace=workspace, world=world)
        built = world_of(settings.workspace)
        if world is None and built != "?":  # evolve the workspace as it is, never rebuild it
            settings = load_settings(settings_file, workspace=workspace, world=built)
        if not (settings.workspace / "harness" / "trajectories").is_dir():
            fail(
                f"no recorded runs in {settings.workspace}: run `agentx run --workspace "
                f"{settings.workspace}` first"
            )
        with WorkspaceLock(settings.workspace, command="agentx evolve"):
            with working(err, "opening the workspace"):
                graph = build_evolution_graph(build_resources(settings).evolver())
            steps = []
            for name in agents:
                with working(err, f"SGPO step on the {name} harness (diagnose, refine, replay)"):
                    steps.append(graph.invoke({"agent": name})["step"])
    except USER_ERRORS as error:
        fail(error)
    if as_json:
        sys.stdout.write("[" + ",".join(s.model_dump_json() for s in steps) + "]\n")
        return
    for step in steps:
        out.print(step.line(), soft_wrap=True, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``evolve`` to the root command."""
    app.command("evolve")(evolve)
