"""``agentx status`` and ``agentx memory search``: look into a workspace without changing it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentx.cli.common import USER_ERRORS, CommandError, err, fail, out
from agentx.cli.progress import working

memory_app = typer.Typer(
    help="Look into the experiment memory (knowledge cards in Chroma).", no_args_is_help=True
)

WorkspaceOption = Annotated[
    Path | None, typer.Option(help="The workspace to read [env AGENTX_WORKSPACE; .agentx].")
]
SettingsOption = Annotated[Path | None, typer.Option("--settings", help="TOML settings.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _run_row(state: Any, settings: Any) -> dict[str, Any]:
    from agentx.report.workspace import run_settings, world_of

    records = state.values.get("experiments", [])
    funnel = state.values.get("funnel", {})
    return {
        "run_id": state.run_id,
        "world": world_of(settings.workspace, state.run_id),
        "seed": run_settings(settings, state.run_id).seed,
        "status": state.status,
        "experiments": len(records),
        "kept": sum(r.status.value == "kept" for r in records),
        "vetoed": sum(r.status.value == "vetoed" for r in records),
        "funnel": dict(funnel),
    }


def _readable_run(settings: Any, run_id: str) -> dict[str, Any]:
    """A run's row; a registered run with no checkpoint yet (it stopped before its first
    step, or an older version registered a refused request) is shown, not fatal."""
    from agentx.report.workspace import CheckpointsUnavailable, ReportError, load_run

    try:
        return _run_row(load_run(settings, run_id), settings)
    except CheckpointsUnavailable:
        raise
    except ReportError:
        return {
            "run_id": run_id, "status": "not started (no checkpoint)", "experiments": 0,
            "kept": 0, "vetoed": 0, "funnel": {},
        }  # fmt: skip


def recorded_memory(settings: Any) -> Any:
    """The memory the workspace's runs used, unless the settings name one explicitly:
    cards written to a Chroma server are not in the workspace, and the variable that
    named the server is often not set again when someone looks later."""
    from agentx.workspace.records import read_identity

    identity = read_identity(settings.workspace)
    explicit = settings.memory.chroma_url is not None or settings.memory.collection != (
        type(settings.memory).model_fields["collection"].default
    )
    if identity is None or identity.memory is None or explicit:
        return settings.memory
    return settings.memory.model_copy(update=identity.memory.model_dump())


def status(
    workspace: WorkspaceOption = None,
    settings_file: SettingsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a workspace: runs, experiments, memory size, active harness versions, SGPO steps."""
    from agentx.memory.store import open_store
    from agentx.report.workspace import (
        ReportError,
        evolution_counts,
        harness_versions,
        list_runs,
        world_of,
    )
    from agentx.settings import load_settings

    try:
        settings = load_settings(settings_file, workspace=workspace)
        with working(err, "reading the workspace"):
            runs = [_readable_run(settings, run_id) for run_id in list_runs(settings.workspace)]
            memory = recorded_memory(settings)
            store = open_store(settings.workspace, memory, settings.embeddings)
        report = {
            "workspace": str(settings.workspace),
            "world": world_of(settings.workspace),
            "runs": runs,
            "experiments": sum(r["experiments"] for r in runs),
            "memory": memory.chroma_url or str(Path(settings.workspace) / "memory"),
            "memory_cards": store.count(),
            "harness_versions": harness_versions(settings.workspace),
            "evolution_steps": evolution_counts(settings.workspace),
        }
    except (*USER_ERRORS, ReportError) as error:
        fail(error)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(
        f"workspace [bold]{report['workspace']}[/] · world {report['world']} · "
        f"{len(runs)} run(s), {report['experiments']} experiment(s) · "
        f"memory {report['memory_cards']} card(s) in {report['memory']}",
        highlight=False,
    )
    table = Table("run", "world", "status", "experiments", "kept", "vetoed", "funnel")
    for row in runs:
        funnel = " → ".join(f"{k} {v}" for k, v in row["funnel"].items())
        world = f"{row['world']} seed {row['seed']}" if "seed" in row else "?"
        table.add_row(
            row["run_id"], world, row["status"], str(row["experiments"]), str(row["kept"]),
            str(row["vetoed"]), funnel,
        )  # fmt: skip
    out.print(table)
    harness = Table("agent", "active harness", "SGPO kept", "rolled back", "other steps")
    for agent, version in report["harness_versions"].items():
        steps = report["evolution_steps"].get(agent, {})
        harness.add_row(
            agent, f"v{version}", str(steps.get("kept", 0)), str(steps.get("rolled_back", 0)),
            str(steps.get("other", 0)),
        )  # fmt: skip
    out.print(harness)


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="Free text: a goal, a lever, a hypothesis.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many cards.")] = 5,
    world: Annotated[
        str | None, typer.Option(help="Only cards from this world (e.g. tiny, default).")
    ] = None,
    workspace: WorkspaceOption = None,
    settings_file: SettingsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the knowledge cards the agents would retrieve for QUERY, most similar first."""
    from agentx.memory.store import open_store
    from agentx.settings import load_settings

    try:
        settings = load_settings(settings_file, workspace=workspace)
        memory = recorded_memory(settings)
        if not memory.chroma_url and not (Path(settings.workspace) / "memory").is_dir():
            raise CommandError(
                f"no memory in {settings.workspace} (no memory/ directory); "
                f"run `agentx run --workspace {settings.workspace}` first"
            )
        with working(err, "searching the memory"):
            store = open_store(settings.workspace, memory, settings.embeddings)
            hits = store.search(query, k=k, where={"world": world} if world else None)
    except USER_ERRORS as error:
        fail(error)
    if as_json:
        payload = [{"similarity": round(h.similarity, 4), **h.card.model_dump()} for h in hits]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if not hits:
        err.print(f"no card matches (memory holds {store.count()} card(s))")
        return
    table = Table("sim", "kind", "decision", "effect", "world", "title", show_lines=True)
    for hit in hits:
        card = hit.card
        table.add_row(
            f"{hit.similarity:.2f}", card.kind, card.decision, f"{card.effect:+.2%}",
            card.world, card.title,
        )  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``status`` and ``memory`` to the root command."""
    app.command("status")(status)
    app.add_typer(memory_app, name="memory")
