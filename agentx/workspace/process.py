"""Confined subprocesses: an OS sandbox, resource limits, a clean environment.

Every piece of target or agent-written code runs through :func:`run_confined` (a run to
completion) or :func:`start_confined` (a long-running process with pipes, e.g. a
closed-loop server), both built on :func:`confined_command`. Three layers:

1. the OS boundary, bubblewrap (:mod:`agentx.workspace.isolation`): only the working
   directory and the listed directories are writable, nothing of the host but the
   system, the interpreter and AgentX's package is visible, no network, one process;
2. resource limits set inside the sandbox by the guard before any target code runs:
   address space, CPU time, file size (:mod:`agentx.workspace.guard`);
3. the guard's audit hook, which names what the code tried (a socket, a process, a
   write outside) in one ``agentx-guard:`` line, so the failure is explained.

Each run gets a private, empty scratch directory (also its ``HOME`` and ``TMPDIR``) that
is deleted afterwards, and an environment of its own (nothing of the parent's but the
locale). How a run ended is classified as an :class:`Outcome`; abnormal endings append
one ``agentx-sandbox: ...`` line to stderr, so the evidence survives into any error text
a target builds from the output (see :func:`classify_text`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from agentx.workspace import isolation, seccomp
from agentx.workspace import scratch as scratch_dirs
from agentx.workspace.guard import GUARD_MARK, GUARD_STARTED

SANDBOX_MARK = "agentx-sandbox"
DEFAULT_FILE_MB = 1024
_OOM = re.compile(r"\b\w*MemoryError\b|Cannot allocate memory|Unable to allocate")
# Python ignores SIGXFSZ: a write past RLIMIT_FSIZE fails with EFBIG instead.
_TOO_LARGE = re.compile(r"\[Errno 27\] File too large")
_KEPT_ENV = ("LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# bubblewrap reports a child killed by signal N as exit status 128 + N.
_SIGNALS = frozenset(
    {
        signal.SIGABRT,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGKILL,
        signal.SIGSEGV,
        signal.SIGTERM,
        signal.SIGXCPU,
        signal.SIGXFSZ,
    }
)


class Outcome(StrEnum):
    """How a confined run ended, from the most to the least telling."""

    OK = "ok"
    FAILED = "failed"  # exited non-zero on its own: an ordinary error
    VIOLATION = "violation"  # the guard refused network, a process, or a write outside
    SANDBOX_ERROR = "sandbox_error"  # the OS sandbox itself failed to start the code
    OUT_OF_MEMORY = "out_of_memory"  # the address-space limit was hit
    TIMEOUT = "timeout"  # the wall clock ran out; the sandbox was killed
    CPU_LIMIT = "cpu_limit"  # the CPU-time limit ran out
    FILE_LIMIT = "file_limit"  # a file grew beyond the file-size limit
    CRASHED = "crashed"  # killed by a signal (segfault, abort, external kill)


#: Outcomes a retry of the same code may not repeat: a crash (an external kill, flaky
#: native code) and a sandbox that failed to start. A timeout or the CPU limit is the
#: code's own doing: the same code loops again, so it is deterministic (no blind retry).
TRANSIENT_OUTCOMES = frozenset({Outcome.CRASHED, Outcome.SANDBOX_ERROR})

_DESCRIPTIONS = {
    "sandbox violation": Outcome.VIOLATION,
    "the sandbox failed to start": Outcome.SANDBOX_ERROR,
    "out of memory": Outcome.OUT_OF_MEMORY,
    "timed out": Outcome.TIMEOUT,
    "CPU time limit": Outcome.CPU_LIMIT,
    "file size limit": Outcome.FILE_LIMIT,
    "crashed": Outcome.CRASHED,
}


@dataclass(frozen=True)
class ProcessResult:
    """Outcome of a confined run, with the limits it ran under."""

    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    violations: tuple[str, ...] = ()
    timeout_s: float | None = None
    memory_mb: int | None = None
    cpu_s: int | None = None
    file_mb: int | None = None
    isolated: bool = True  # ran inside the OS sandbox (False: the guard alone)
    sandbox_error: str | None = None  # why the OS sandbox did not start the code

    @property
    def ok(self) -> bool:
        """True when the process exited 0 in time and broke no sandbox rule."""
        return (
            self.returncode == 0
            and not self.timed_out
            and not self.violation
            and not self.sandbox_error
        )

    @property
    def violation(self) -> str | None:
        """The guard's message when the code broke a sandbox rule (even if it caught it)."""
        for line in (*self.violations, *self.stderr.splitlines()):
            if f"{GUARD_MARK}:" in line:
                return line.split(f"{GUARD_MARK}:", 1)[-1].strip()
        return None

    @property
    def out_of_memory(self) -> bool:
        """True when the memory limit stopped the process."""
        return bool(_OOM.search(self.stderr) or _OOM.search(self.stdout))

    @property
    def outcome(self) -> Outcome:
        """The single most telling classification of how the run ended."""
        if self.violation:
            return Outcome.VIOLATION
        if self.sandbox_error:
            return Outcome.SANDBOX_ERROR
        if self.returncode != 0 and self.out_of_memory:
            return Outcome.OUT_OF_MEMORY
        if self.timed_out:
            return Outcome.TIMEOUT
        if self.returncode == -signal.SIGXCPU or (
            self.cpu_s is not None and self.returncode == -signal.SIGKILL
        ):
            return Outcome.CPU_LIMIT
        if self.returncode == -signal.SIGXFSZ or (
            self.returncode != 0 and _TOO_LARGE.search(self.stderr)
        ):
            return Outcome.FILE_LIMIT
        if self.returncode < 0:
            return Outcome.CRASHED
        return Outcome.OK if self.returncode == 0 else Outcome.FAILED

    @property
    def transient(self) -> bool:
        """True when retrying the same code may pass (a crash, a sandbox that did not start)."""
        return self.outcome in TRANSIENT_OUTCOMES

    def describe(self) -> str:
        """One line saying how the run ended, naming the limit or rule involved."""
        outcome = self.outcome
        if outcome is Outcome.VIOLATION:
            return f"sandbox violation: {self.violation}"
        if outcome is Outcome.SANDBOX_ERROR:
            return f"the sandbox failed to start: {self.sandbox_error}"
        if outcome is Outcome.OUT_OF_MEMORY:
            limit = f"the {self.memory_mb} MB" if self.memory_mb else "the"
            return f"out of memory: {limit} memory limit was exceeded"
        if outcome is Outcome.TIMEOUT:
            after = f" after {self.timeout_s:g} s" if self.timeout_s else ""
            return f"timed out{after} (wall clock); the sandbox was killed"
        if outcome is Outcome.CPU_LIMIT:
            return f"CPU time limit of {self.cpu_s} s exceeded"
        if outcome is Outcome.FILE_LIMIT:
            return f"file size limit of {self.file_mb} MB exceeded"
        if outcome is Outcome.CRASHED:
            return f"crashed: killed by signal {signal_name(-self.returncode)}"
        return "exited normally" if outcome is Outcome.OK else f"exited with {self.returncode}"

    def tail(self, lines: int = 30) -> str:
        """The last lines of the output (stdout, then stderr), for feedback and records."""
        text = "\n".join(part.strip() for part in (self.stdout, self.stderr) if part.strip())
        return "\n".join(text.splitlines()[-lines:])


