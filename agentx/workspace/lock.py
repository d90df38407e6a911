"""One writer per workspace: an advisory file lock held for a whole run (or a server's life).

Why: two runs on one workspace merge into the same sandbox repository, share one
checkpoint database and number their runs from the same ``runs.json``; the result was
every merge applied twice and a leftover worktree. The CLI, the LangServe app,
embedded :func:`agentx.run_loop` and the Studio / LangGraph Server graphs (``graphs/``,
from their first run or build until the server stops: :func:`hold_for_process`) all take
this lock, so a second writer is refused at once with one line naming the process that
holds it.

``fcntl.flock`` is used rather than a lock-file-exists protocol because the kernel
drops the lock when its holder dies (kill -9 included): a crashed run never leaves a
stale lock behind that a person would have to delete.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ValidationError

LOCK_NAME = ".lock"


class WorkspaceBusy(RuntimeError):
    """Another process holds the workspace; the message names its pid and command."""


class LockHolder(BaseModel):
    """Who holds a workspace (written into the lock file by the holder)."""

    pid: int
    command: str


def _holder(path: Path) -> LockHolder | None:
    try:
        return LockHolder.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None


class WorkspaceLock:
    """Exclusive, non-blocking lock on ``WORKSPACE/.lock``; a context manager.

    Args:
        workspace: the workspace directory (must exist and be writable).
        command: what the holder is doing, shown to a refused second writer.

    Raises:
        WorkspaceBusy: on enter, when another process (or another lock in this one) holds it.
    """

    def __init__(self, workspace: Path, command: str | None = None) -> None:
        self.path = Path(workspace) / LOCK_NAME
        self.command = command or " ".join(
            [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else ["python"]
        )
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record this process as its holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(self.path)
            who = f"pid {holder.pid} ({holder.command})" if holder else "another process"
            raise WorkspaceBusy(
                f"workspace {self.path.parent} is in use by {who}; wait for it to finish "
                "or use another --workspace"
            ) from None
        record = LockHolder(pid=os.getpid(), command=self.command).model_dump_json()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays; an empty holder means nobody)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holder_of(workspace: Path) -> LockHolder | None:
    """The recorded holder of ``workspace``'s lock, if one is recorded (for ``status``)."""
    return _holder(Path(workspace) / LOCK_NAME)


_PROCESS_HOLDS: dict[Path, WorkspaceLock] = {}
_PROCESS_HOLDS_GUARD = threading.Lock()


def hold_for_process(workspace: Path, command: str) -> None:
    """Take ``workspace``'s lock until this process exits; a no-op when this process
    already holds it this way.

    For servers whose graphs build resources per run context (``langgraph dev``,
    LangGraph Server): every run they serve writes to the workspace, and runs come and go
    with no single place to take and drop the lock around. The kernel releases it when
    the server stops (or dies).

    Raises:
        WorkspaceBusy: another process (a CLI run, ``agentx serve``) holds it.
    """
    key = Path(workspace).resolve()
    with _PROCESS_HOLDS_GUARD:
        if key in _PROCESS_HOLDS:
            return
        key.mkdir(parents=True, exist_ok=True)
        lock = WorkspaceLock(key, command=command)
        lock.acquire()
        _PROCESS_HOLDS[key] = lock
