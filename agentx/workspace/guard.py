"""Run a Python module under resource limits and an audit hook that names stray effects.

Used as ``python -P -s -m agentx.workspace.guard [options] -- (-m module | script) [args]``
by :func:`agentx.workspace.process.confined_command`, inside the OS sandbox. Options:

- ``--allow DIR`` (repeatable): directories writes may go to (plus the temp dir);
- ``--report-fd N``: a pipe the guard writes every violation to, so a violation is
  recorded even when the code under test catches the ``PermissionError`` (a pipe, not a
  file: code that bypasses the hook cannot erase what was written); ``--report FILE``
  appends to a file instead (kept for callers that start the guard themselves; a file
  the code can reach, it can also truncate);
- ``--memory-mb N`` / ``--cpu-s N`` / ``--file-mb N``: address-space, CPU-time and
  file-size limits, set here rather than in a ``preexec_fn`` because ``preexec_fn`` is
  unsafe in a threaded parent.

This is the *second* layer. The boundary is the OS sandbox (bubblewrap, see
:mod:`agentx.workspace.isolation`): audit hooks are not a security boundary (PEP 578;
``ctypes``, raw spawn functions and directory-fd relative opens raise no event it can
judge). What the hook adds is a clear message: a refused socket, process or write is
reported as one ``agentx-guard:`` line naming what was tried, where the kernel would
only say "Operation not permitted" or "Read-only file system".

The interpreter is started with ``-P`` (the working directory is not put on
``sys.path`` before the guard runs, so a worktree file named like a standard module
cannot replace one the guard imports); the guard puts it there itself, after the hook
and the limits are in place, so the target's code imports as under ``python -m``.
"""

from __future__ import annotations

import os
import resource
import runpy
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

GUARD_MARK = "agentx-guard"
GUARD_STARTED = f"{GUARD_MARK}-started"  # first report line: the sandbox started the guard
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_NETWORK_EVENTS = frozenset(
    {"socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg"}
)
# Binding to the loopback interface reaches no other machine (urllib3, for one, probes
# IPv6 support that way on import); every other bind is refused.
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
    }
)
# Events whose first argument is a path that gets created, changed or removed, with the
# position of their ``dir_fd`` argument (relative paths are relative to that directory).
_PATH_EVENTS: dict[str, int | None] = {
    "os.remove": 1,
    "os.rmdir": 1,
    "os.mkdir": 2,
    "shutil.rmtree": 1,
    "os.truncate": None,
    "os.chmod": 2,
    "os.chown": 3,
    "os.utime": 3,
}
# Events with (source, destination, ...): both ends must stay inside.
_TWO_PATH_EVENTS = frozenset({"os.rename", "os.link"})
_ALWAYS_WRITABLE = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})
MAX_REPORTED = 100  # violations written to the report pipe (the parent reads it at the end)


class GuardViolation(PermissionError):
    """Code broke a sandbox rule; the message starts with :data:`GUARD_MARK`."""


def _resolve(path: object, dir_fd: object = None) -> Path | None:
    """Absolute path of an audited path argument; None for open descriptors."""
    if isinstance(path, int):
        return None  # a file descriptor: it was checked when it was opened
    text = os.fsdecode(path)  # type: ignore[arg-type]
    if not os.path.isabs(text) and isinstance(dir_fd, int) and dir_fd >= 0:
        try:
            text = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        except OSError:
            pass  # no /proc: judge the path as relative to the working directory
    return Path(text).resolve()