def classify_text(text: str) -> Outcome | None:
    """The outcome evidenced in an error text built from a confined run's output.

    Targets turn :class:`ProcessResult` output into check details; this recovers the
    classification from them (the guard's and the sandbox's marker lines, or a
    ``MemoryError``). None when the text shows no sandbox stop.
    """
    if f"{GUARD_MARK}:" in text:
        return Outcome.VIOLATION
    found: list[Outcome] = []
    for line in text.splitlines():
        if f"{SANDBOX_MARK}:" in line:
            message = line.split(f"{SANDBOX_MARK}:", 1)[1].strip()
            found += [kind for prefix, kind in _DESCRIPTIONS.items() if message.startswith(prefix)]
    if Outcome.VIOLATION in found:
        return Outcome.VIOLATION
    if Outcome.OUT_OF_MEMORY in found or _OOM.search(text):
        return Outcome.OUT_OF_MEMORY
    order = [
        Outcome.TIMEOUT,
        Outcome.CPU_LIMIT,
        Outcome.FILE_LIMIT,
        Outcome.SANDBOX_ERROR,
        Outcome.CRASHED,
    ]
    return next((kind for kind in order if kind in found), None)


def signal_name(number: int) -> str:
    """The name of a signal number (its number when unknown)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _clean_env(scratch: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NO_PROXY": "*",
            # pytest plugins installed next to AgentX are AgentX's, not the target's: a
            # target names the plugins it needs (-p, pytest_plugins); ``env`` can undo this.
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class ConfinedCommand:
    """A confined process ready to start: what to pass to :class:`subprocess.Popen`.

    Start it with ``Popen(c.argv, cwd=c.cwd, env=c.env, pass_fds=c.pass_fds,
    start_new_session=True, ...)``, call :meth:`started` right after, and :meth:`close`
    once the process has ended (``start_confined`` does all three).
    """

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    scratch: Path  # private, empty; HOME and TMPDIR; deleted by close()
    isolated: bool  # inside bubblewrap (False: the guard alone, trusted code only)
    pass_fds: tuple[int, ...] = ()
    _base: Path | None = None
    _report_fd: int | None = None  # read end of the guard's report pipe
    _fds: list[int] = field(default_factory=list)  # the child's ends, closed once started
    _report: tuple[str, ...] | None = None

    def started(self) -> None:
        """Close the parent's copies of the descriptors handed to the child."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def _lines(self) -> tuple[str, ...]:
        if self._report is None:
            self._report = tuple(_drain(self._report_fd).splitlines())
            self._report_fd = None
        return self._report

    def violations(self) -> tuple[str, ...]:
        """Every violation the guard recorded, even those the code caught.

        Read once the process has ended (the pipe is at its end then).
        """
        return tuple(line for line in self._lines() if line != GUARD_STARTED)

    def sandbox_error(self, stderr: str) -> str | None:
        """Why the sandbox did not start the code; None when the code started.

        Read after the process ended. The guard reports that it started before any code
        under test runs, so its absence means bubblewrap (or the interpreter) failed,
        whatever the exit status says; code cannot fake it away.
        """
        if GUARD_STARTED in self._lines():
            return None
        lines = [line for line in stderr.splitlines() if line.strip()]
        bwrap = [line for line in lines if line.startswith("bwrap:")]
        return (bwrap or lines or ["the sandbox exited before starting the code"])[-1][:300]

    def close(self) -> None:
        """Release the descriptors and delete the scratch directory."""
        self.started()
        if self._report_fd is not None:
            os.close(self._report_fd)
            self._report_fd = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)


