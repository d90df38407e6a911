"""A private PostgreSQL cluster for a test: initdb in a temporary directory, a server on a
free 127.0.0.1 port, always stopped and removed.

Uses Debian's ``postgresql`` package (``/usr/lib/postgresql/N/bin``). As root (CI), the
cluster belongs to the ``postgres`` user, since the server refuses to run as root. Outside
CI a machine without PostgreSQL skips the test with the reason; in CI (``CI`` set, as
``.ci/run`` does) a missing PostgreSQL fails it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

USER = "agentx"  # the cluster's superuser (trust authentication, loopback only)


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's program directory (with initdb and pg_ctl)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_bindir() -> Path:
    """The program directory, or skip (outside CI) / fail (in CI) with the reason."""
    bindir = postgres_bindir()
    if bindir is None:
        reason = "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI requires it")
        pytest.skip(reason)
    return bindir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as_owner(command: list[str], owner: pwd.struct_passwd | None) -> None:
    kwargs: dict = {}
    if owner is not None:
        kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/", **kwargs)
    if result.returncode != 0:
        output = f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        pytest.fail(f"{Path(command[0]).name} {command[-1]} failed:\n{output}")


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a throwaway cluster; yields a DSN for its ``postgres`` database."""
    bindir = require_bindir()
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    # Not pytest's tmp_path: as root it is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="agentx-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if owner is not None:
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        _run_as_owner(
            [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
             "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
            owner,
        )  # fmt: skip
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -F"
        _run_as_owner(
            [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
             "-t", "60", "start"],
            owner,
        )  # fmt: skip
        started = True
        yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run_as_owner(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], owner
            )
        shutil.rmtree(root, ignore_errors=True)
