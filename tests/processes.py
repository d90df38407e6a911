"""Process helpers for tests that stop AgentX the hard way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence


def kill_during_second_experiment(
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    after_s: float = 1.0,
) -> None:
    """Start ``agentx run ...`` and kill -9 its whole process group ``after_s`` seconds
    after the first experiment is printed (``#1 ...``), inside the next one (or wave)."""
    process = subprocess.Popen(
        list(command),
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if line.startswith("#1 ") or time.monotonic() > deadline:
            break
    time.sleep(after_s)  # let it get into the second experiment
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
