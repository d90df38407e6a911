"""Real server processes for tests: started, awaited until healthy, always stopped.

(PostgreSQL, which is started with its own tools, is in ``pg_server.py``.)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


@contextmanager
def background_server(
    command: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    health_url: str,
    name: str,
    timeout: float = 180,
) -> Iterator[subprocess.Popen]:
    """Run ``command`` with its output in ``log`` until ``health_url`` answers 200.

    Fails the test with the log's tail if the process dies or stays unhealthy for
    ``timeout`` seconds; terminates it (then kills it) when the block ends, whatever happened.
    """
    with log.open("w") as sink:
        process = subprocess.Popen(
            list(command), env=dict(env), stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if httpx.get(health_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{name} did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def chroma_server(path: Path, env: Mapping[str, str]) -> Iterator[str]:
    """``chroma run`` (the installed chromadb's CLI) on a free loopback port, storing in
    ``path``; yields its URL."""
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)]
    log = path.parent / f"{path.name}.log"
    with background_server(command, env, log, f"{url}/api/v2/heartbeat", "chroma", 120):
        yield url