def confined_command(
    python_args: Sequence[str],
    cwd: Path,
    *,
    memory_mb: int = 3072,
    cpu_s: int | None = None,
    file_mb: int = DEFAULT_FILE_MB,
    allow_write: Sequence[Path] = (),
    readable: Sequence[Path] = (),
    cwd_writable: bool = True,
    env: dict[str, str] | None = None,
    policy: isolation.IsolationPolicy | None = None,
) -> ConfinedCommand:
    """Build the command that runs ``python <python_args>`` confined to ``cwd``.

    Args:
        python_args: arguments after the interpreter, e.g. ``["-m", "pytest", "-q"]``.
        cwd: the working directory; with ``allow_write``, the only writable places.
        memory_mb: address-space limit.
        cpu_s: CPU-seconds limit (None: only the caller's wall clock).
        file_mb: largest file the code may write.
        allow_write: further writable directories (each must exist; give each run its
            own, fresh one: a shared one lets a run alter what another run wrote).
        readable: host paths the code may read (e.g. a data directory), bound read-only;
            nothing else of the host is visible.
        cwd_writable: False makes the working directory read-only too, for runs whose
            only output goes to ``allow_write`` (an arm run of the baseline repository
            must not be able to change it).
        env: extra environment variables (the parent's environment is not inherited).
        policy: what to do without bubblewrap (default: the process-wide policy).

    Raises:
        ValueError: ``cwd`` or a writable directory is not a directory, or a limit is not
            positive.
        IsolationUnavailable: bubblewrap cannot start and the policy refuses to go on.
    """
    cwd = Path(cwd).resolve()
    if not cwd.is_dir():
        raise ValueError(f"working directory does not exist: {cwd}")
    writable = [Path(p).resolve() for p in allow_write]
    missing = [str(p) for p in writable if not p.is_dir()]
    if missing:
        raise ValueError(f"writable directory does not exist: {', '.join(missing)}")
    visible = [Path(p).resolve() for p in readable]
    missing = [str(p) for p in visible if not p.exists()]
    if missing:
        raise ValueError(f"readable path does not exist: {', '.join(missing)}")
    if memory_mb <= 0 or file_mb <= 0 or (cpu_s is not None and cpu_s <= 0):
        raise ValueError("memory_mb, file_mb and cpu_s must be positive")
    found = isolation.require(policy)
    base = scratch_dirs.new_scratch_dir("agentx-run-")  # a killed owner's is swept later
    scratch = base / "tmp"
    scratch.mkdir()
    report_read, report_write = os.pipe()
    guard = [sys.executable, "-P", "-s", "-m", "agentx.workspace.guard"]
    guard += ["--report-fd", str(report_write)]
    for root in [*([cwd] if cwd_writable else []), *writable, scratch]:
        guard += ["--allow", str(root)]
    guard += ["--memory-mb", str(memory_mb), "--file-mb", str(file_mb)]
    if cpu_s is not None:
        guard += ["--cpu-s", str(cpu_s)]
    guard += ["--", *python_args]
    command = ConfinedCommand(
        argv=guard,
        env=_clean_env(scratch, env),
        cwd=cwd,
        scratch=scratch,
        isolated=found.available,
        pass_fds=(report_write,),
        _base=base,
        _report_fd=report_read,
        _fds=[report_write],
    )
    if not found.available or found.bwrap is None:
        return command  # trusted code, allowed to run under the guard alone
    filter_path = base / "seccomp.bpf"
    filter_path.write_bytes(seccomp.no_new_processes_filter())
    filter_fd = os.open(filter_path, os.O_RDONLY)
    command.pass_fds = (*command.pass_fds, filter_fd)
    command._fds.append(filter_fd)
    protected = [path / ".git" for path in (cwd, *writable)]
    prefix = isolation.bwrap_argv(
        found.bwrap,
        cwd,
        [*writable, scratch],
        protected,
        readable=visible,
        cwd_writable=cwd_writable,
        seccomp_fd=filter_fd,
    )
    command.argv = [*prefix, *guard]
    return command


