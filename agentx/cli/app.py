"""The ``agentx`` command line: run the loop, serve it, inspect and report on a workspace.

``run`` and ``sandbox`` live here; ``serve``, ``status``, ``memory`` and ``report`` are
registered from their own modules so each command's heavy imports (FastAPI, Chroma,
matplotlib) load only when that command runs.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
from importlib.metadata import version as package_version
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.markup import escape

from agentx.cli import config as config_commands
from agentx.cli import evolve as evolve_commands
from agentx.cli import gate as gate_commands
from agentx.cli import report as report_commands
from agentx.cli import serve as serve_commands
from agentx.cli import status as status_commands
from agentx.cli.common import USER_ERRORS, err, out
from agentx.cli.common import fail as _fail
from agentx.cli.gate import EXIT_WAITING, ask_at_terminal, build_answer, interactive, show_gate
from agentx.cli.progress import RunProgress
from agentx.graph.gates import PendingGate
from agentx.graph.state import FUNNEL_KEYS
from agentx.models import ExperimentRecord, TraceEvent
from agentx.runner import RunPlan, resume_command, run_loop
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world
from agentx.settings import Settings, load_settings, setting_origins
from agentx.summary import RunSummary, evolution_lines, experiment_line

app = typer.Typer(
    help="AgentX: agents that iterate on a recommender system by themselves.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(help="Work with the bundled sandbox recommender.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


def _print_thread_stacks(signum: int, frame: FrameType | None) -> None:
    """Every thread's stack on stderr, most recent call first. A Python-level handler,
    not ``faulthandler``: its C-level dump of all threads reads thread states other threads
    may be freeing, and crashed a run (SIGSEGV) whose pool threads were ending."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, stack in sys._current_frames().items():
        parts.append(f"Thread {names.get(ident, ident)} (most recent call first):\n")
        parts.extend(reversed(traceback.format_stack(stack)))
    sys.stderr.write("".join(parts))
    sys.stderr.flush()


def _experiment_line(record: ExperimentRecord, north_star: str) -> str:
    """One progress line, from the same fields the JSON summary reports."""
    line = experiment_line(record, north_star)
    params = ", ".join(f"{k}={v}" for k, v in line.params.items())
    verification = "verified" if line.verification == "passed" else "not verified"
    effect = "-"
    if line.measured_effect is not None:
        effect = f"{line.measured_effect:+.2%} (p={line.p_value:.3f})"
        if line.true_effect is not None:
            effect += f", true {line.true_effect:+.2%}"
    return (
        f"#{line.iteration + 1} {line.technique}({params}) | {verification} | "
        f"stage {line.stage_reached or '-'} | {line.decision or 'ABANDONED'} | "
        f"{north_star} {effect}"
    )


def _print_summary(summary: RunSummary) -> None:
    funnel = summary.funnel
    out.rule("summary")
    out.print("funnel: " + " -> ".join(f"{k} {funnel.get(k, 0)}" for k in FUNNEL_KEYS))
    for item in summary.kept:
        out.print(
            f"[green]kept[/] {item['technique']} {item['params']}: measured "
            f"{item['measured_effect']:+.2%}, true {item['true_effect'] or 0:+.2%}"
        )
    for item in summary.vetoed:
        out.print(f"[yellow]vetoed[/] {item['technique']} at {item['stage']}: {item['reason']}")
    out.print(
        f"true {summary.objective} change of the baseline over the run: "
        f"{summary.total_true_effect:+.2%}"
    )
    for line in evolution_lines(summary):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _default(name: str) -> str:
    """A setting's default as ``run --help`` shows it (flags override file and env)."""
    return str(Settings.model_fields[name].default)


