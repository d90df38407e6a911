"""Human gates on the command line: show the gate a run waits at, and answer it.

Why here: with ``autonomous = false`` a run pauses at a LangGraph interrupt; before this
the CLI printed an empty summary and exited 0. Now a paused run shows what is asked (the
gate, its evidence, the answers it takes), asks the person at a terminal, and otherwise
exits with :data:`EXIT_WAITING` and the exact command that answers it. Answers are the
same ``HumanResponse`` shape LangServe and the SDK use (:mod:`agentx.graph.gates`).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.prompt import Prompt

from agentx.cli.common import USER_ERRORS, CommandError, err, fail, out
from agentx.graph.gates import PendingGate

#: Exit code of a command that leaves its run paused at a gate (not an error, not done).
EXIT_WAITING = 3

gate_app = typer.Typer(help="Show or answer the human gate a paused run waits at.")

AnswerType = Annotated[
    str,
    typer.Argument(
        help="accept, edit, response or ignore (what each means depends on the gate: "
        "`agentx gate show`), or a whole HumanResponse as JSON."
    ),
]


def build_answer(
    answer: str, reason: str | None, params: str | None, reviewer: str | None
) -> dict[str, Any]:
    """A ``HumanResponse`` from the command-line words (checked later against the gate).

    Raises:
        CommandError: ``--params`` or a JSON answer is not valid JSON.
    """
    text = answer.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"--answer is not valid JSON: {error}") from None
        return parsed if isinstance(parsed, dict) else {"type": text}
    built: dict[str, Any] = {"type": text.lower()}
    if reason:
        built["args"] = reason
    if params:
        try:
            values = json.loads(params)
        except json.JSONDecodeError as error:
            raise CommandError(f"--params is not valid JSON: {error}") from None
        built["args"] = {"action": "proposal_admission", "args": {"params": values}}
    if reviewer:
        built["reviewer"] = reviewer
    return built


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in evidence.items():
        if key in ("choices", "options", "question"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        lines.append(f"{key}: {text[:400]}{'…' if len(text) > 400 else ''}")
    return lines


def show_gate(pending: PendingGate, workspace: Path) -> None:
    """Print the gate: what is asked, the evidence, the answers and how to send them."""
    body = [escape(pending.description), ""]
    if pending.error:
        body.insert(0, f"[red]previous answer refused: {escape(pending.error)}[/]")
    body += [f"[dim]{escape(line)}[/]" for line in _evidence_lines(pending.evidence)]
    body.append("")
    body += [
        f"[bold]{kind}[/]: {escape(meaning)}" for kind, meaning in pending.response_types.items()
    ]
    where = shlex.quote(str(workspace))
    body += [
        "",
        f"answer with: agentx gate answer --workspace {where} accept",
        f'         or: agentx gate answer --workspace {where} response --reason "why"',
    ]
    err.print(
        Panel("\n".join(body), title=f"{pending.run_id} waits at gate {pending.gate}"),
        highlight=False,
    )


def ask_at_terminal(pending: PendingGate, workspace: Path) -> dict[str, Any]:
    """Ask the person at the terminal; re-ask until the answer has what its type needs."""
    show_gate(pending, workspace)
    kind = Prompt.ask("answer", choices=list(pending.response_types), console=err)
    answer: dict[str, Any] = {"type": kind}
    if kind == "response":
        answer["args"] = Prompt.ask("reason", console=err) or kind
    elif kind == "edit":
        while True:
            raw = Prompt.ask('new params as JSON, e.g. {"dim": 16}', console=err)
            try:
                params = json.loads(raw)
            except json.JSONDecodeError as error:
                err.print(f"[red]not JSON: {escape(str(error))}[/]")
                continue
            answer["args"] = {"action": pending.gate, "args": {"params": params}}
            break
    return answer


def interactive() -> bool:
    """True when a person can be asked (both stdin and stderr are terminals)."""
    return sys.stdin.isatty() and err.is_terminal


def gate_show(
    workspace: Annotated[Path | None, typer.Option(help="The workspace of the run.")] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the gate as JSON.")] = False,
) -> None:
    """Show the gate the workspace's last run waits at (exit 3 when one waits, 0 if none)."""
    from agentx.runner import pending_gate_of
    from agentx.settings import load_settings

    try:
        settings = load_settings(settings_file, override_label="flag", workspace=workspace)
        pending = pending_gate_of(settings)
    except USER_ERRORS as error:
        fail(error)
    if as_json:
        sys.stdout.write(json.dumps(pending.model_dump() if pending else None, indent=2) + "\n")
    elif pending is None:
        out.print(f"no run in {settings.workspace} waits at a gate", highlight=False)
    else:
        show_gate(pending, settings.workspace)
    if pending is not None:
        raise typer.Exit(code=EXIT_WAITING)


def gate_answer(
    answer: AnswerType,
    reason: Annotated[str | None, typer.Option(help="The reason (for response).")] = None,
    params: Annotated[
        str | None, typer.Option(help="New parameters as JSON (for edit at admission).")
    ] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who answers (recorded).")] = None,
    workspace: Annotated[Path | None, typer.Option(help="The workspace of the run.")] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Answer the gate the last run waits at and continue the run (like
    `agentx run --resume --answer ...`)."""
    from agentx.cli.app import run

    run(
        workspace=workspace, settings_file=settings_file, resume=True, as_json=as_json,
        answer=answer, reason=reason, params=params, reviewer=reviewer,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``gate show`` and ``gate answer`` to the root command."""
    gate_app.command("show")(gate_show)
    gate_app.command("answer")(gate_answer)
    app.add_typer(gate_app, name="gate")
