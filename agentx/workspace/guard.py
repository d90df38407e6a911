"""Run a Python module under an audit hook that forbids network and stray writes.

Used as ``python -m agentx.workspace.guard --allow DIR ... -- -m module args`` (or a
script path). Audit hooks cannot be removed once installed, so code under test cannot
switch the guard off. A violation raises ``PermissionError`` inside the child, which
then exits non-zero with the reason in its stderr.
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
from pathlib import Path

GUARD_MARK = "agentx-guard"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto"}
_PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"}


def _inside(path: str | bytes | int, roots: list[Path]) -> bool:
    if isinstance(path, int):  # file descriptors are already open
        return True
    text = os.fsdecode(path)
    if text in {"/dev/null", "/dev/stdout", "/dev/stderr"}:
        return True
    resolved = Path(text).resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(ch in mode for ch in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def install(allowed: list[Path]) -> None:
    """Install the audit hook; writes only under ``allowed`` (and the temp dir)."""
    roots = [p.resolve() for p in allowed] + [Path(tempfile.gettempdir()).resolve()]

    def hook(event: str, args: tuple) -> None:
        if event in _NETWORK_EVENTS:
            raise PermissionError(f"{GUARD_MARK}: network access is not allowed ({event})")
        if event == "open" and len(args) >= 3 and _is_write(args[1], args[2]):
            if not _inside(args[0], roots):
                raise PermissionError(f"{GUARD_MARK}: write outside the workspace: {args[0]}")
        elif event in _PATH_EVENTS and args and not _inside(args[0], roots):
            raise PermissionError(f"{GUARD_MARK}: {event} outside the workspace: {args[0]}")
        elif event == "subprocess.Popen" or event == "os.system" or event == "os.exec":
            raise PermissionError(f"{GUARD_MARK}: starting processes is not allowed ({event})")

    sys.addaudithook(hook)


def main(argv: list[str]) -> None:
    """Parse ``--allow DIR`` options, install the guard, run the target."""
    allowed: list[Path] = []
    while argv and argv[0] == "--allow":
        allowed.append(Path(argv[1]))
        argv = argv[2:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: guard [--allow DIR]... -- (-m module | script) [args]")
    install(allowed or [Path.cwd()])
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
