"""What every ``agentx`` command shares: consoles, the user errors, the one-line failure.

A user error (bad setting, unknown world, a workspace with no runs...) is printed as
one red line that says what to do, and the command exits with code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from agentx.agents.brainstorm.intake import GoalError
from agentx.graph.postgres import CheckpointerError
from agentx.harness import HarnessError
from agentx.memory.store import MemoryStoreError
from agentx.research.catalog import CatalogError
from agentx.runner import RunError
from agentx.sandbox.world import WorldError
from agentx.settings import SettingsError
from agentx.target.contract import TargetError
from agentx.tracking import TrackingError
from agentx.workspace.git import GitError
from agentx.workspace.isolation import IsolationUnavailable
from agentx.workspace.lock import WorkspaceBusy
from agentx.workspace.records import WorkspaceRecordError

err = Console(stderr=True)
out = Console()


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says how to fix it."""


USER_ERRORS: tuple[type[Exception], ...] = (
    SettingsError,
    WorldError,
    GoalError,
    RunError,
    CatalogError,
    HarnessError,
    MemoryStoreError,
    TargetError,
    GitError,
    IsolationUnavailable,
    TrackingError,
    WorkspaceBusy,
    WorkspaceRecordError,
    CheckpointerError,
    CommandError,
)


def fail(error: Exception | str) -> NoReturn:
    """Print one error line and exit with code 2."""
    err.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)
