"""run_confined and start_confined: each way code can misbehave is stopped, classified and
recorded; the OS sandbox (bubblewrap) is the boundary, the guard names what was tried.

The hostile cases that must not escape at all live in tests/test_confinement.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from agentx.workspace import isolation
from agentx.workspace.isolation import IsolationPolicy, IsolationUnavailable, Probe
from agentx.workspace.process import (
    Outcome,
    ProcessResult,
    classify_text,
    run_confined,
    start_confined,
)


def _run(tmp_path: Path, code: str, **limits: object) -> ProcessResult:
    """Run ``code`` as a script in ``tmp_path/work`` under the sandbox."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "script.py").write_text(code)
    return run_confined(["script.py"], work, **limits)  # type: ignore[arg-type]


def test_clean_run_is_ok_and_runs_in_a_private_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTX_TEST_SECRET", "do-not-leak")
    code = (
        "import os, tempfile\n"
        "open('inside.txt', 'w').write('ok')\n"
        "fd, name = tempfile.mkstemp(); os.write(fd, b'x')\n"
        "print(name)\n"
        "print(os.environ.get('AGENTX_TEST_SECRET', 'absent'), os.environ['HOME'])\n"
    )
    result = _run(tmp_path, code)
    assert result.ok and result.outcome is Outcome.OK and not result.transient
    temp_file, env_line = result.stdout.splitlines()
    assert env_line.startswith("absent ")  # the parent's environment is not inherited
    assert (tmp_path / "work" / "inside.txt").read_text() == "ok"
    assert not Path(temp_file).exists()  # the private temp dir is removed afterwards
    assert not Path(env_line.split()[1]).exists()


def test_infinite_loop_is_killed_at_the_wall_clock_limit(tmp_path: Path) -> None:
    result = _run(tmp_path, "while True:\n    pass\n", timeout_s=1.0)
    assert result.timed_out and result.outcome is Outcome.TIMEOUT
    assert not result.transient and not result.ok  # the same code loops again: no blind retry
    assert "timed out after 1 s" in result.describe()
    assert classify_text(result.tail()) is Outcome.TIMEOUT


def test_unbounded_allocation_hits_the_memory_limit(tmp_path: Path) -> None:
    # bytes(n) is zero pages from calloc: the address space grows, physical memory barely.
    code = "hoard = []\nwhile True:\n    hoard.append(bytes(50_000_000))\n"
    result = _run(tmp_path, code, memory_mb=400, timeout_s=120.0)
    assert result.outcome is Outcome.OUT_OF_MEMORY and not result.transient
    assert "400 MB memory limit" in result.describe()
    assert classify_text(result.tail()) is Outcome.OUT_OF_MEMORY


def test_cpu_limit_stops_a_busy_process(tmp_path: Path) -> None:
    result = _run(tmp_path, "while True:\n    pass\n", cpu_s=1, timeout_s=120.0)
    assert result.outcome is Outcome.CPU_LIMIT and not result.transient
    assert classify_text(result.tail()) is Outcome.CPU_LIMIT


def test_crash_by_signal_is_transient(tmp_path: Path) -> None:
    result = _run(tmp_path, "import os\nos.abort()\n")
    assert result.outcome is Outcome.CRASHED and result.transient
    assert "SIGABRT" in result.describe()
    assert classify_text(result.tail()) is Outcome.CRASHED


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=1)\n", "network"),
        ("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n", "socket.connect"),
        ("import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 0))\n", "socket.bind"),
        ("import subprocess\nsubprocess.run(['true'])\n", "starting processes"),
        ("import os\nos.fork()\n", "starting processes"),
        ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n", "limits"),
    ],
)
def test_network_processes_and_limit_changes_are_refused(
    tmp_path: Path, code: str, message: str
) -> None:
    result = _run(tmp_path, code)
    assert result.outcome is Outcome.VIOLATION and not result.transient and not result.ok
    assert message in (result.violation or "")
    assert classify_text(result.tail()) is Outcome.VIOLATION


