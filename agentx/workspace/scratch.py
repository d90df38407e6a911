"""Scratch directories that a killed process does not leave behind for good.

A confined run needs a real directory (bubblewrap binds it as the run's only writable
temporary space), removed when the run is closed. A process killed with SIGKILL (or by the
kernel's OOM killer) runs no clean-up, so its directories stay in the temporary directory;
a long-lived worker machine collects hundreds of them. Each directory therefore records its
owner (process id and start time, which together name one process even after the id is
reused), and the first scratch directory a process makes sweeps away those whose owner is
gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

OWNER_FILE = ".owner"
_swept: set[tuple[str, str]] = set()  # (directory, prefix) this process has swept
_sweep_lock = threading.Lock()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5)


def _owner_stamp() -> str:
    pid = os.getpid()
    return f"{pid} {_start_time(pid) or '?'}"


def _owner_alive(stamp: str) -> bool:
    pid_text, _, started = stamp.partition(" ")
    if not pid_text.isdigit():
        return True  # not ours to judge
    return _start_time(int(pid_text)) == started


def sweep_orphans(prefix: str, directory: Path | None = None) -> int:
    """Remove ``prefix*`` scratch directories whose owner process is gone; returns how many.

    Directories without an owner record (made by older versions, or being made right now)
    are left alone.
    """
    root = Path(directory or tempfile.gettempdir())
    removed = 0
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return 0
    for path in candidates:
        try:
            stamp = (path / OWNER_FILE).read_text()
        except OSError:
            continue
        if not _owner_alive(stamp):
            shutil.rmtree(path, ignore_errors=True)
            removed += not path.exists()
    return removed


def new_scratch_dir(prefix: str) -> Path:
    """A fresh directory under the temporary directory, stamped with this process as its
    owner; the first call per prefix also sweeps away directories of dead owners."""
    root = tempfile.gettempdir()
    with _sweep_lock:
        first = (root, prefix) not in _swept
        _swept.add((root, prefix))
    if first:
        sweep_orphans(prefix, Path(root))
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / OWNER_FILE).write_text(_owner_stamp())
    return path
