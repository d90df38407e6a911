"""Confined subprocesses: wall-clock timeout, memory and CPU limits, no network.

Every piece of target or agent-written code runs through :func:`run_confined`, so an
edit that loops forever, allocates without bound, opens a socket or writes outside its
worktree is stopped and reported instead of taking the loop down with it.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agentx.workspace.guard import GUARD_MARK


@dataclass(frozen=True)
class ProcessResult:
    """Outcome of a confined run."""

    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the process exited 0 in time."""
        return self.returncode == 0 and not self.timed_out

    @property
    def violation(self) -> str | None:
        """The guard's message when the code broke a sandbox rule."""
        for line in self.stderr.splitlines():
            if GUARD_MARK in line:
                return line.split(f"{GUARD_MARK}:", 1)[-1].strip()
        return None

    @property
    def out_of_memory(self) -> bool:
        """True when the memory limit stopped the process."""
        return "MemoryError" in self.stderr or "Cannot allocate memory" in self.stderr

    def tail(self, lines: int = 30) -> str:
        """The last lines of stderr (or stdout), for feedback and records."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


def _limits(memory_mb: int, cpu_s: int | None):
    def apply() -> None:
        os.setsid()
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))

    return apply


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NO_PROXY": "*",
        }
    )
    env.update(extra or {})
    return env


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
        env: extra environment variables.
    """
    roots = [cwd, *(allow_write or [])]
    guard_args: list[str] = []
    for root in roots:
        guard_args += ["--allow", str(Path(root).resolve())]
    argv = [sys.executable, "-m", "agentx.workspace.guard", *guard_args, "--", *python_args]
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_clean_env(env),
        preexec_fn=_limits(memory_mb, cpu_s),
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        timed_out = True
        stderr += f"\ntimed out after {timeout_s:.0f} s"
    return ProcessResult(
        returncode=process.returncode if not timed_out else -9,
        stdout=stdout,
        stderr=stderr,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
    )
