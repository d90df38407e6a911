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

    def __init__(self, args: list[str], env: dict[str, str], ignore_sigint: bool = False) -> None:
        """``ignore_sigint`` starts agentx with SIGINT ignored, as a shell script's background
        job (or a pytest-xdist worker's child) inherits it."""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: become agentx, never go on running the tests
            try:
                if ignore_sigint:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                os.execvpe(AGENTX[0], [*AGENTX, *args], env)
            finally:
                os._exit(127)
        self.text = ""
        self.reaped = False

    @property
    def plain(self) -> str:
        """What was shown, without colours and cursor moves."""
        return ANSI.sub("", self.text)

    def read_until(self, needle: str, timeout: float = 300) -> bool:
        """Read until ``needle`` shows (colours ignored), the program ends, or time is up."""
        deadline = time.monotonic() + timeout
        while needle not in self.plain and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.text += chunk.decode(errors="replace")
        return needle in self.plain

    def wait(self, timeout: float = 120) -> int:
        """The exit code, once the program has ended (killed if it has not within timeout)."""
        deadline = time.monotonic() + timeout
        self.read_until("\0never\0", timeout=timeout)  # drain until the child closes the pty
        finished, status = os.waitpid(self.pid, os.WNOHANG)
        while finished == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            finished, status = os.waitpid(self.pid, os.WNOHANG)
        if finished == 0:  # still running: a test must never hang on it
            os.kill(self.pid, signal.SIGUSR1)  # agentx run dumps its threads' stacks first
            self.read_until("\0never\0", timeout=3)
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        """Stop the program if it still runs (never signals a pid already reaped)."""
        if self.reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