def _version(value: bool) -> None:
    if value:
        out.print(f"agentx {package_version('agentx')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """AgentX: agents that iterate on a recommender system by themselves."""


@app.command()
def run(
    goal: Annotated[
        str | None,
        typer.Option(help="The optimisation goal in plain words.", show_default=_default("goal")),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Experiments to run.", show_default=_default("iterations"))
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of every random process.", show_default="0")
    ] = None,
    world: Annotated[
        str | None,
        typer.Option(help="Shipped world name or world file.", show_default=_default("world")),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(help="Where runs and memory live.", show_default=_default("workspace")),
    ] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Resume the workspace's last run with its own settings.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    answer: Annotated[
        str | None,
        typer.Option(
            help="With --resume: answer the gate the run waits at (accept, edit, response, "
            "ignore, or a HumanResponse as JSON)."
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="The reason of a response.")] = None,
    params: Annotated[str | None, typer.Option(help="New parameters (JSON) of an edit.")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who answers the gate.")] = None,
) -> None:
    """Run the loop on the sandbox (offline unless an LLM is configured).

    With autonomous = false the run pauses at human gates: on a terminal you are asked;
    otherwise the command shows the gate and exits with code 3, and
    `agentx gate answer ...` (or `run --resume --answer ...`) continues it.

    Defaults come from the settings file and AGENTX_* variables when set there
    (`agentx config` shows the effective values and their sources).
    """
    overrides = {
        "goal": goal, "iterations": iterations, "seed": seed, "world": world,
        "workspace": workspace,
    }  # fmt: skip
    try:
        settings = load_settings(settings_file, override_label="flag", **overrides)
        origins = setting_origins(settings_file, "flag", **overrides)
        human = build_answer(answer, reason, params, reviewer) if answer is not None else None
        if not resume:
            load_world(settings.world)
    except USER_ERRORS as error:
        _fail(error)
    north = settings.north_star
    progress = RunProgress(err, settings.iterations)

    def on_start(plan: RunPlan) -> None:
        nonlocal north
        started = plan.settings
        north = started.north_star
        progress.total = started.iterations
        if as_json:
            return
        mode = f"LLM {started.llm.model}" if started.llm.enabled else "offline policy"
        verb = f"resuming {plan.run_id}" if plan.resume else f"starting {plan.run_id}"
        out.print(
            f"AgentX {verb}: world [bold]{escape(started.world)}[/], seed {started.seed}, "
            f"{started.iterations} experiment(s), {mode}; workspace {started.workspace}",
            highlight=False,
        )

    def on_trace(event: TraceEvent) -> None:
        if not as_json and event.node in (
            "brainstorm",
            "verify",
            "rollout_stage",
            "veto",
            "evolve_harness",
        ):
            err.print(f"[dim]  {event.node}: {escape(event.message)}[/]", soft_wrap=True)

    def on_experiment(record: ExperimentRecord) -> None:
        if not as_json:
            out.print(_experiment_line(record, north), soft_wrap=True, highlight=False)

    # A process started in the background of a script inherits SIGINT as ignored (and
    # Python then installs no KeyboardInterrupt handler): Ctrl-C must still stop the run at
    # a checkpoint and print the resume command.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # A run that seems stuck: `kill -USR1 <pid>` prints every thread's stack on stderr
    # (experiments of a wave run in threads) and the run goes on.
    try:
        signal.signal(signal.SIGUSR1, _print_thread_stacks)
    except ValueError:  # not the main thread (run embedded)
        pass
    try:
        with progress:
            summary = run_loop(
                settings,
                resume=resume,
                origins=origins,
                on_start=on_start,
                on_node=progress.node,
                on_trace=on_trace,
                on_experiment=on_experiment,
                answer=human,
                on_gate=_terminal_gate(settings, progress)
                if interactive() and not as_json
                else None,
            )
    except USER_ERRORS as error:
        _fail(error)
    except KeyboardInterrupt:
        err.print(
            f"interrupted; nothing is lost. Resume with: {resume_command(settings)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=130) from None
    if as_json:
        sys.stdout.write(summary.model_dump_json() + "\n")
    else:
        _print_summary(summary)
    if summary.waiting_at is not None:
        if not as_json:
            show_gate(PendingGate.model_validate(summary.waiting_at), settings.workspace)
        raise typer.Exit(code=EXIT_WAITING)


def _terminal_gate(settings: Settings, progress: RunProgress):
    """Ask the person at the terminal when the run pauses at a gate."""

    def ask(pending: PendingGate) -> dict[str, Any]:
        with progress.paused():
            return ask_at_terminal(pending, settings.workspace)

    return ask


@sandbox_app.command("init")
def sandbox_init(
    directory: Annotated[Path, typer.Argument(help="Where to create the sandbox.")],
    world: Annotated[str, typer.Option(help="Shipped world name or world file.")] = "default",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Create a sandbox: the recommender as a fresh git repo, plus its logged data."""
    try:
        target = SandboxTarget.create(directory, load_world(world), seed)
    except USER_ERRORS as error:
        _fail(error)
    out.print(f"sandbox ready: repository {target.repo_path}, data {target.root / 'data'}")


@sandbox_app.command("analyse")
def sandbox_analyse(
    directory: Annotated[Path, typer.Argument(help="A sandbox directory.")],
    world: Annotated[str, typer.Option(help="Shipped world name or world file.")] = "default",
) -> None:
    """Print the data-analysis report of a sandbox's logs as JSON."""
    try:
        target = SandboxTarget.create(directory, load_world(world))
    except USER_ERRORS as error:
        _fail(error)
    sys.stdout.write(json.dumps(target.analyse_data().model_dump(), indent=2) + "\n")


serve_commands.register(app)
status_commands.register(app)
report_commands.register(app)
evolve_commands.register(app)
config_commands.register(app)
gate_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
