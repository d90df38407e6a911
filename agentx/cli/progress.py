"""What a person watching a terminal sees while a command works.

Why: an experiment takes 10-15 s of code changes and tests, harness evolution minutes;
without a live line the CLI looked hung. The display goes to stderr and only when
stderr is a terminal, so ``--json`` output and logs piped to files stay clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class RunProgress:
    """Two live lines: ``experiment i/N`` with the run's elapsed time, and the current
    node with its own elapsed time. A context manager; a no-op off a terminal."""

    def __init__(self, console: Console, total: int) -> None:
        self.total = total
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._run: TaskID | None = None
        self._node: TaskID | None = None

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        self._run = self._progress.add_task(f"experiment 1/{self.total}", total=None)
        self._node = self._progress.add_task("  starting", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hide the live lines while the person is asked something (a gate's prompt)."""
        self._progress.stop()
        try:
            yield
        finally:
            self._progress.start()

    def node(self, name: str, iteration: int) -> None:
        """A node started in experiment ``iteration`` (0-based)."""
        if self._run is None or self._node is None:
            return
        current = min(iteration + 1, self.total)
        self._progress.update(self._run, description=f"experiment {current}/{self.total}")
        self._progress.reset(self._node, description=f"  {name.replace('_', ' ')}")


@contextmanager
def working(console: Console, message: str) -> Iterator[None]:
    """A spinner with ``message`` while a slow step runs (nothing off a terminal)."""
    if not console.is_terminal:
        yield
        return
    with console.status(message):
        yield
