"""Confined subprocesses: wall-clock timeout, memory and CPU limits, no network.

Every piece of target or agent-written code runs through :func:`run_confined`, so an
edit that loops forever, allocates without bound, opens a socket or writes outside its
worktree is stopped and reported instead of taking the loop down with it.

Each run gets a private, empty temp directory (also its ``HOME``) that is deleted
afterwards, so nothing a run leaves behind can leak into the next one, and an
environment of its own (nothing of the parent's but ``PATH`` and the locale). How a run ended
is classified as an :class:`Outcome`; abnormal endings append one
``agentx-sandbox: ...`` line to stderr, so the evidence survives into any error text a
target builds from the output (see :func:`classify_text`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from agentx.workspace.guard import GUARD_MARK

SANDBOX_MARK = "agentx-sandbox"
_OOM = re.compile(r"\b\w*MemoryError\b|Cannot allocate memory|Unable to allocate")
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class Outcome(StrEnum):
    """How a confined run ended, from the most to the least telling."""

    OK = "ok"
    FAILED = "failed"  # exited non-zero on its own: an ordinary error
    VIOLATION = "violation"  # the guard refused network, a process, or a write outside
    OUT_OF_MEMORY = "out_of_memory"  # the address-space limit was hit
    TIMEOUT = "timeout"  # the wall clock ran out; the process group was killed
    CPU_LIMIT = "cpu_limit"  # the CPU-time limit ran out
    CRASHED = "crashed"  # killed by a signal (segfault, abort, external kill)


#: Outcomes a retry of the same code may not repeat (load, flaky native code).
TRANSIENT_OUTCOMES = frozenset({Outcome.TIMEOUT, Outcome.CPU_LIMIT, Outcome.CRASHED})

_DESCRIPTIONS = {
    "sandbox violation": Outcome.VIOLATION,
    "out of memory": Outcome.OUT_OF_MEMORY,
    "timed out": Outcome.TIMEOUT,
    "CPU time limit": Outcome.CPU_LIMIT,
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

    @property
    def ok(self) -> bool:
        """True when the process exited 0 in time and broke no sandbox rule."""
        return self.returncode == 0 and not self.timed_out and not self.violation

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
        if self.returncode != 0 and self.out_of_memory:
            return Outcome.OUT_OF_MEMORY
        if self.timed_out:
            return Outcome.TIMEOUT
        if self.returncode == -signal.SIGXCPU or (
            self.cpu_s is not None and self.returncode == -signal.SIGKILL
        ):
            return Outcome.CPU_LIMIT
        if self.returncode < 0:
            return Outcome.CRASHED
        return Outcome.OK if self.returncode == 0 else Outcome.FAILED

    @property
    def transient(self) -> bool:
        """True when retrying the same code may pass (timeouts, crashes), see the docs."""
        return self.outcome in TRANSIENT_OUTCOMES

    def describe(self) -> str:
        """One line saying how the run ended, naming the limit or rule involved."""
        outcome = self.outcome
        if outcome is Outcome.VIOLATION:
            return f"sandbox violation: {self.violation}"
        if outcome is Outcome.OUT_OF_MEMORY:
            limit = f"the {self.memory_mb} MB" if self.memory_mb else "the"
            return f"out of memory: {limit} memory limit was exceeded"
        if outcome is Outcome.TIMEOUT:
            after = f" after {self.timeout_s:g} s" if self.timeout_s else ""
            return f"timed out{after} (wall clock); the process group was killed"
        if outcome is Outcome.CPU_LIMIT:
            return f"CPU time limit of {self.cpu_s} s exceeded"
        if outcome is Outcome.CRASHED:
            return f"crashed: killed by signal {_signal_name(-self.returncode)}"
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
    order = [Outcome.TIMEOUT, Outcome.CPU_LIMIT, Outcome.CRASHED]
    return next((kind for kind in order if kind in found), None)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _clean_env(scratch: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {key: os.environ[key] for key in _KEPT_ENV if key in os.environ}
    env.update(
        {
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


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def run_confined(
    python_args: list[str],
    cwd: Path,
    *,
    timeout_s: float = 300.0,
    memory_mb: int = 3072,
    cpu_s: int | None = None,
    allow_write: list[Path] | None = None,
    env: dict[str, str] | None = None,
) -> ProcessResult:
    """Run ``python <python_args>`` confined to ``cwd``.

    Args:
        python_args: arguments after the interpreter, e.g. ``["-m", "pytest", "-q"]``.
        cwd: the working directory, also the root writes are allowed under.
        timeout_s: wall-clock limit; the whole process group is killed after it.
        memory_mb: address-space limit.
        cpu_s: CPU-seconds limit (None: only the wall clock).
        allow_write: extra directories the code may write to.
        env: extra environment variables (the parent's environment is not inherited).

    Raises:
        ValueError: ``cwd`` is not a directory or a limit is not positive.
    """
    cwd = Path(cwd)
    if not cwd.is_dir():
        raise ValueError(f"working directory does not exist: {cwd}")
    if timeout_s <= 0 or memory_mb <= 0 or (cpu_s is not None and cpu_s <= 0):
        raise ValueError("timeout_s, memory_mb and cpu_s must be positive")
    base = Path(tempfile.mkdtemp(prefix="agentx-run-"))
    scratch, report = base / "tmp", base / "violations.log"
    scratch.mkdir()
    argv = [sys.executable, "-m", "agentx.workspace.guard", "--report", str(report)]
    for root in [cwd, *(allow_write or [])]:
        argv += ["--allow", str(Path(root).resolve())]
    argv += ["--memory-mb", str(memory_mb)]
    if cpu_s is not None:
        argv += ["--cpu-s", str(cpu_s)]
    argv += ["--", *python_args]
    started = time.monotonic()
    timed_out = False
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=_clean_env(scratch, env),
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            stdout, stderr = process.communicate()
        finally:
            if process.poll() is None:  # interrupted while waiting: leave nothing running
                _kill_group(process)
                process.wait()
        violations = tuple(report.read_text().splitlines()) if report.exists() else ()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = ProcessResult(
        returncode=process.returncode if not timed_out else -signal.SIGKILL,
        stdout=stdout,
        stderr=stderr,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        violations=violations,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
    )
    if result.outcome not in (Outcome.OK, Outcome.FAILED):
        result = replace(result, stderr=f"{stderr.rstrip()}\n{SANDBOX_MARK}: {result.describe()}")
    return result