def test_loopback_bind_is_allowed(tmp_path: Path) -> None:
    code = "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\nprint('bound')\n"
    result = _run(tmp_path, code)
    assert result.ok, result.tail()


def test_a_swallowed_violation_is_still_recorded(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
        "except OSError:\n"
        "    pass\n"
        "print('carried on')\n"
    )
    result = _run(tmp_path, code)
    assert result.returncode == 0 and "carried on" in result.stdout
    assert not result.ok and result.outcome is Outcome.VIOLATION
    assert "network access" in (result.violation or "")


@pytest.mark.parametrize(
    "action",
    [
        "open(OUT, 'w').write('x')",
        "import pathlib; pathlib.Path(OUT).write_text('x')",
        "import os; open('inside', 'w').close(); os.rename('inside', OUT)",
        "import os; os.mkdir(OUT)",
        "import shutil; shutil.copy(__file__, OUT)",
    ],
)
def test_writes_outside_the_worktree_are_refused(tmp_path: Path, action: str) -> None:
    outside = tmp_path / "outside"
    result = _run(tmp_path, f"OUT = {str(outside)!r}\n{action}\n")
    assert result.outcome is Outcome.VIOLATION
    assert "outside the workspace" in (result.violation or "")
    assert not outside.exists()


def test_allowed_extra_directory_is_writable(tmp_path: Path) -> None:
    extra = tmp_path / "artefacts"
    extra.mkdir()
    result = _run(
        tmp_path, f"open({str(extra / 'out.txt')!r}, 'w').write('x')\n", allow_write=[extra]
    )
    assert result.ok, result.tail()
    assert (extra / "out.txt").read_text() == "x"


def test_ordinary_error_is_deterministic_failure(tmp_path: Path) -> None:
    result = _run(tmp_path, "raise ValueError('loss is nan')\n")
    assert result.outcome is Outcome.FAILED and not result.transient
    assert "loss is nan" in result.tail()
    assert classify_text(result.tail()) is None


def test_bad_arguments_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        run_confined(["x.py"], tmp_path / "missing")
    with pytest.raises(ValueError, match="positive"):
        run_confined(["x.py"], tmp_path, timeout_s=0)


def test_no_process_is_left_behind_after_a_timeout(tmp_path: Path) -> None:
    # The pid inside the sandbox is its own namespace's: look for the script on the host.
    work = tmp_path / "work"
    work.mkdir()
    script = work / "loop_d41d8cd9.py"
    script.write_text("while True:\n    pass\n")
    result = run_confined([script.name], work, timeout_s=1.0)
    assert result.outcome is Outcome.TIMEOUT
    survivors = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and script.name.encode() in (proc / "cmdline").read_bytes():
                survivors.append(proc.name)
        except OSError:
            continue  # ended while we looked
    assert survivors == []


def test_file_size_limit_stops_a_growing_file(tmp_path: Path) -> None:
    code = "with open('big.bin', 'wb') as f:\n    f.write(bytes(3 * 1024 * 1024))\n"
    result = _run(tmp_path, code, file_mb=1)
    assert result.outcome is Outcome.FILE_LIMIT and not result.transient
    assert "file size limit of 1 MB" in result.describe()
    assert (tmp_path / "work" / "big.bin").stat().st_size <= 1024 * 1024


def test_a_sandbox_that_fails_to_start_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = isolation.bwrap_argv

    def broken(*args: object, **kwargs: object) -> list[str]:
        argv = real(*args, **kwargs)  # type: ignore[arg-type]
        return [argv[0], "--ro-bind", str(tmp_path / "no-such-dir"), "/x", *argv[1:]]

    monkeypatch.setattr(isolation, "bwrap_argv", broken)
    result = _run(tmp_path, "open('ran', 'w').write('x')\n")
    assert result.outcome is Outcome.SANDBOX_ERROR and result.transient and not result.ok
    assert "the sandbox failed to start: bwrap:" in result.describe()
    assert classify_text(result.tail()) is Outcome.SANDBOX_ERROR
    assert not (tmp_path / "work" / "ran").exists()