def _drain(fd: int | None) -> str:
    """Everything left in a pipe whose writers are gone; closes it."""
    if fd is None:
        return ""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def kill_group(process: subprocess.Popen[Any]) -> None:
    """Kill the process group; inside bubblewrap everything else dies with its parent."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


@contextmanager
def start_confined(
    python_args: Sequence[str],
    cwd: Path,
    *,
    stdin: int | None = subprocess.PIPE,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    text: bool = True,
    **limits: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """Start ``python <python_args>`` confined, for a long-running process with pipes.

    The same confinement as :func:`run_confined` (``limits`` are the keyword arguments
    of :func:`confined_command`); on leaving the block the process, if still running,
    is killed and reaped and the scratch directory deleted. Without a wall clock it is
    the caller's job to bound how long it waits on the pipes. Example::

        with start_confined(["-m", "server"], worktree, memory_mb=1024) as proc:
            proc.stdin.write(request + "\n"); proc.stdin.flush()
            reply = proc.stdout.readline()

    Raises:
        IsolationUnavailable: see :func:`confined_command`.
    """
    command = confined_command(python_args, cwd, **limits)
    try:
        process = subprocess.Popen(
            command.argv,
            cwd=command.cwd,
            env=command.env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
            errors="replace" if text else None,
            pass_fds=command.pass_fds,
            start_new_session=True,
        )
        command.started()
        try:
            yield process
        finally:
            if process.poll() is None:
                kill_group(process)
            process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
    finally:
        command.close()


def run_confined(
    python_args: Sequence[str],
    cwd: Path,
    *,
    timeout_s: float = 300.0,
    memory_mb: int = 3072,
    cpu_s: int | None = None,
    file_mb: int = DEFAULT_FILE_MB,
    allow_write: Sequence[Path] | None = None,
    readable: Sequence[Path] = (),
    cwd_writable: bool = True,
    env: dict[str, str] | None = None,
    policy: isolation.IsolationPolicy | None = None,
) -> ProcessResult:
    """Run ``python <python_args>`` confined to ``cwd`` until it ends or the clock runs out.

    Args:
        python_args: arguments after the interpreter, e.g. ``["-m", "pytest", "-q"]``.
        cwd: the working directory, writable.
        timeout_s: wall-clock limit; the sandbox is killed after it.
        memory_mb, cpu_s, file_mb, allow_write, readable, cwd_writable, env, policy: see
            :func:`confined_command`.

    Raises:
        ValueError: ``cwd`` is not a directory or a limit is not positive.
        IsolationUnavailable: bubblewrap cannot start and the policy refuses to go on.
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s, memory_mb and cpu_s must be positive")
    command = confined_command(
        python_args,
        cwd,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
        file_mb=file_mb,
        allow_write=allow_write or (),
        readable=readable,
        cwd_writable=cwd_writable,
        env=env,
        policy=policy,
    )
    started = time.monotonic()
    timed_out = False
    try:
        process = subprocess.Popen(
            command.argv,
            cwd=command.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=command.env,
            pass_fds=command.pass_fds,
            start_new_session=True,
        )
        command.started()
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(process)
            stdout, stderr = process.communicate()
        finally:
            if process.poll() is None:  # interrupted while waiting: leave nothing running
                kill_group(process)
                process.wait()
        violations = command.violations()
        sandbox_error = command.sandbox_error(stderr) if not timed_out else None
    finally:
        command.close()
    returncode = process.returncode
    if command.isolated and returncode > 128 and (returncode - 128) in _SIGNALS:
        returncode = 128 - returncode  # bubblewrap's 128 + N for a child killed by signal N
    result = ProcessResult(
        returncode=returncode if not timed_out else -signal.SIGKILL,
        stdout=stdout,
        stderr=stderr,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        violations=violations,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
        file_mb=file_mb,
        isolated=command.isolated,
        sandbox_error=sandbox_error,
    )
    if result.outcome not in (Outcome.OK, Outcome.FAILED):
        result = replace(result, stderr=f"{stderr.rstrip()}\n{SANDBOX_MARK}: {result.describe()}")
    return result
