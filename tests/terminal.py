"""A pseudo-terminal for tests that drive ``agentx`` as a person at a shell would."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time

AGENTX = [sys.executable, "-m", "agentx.cli.app"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


class Terminal:
    """``agentx`` on a pseudo-terminal: what a person at a shell sees."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.execvpe(AGENTX[0], [*AGENTX, *args], env)
        self.text = ""

    def read_until(self, needle: str, timeout: float = 300) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.text and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.text += chunk.decode(errors="replace")
        return needle in self.text

    def wait(self) -> int:
        self.read_until("\0never\0", timeout=120)  # drain until the child closes the pty
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