def test_without_bubblewrap_untrusted_code_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = Probe(False, None, "bubblewrap (bwrap) is not installed: " + isolation.INSTALL_HINT)
    monkeypatch.setattr(isolation, "probe", lambda: missing)
    with pytest.raises(IsolationUnavailable) as refused:  # an LLM run's policy
        _run(tmp_path, "open('ran', 'w').write('x')\n", policy=IsolationPolicy())
    message = str(refused.value)
    assert "\n" not in message and "apt-get install bubblewrap" in message
    assert "model-written" in message
    assert not (tmp_path / "work" / "ran").exists()
    # Trusted code (an offline run) is refused too unless the setting allows it ...
    strict = IsolationPolicy(trusted_code=True)
    with pytest.raises(IsolationUnavailable, match="allow_unconfined_trusted"):
        _run(tmp_path, "pass\n", policy=strict)
    # ... and then runs under the guard alone, which still names a stray write.
    allowed = IsolationPolicy(trusted_code=True, allow_unconfined_trusted=True)
    result = _run(tmp_path, "open('ran', 'w').write('x')\n", policy=allowed)
    assert result.ok and not result.isolated and (tmp_path / "work" / "ran").exists()
    outside = tmp_path / "outside.txt"
    result = _run(tmp_path, f"open({str(outside)!r}, 'w')\n", policy=allowed)
    assert result.outcome is Outcome.VIOLATION and not outside.exists()


def test_start_confined_serves_over_pipes_inside_the_sandbox(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    secret = tmp_path / "secret.txt"  # beside the worktree, not inside it
    secret.write_text("s3cret")
    (work / "echo.py").write_text(
        "import os, sys\n"
        "for line in sys.stdin:\n"
        f"    print(line.strip().upper(), os.path.exists({str(secret)!r}), flush=True)\n"
    )
    with start_confined(["echo.py"], work, memory_mb=512) as process:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("ping\n")
        process.stdin.flush()
        assert process.stdout.readline().split() == ["PING", "False"]
        process.stdin.write("again\n")
        process.stdin.flush()
        assert process.stdout.readline().split() == ["AGAIN", "False"]
    assert process.returncode is not None  # reaped on leaving the block


def test_a_read_only_working_directory_cannot_be_changed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"  # natively: the guard never sees it
        f"fd = libc.open(b'changed.txt', {os.O_CREAT | os.O_WRONLY}, 0o644)\n"
        f"open({str(out / 'result.txt')!r}, 'w').write(str(ctypes.get_errno()))\n"
    )
    result = _run(tmp_path, code, cwd_writable=False, allow_write=[out])
    assert result.ok, result.tail()
    assert (out / "result.txt").read_text() == "30"  # EROFS
    assert not (tmp_path / "work" / "changed.txt").exists()


def test_the_first_scratch_directory_sweeps_away_dead_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory whose owner process is gone is removed; one without an owner record (an
    older version's, or one being made) and one of a live owner are kept."""
    from agentx.workspace import scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scratch, "_swept", set())
    dead, unowned, live = (tmp_path / f"agentx-run-{n}" for n in ("dead", "unowned", "live"))
    for path in (dead, unowned, live):
        path.mkdir()
    (dead / scratch.OWNER_FILE).write_text(f"{os.getpid()} not-this-start-time")
    (live / scratch.OWNER_FILE).write_text(scratch._owner_stamp())
    made = scratch.new_scratch_dir("agentx-run-")
    assert not dead.exists() and unowned.exists() and live.exists()
    assert (made / scratch.OWNER_FILE).read_text() == scratch._owner_stamp()
    again = scratch.new_scratch_dir("agentx-run-")  # swept once per process
    assert again.exists() and made.exists()