def _inside(path: object, roots: list[Path], dir_fd: object = None) -> bool:
    if isinstance(path, str | bytes) and os.fsdecode(path) in _ALWAYS_WRITABLE:
        return True
    resolved = _resolve(path, dir_fd)
    if resolved is None:
        return True
    return any(resolved == root or root in resolved.parents for root in roots)


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str):
        return any(ch in mode for ch in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def make_hook(
    allowed: list[Path], report: Callable[[str], None] | None = None
) -> Callable[[str, tuple], None]:
    """The audit hook: writes only under ``allowed``; no network, processes or rlimits.

    ``report`` receives each violation message before the ``PermissionError`` is raised.
    """
    roots = [Path(p).resolve() for p in allowed]
    own_pid = os.getpid()

    def refuse(message: str) -> None:
        text = f"{GUARD_MARK}: {message}"
        if report is not None:
            report(text)
        raise GuardViolation(text)

    def hook(event: str, args: tuple) -> None:
        if event in _NETWORK_EVENTS:
            refuse(f"network access is not allowed ({event})")
        elif event == "socket.bind":
            address = args[1] if len(args) > 1 else None
            if isinstance(address, str | bytes):  # a Unix socket: a file like any other
                if not _inside(address, roots):
                    refuse(f"socket file outside the workspace: {os.fsdecode(address)}")
            elif not (isinstance(address, tuple) and address and address[0] in _LOOPBACK):
                refuse(f"network access is not allowed (socket.bind to {address!r})")
        elif event == "open":
            if len(args) >= 3 and _is_write(args[1], args[2]) and not _inside(args[0], roots):
                refuse(f"write outside the workspace: {os.fsdecode(args[0])}")
        elif event in _PATH_EVENTS:
            index = _PATH_EVENTS[event]
            dir_fd = args[index] if index is not None and len(args) > index else None
            if args and not _inside(args[0], roots, dir_fd):
                refuse(f"{event} outside the workspace: {os.fsdecode(args[0])}")
        elif event in _TWO_PATH_EVENTS:
            for path in args[:2]:
                if not _inside(path, roots):
                    refuse(f"{event} outside the workspace: {os.fsdecode(path)}")
        elif event == "os.symlink":
            if not _inside(args[1], roots, args[2] if len(args) > 2 else None):
                refuse(f"os.symlink outside the workspace: {os.fsdecode(args[1])}")
        elif event in _PROCESS_EVENTS:
            refuse(f"starting processes is not allowed ({event})")
        elif event in ("os.kill", "os.killpg") and args and args[0] not in (own_pid, 0):
            refuse(f"signalling other processes is not allowed ({event})")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            refuse(f"changing resource limits is not allowed ({event})")

    return hook


def _set_limits(memory_mb: int | None, cpu_s: int | None, file_mb: int | None = None) -> None:
    def lower(kind: int, soft: int, hard: int) -> None:
        _, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(kind, (soft, hard))

    if memory_mb is not None:
        limit = memory_mb * 1024 * 1024
        lower(resource.RLIMIT_AS, limit, limit)
    if cpu_s is not None:
        lower(resource.RLIMIT_CPU, cpu_s, cpu_s + 5)
    if file_mb is not None:
        size = file_mb * 1024 * 1024
        lower(resource.RLIMIT_FSIZE, size, size)


def install(
    allowed: list[Path],
    report_fd: int | None = None,
    memory_mb: int | None = None,
    cpu_s: int | None = None,
    file_mb: int | None = None,
) -> None:
    """Set the limits and install the hook; writes only under ``allowed`` and the temp dir."""
    _set_limits(memory_mb, cpu_s, file_mb)
    report: Callable[[str], None] | None = None
    if report_fd is not None:
        os.write(report_fd, f"{GUARD_STARTED}\n".encode())
        written = 0

        def report(message: str) -> None:
            nonlocal written
            if written < MAX_REPORTED:  # a full pipe would block the code until its timeout
                written += 1
                os.write(report_fd, (message.replace("\n", " ")[:500] + "\n").encode())

    roots = [*allowed, Path(tempfile.gettempdir())]
    sys.addaudithook(make_hook(roots, report))


_OPTIONS = ("--allow", "--report", "--report-fd", "--memory-mb", "--cpu-s", "--file-mb")


def main(argv: list[str]) -> None:
    """Parse the options, install the guard, run the target module or script."""
    allowed: list[Path] = []
    numbers: dict[str, int] = {}
    report_file: Path | None = None
    while argv and argv[0] in _OPTIONS:
        if len(argv) < 2:
            raise SystemExit(f"guard: {argv[0]} needs a value")
        option, value, argv = argv[0], argv[1], argv[2:]
        if option == "--allow":
            allowed.append(Path(value))
        elif option == "--report":
            report_file = Path(value)
        else:
            numbers[option] = int(value)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        raise SystemExit("usage: guard [--allow DIR]... -- (-m module | script) [args]")
    report_fd = numbers.get("--report-fd")
    if report_fd is None and report_file is not None:
        # Opened before the hook exists; os.write on the descriptor is not audited.
        report_fd = os.open(report_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    install(
        allowed or [Path.cwd()],
        report_fd,
        numbers.get("--memory-mb"),
        numbers.get("--cpu-s"),
        numbers.get("--file-mb"),
    )
    sys.path.insert(0, os.getcwd())  # as ``python -m`` would have, now that the hook is in
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
