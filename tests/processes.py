"""Process helpers for tests that stop AgentX the hard way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence


def kill_during_second_experiment(
    command: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600
) -> None:
    """Start ``agentx run ...`` and kill -9 its whole process group once the first
    experiment is printed (``#1 ...``) and a second has begun."""
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
    time.sleep(1.0)  # let it get into the second experiment
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
