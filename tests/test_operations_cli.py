"""Operating AgentX from a shell (issue 15): each test drives the real ``agentx`` command in a
subprocess or a pseudo-terminal, on the tiny world, as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal import ANSI, Terminal

from agentx.runner import run_loop
from agentx.settings import load_settings
from agentx.workspace.lock import WorkspaceBusy, WorkspaceLock

AGENTX = [sys.executable, "-m", "agentx.cli.app"]
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "agentx.example.toml"


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without AGENTX_* settings, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("AGENTX_")}
    return {**clean, "COLUMNS": "200", **extra}


def agentx(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [*AGENTX, *args], env=env or _env(), capture_output=True, text=True, cwd=cwd, timeout=600
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a refused command (exit 2, no traceback)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "Traceback" not in result.stderr
    return lines[0]


# ---------------------------------------------------------------- 1 + 9: resume, progress, Ctrl-C


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, int]]:
    """A seed-3 tiny run started on a terminal and stopped with Ctrl-C mid-experiment."""
    workspace = tmp_path_factory.mktemp("ops") / "ws run"  # a space: the command must quote it
    args = ["run", "--world", "tiny", "--seed", "3", "--iterations", "2",
            "--workspace", str(workspace)]  # fmt: skip
    # Started with SIGINT ignored, as a background job inherits it: Ctrl-C must still work.
    terminal = Terminal(args, _env(TERM="xterm"), ignore_sigint=True)
    try:
        assert terminal.read_until("experiment 1/2"), terminal.text[-2000:]
        assert terminal.read_until("verify"), terminal.text[-2000:]  # a node of experiment 1
        os.kill(terminal.pid, signal.SIGUSR1)  # "is it stuck?": every thread's stack, run goes on
        assert terminal.read_until("most recent call first"), terminal.text[-2000:]
        os.kill(terminal.pid, signal.SIGINT)
        code = terminal.wait()
    finally:
        terminal.kill()
    yield workspace, ANSI.sub("", terminal.text), code


def test_progress_shows_experiment_and_node_and_ctrl_c_prints_the_resume_command(
    interrupted: tuple[Path, str, int],
) -> None:
    workspace, text, code = interrupted
    assert "starting run-1: world tiny, seed 3, 2 experiment(s)" in text
    assert "experiment 1/2" in text and "develop" in text  # the live progress lines
    assert code == 130, text[-6000:]  # killed instead: the stacks it dumped on SIGUSR1
    flat = " ".join(text.split())  # the terminal may wrap the line
    assert f"Resume with: agentx run --workspace '{workspace}' --resume" in flat


def test_sigusr1_prints_every_threads_stack_and_the_run_goes_on(
    interrupted: tuple[Path, str, int],
) -> None:
    _, text, code = interrupted
    assert "most recent call first" in text
    dump = text[text.index("most recent call first") :]
    assert "/agentx/" in dump  # the run's own frames (the node it was in)
    assert code == 130  # still running after the dump: stopped by the Ctrl-C that followed


def test_resume_restores_the_runs_settings_and_refuses_a_contradicting_flag(
    interrupted: tuple[Path, str, int],
) -> None:
    workspace, _, _ = interrupted
    contradicting = agentx("run", "--workspace", str(workspace), "--resume", "--seed", "0")
    line = one_error_line(contradicting)
    assert "seed 0 from flag --seed (the run has 3)" in line
    resumed = agentx("run", "--workspace", str(workspace), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)  # --json: stdout is the summary and nothing else
    assert (summary["world"], summary["seed"], summary["run_id"]) == ("tiny", 3, "run-1")
    assert len(summary["experiments"]) == 2
    header = agentx("run", "--workspace", str(workspace), "--resume")
    assert "resuming run-1: world tiny, seed 3, 2 experiment(s)" in header.stdout


def test_help_shows_defaults_and_version() -> None:
    help_text = " ".join(agentx("run", "--help").stdout.split())
    for default in ("[default: (5)]", "[default: (default)]", "[default: (.agentx)]", "(0)]"):
        assert default in help_text, default
    version = agentx("--version")
    assert version.returncode == 0 and version.stdout.strip() == "agentx 0.1.0"


# ---------------------------------------------------------------- 2: one writer per workspace


def test_a_locked_workspace_refuses_a_second_run_naming_the_holder(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from agentx.workspace.lock import WorkspaceLock\n"
         f"with WorkspaceLock({str(workspace)!r}, command='agentx run (test holder)'):\n"
         "    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        line = one_error_line(agentx("run", "--world", "tiny", "--workspace", str(workspace)))
        assert f"in use by pid {holder.pid} (agentx run (test holder))" in line
        assert sorted(p.name for p in workspace.iterdir()) == [".lock"]  # nothing registered
        with pytest.raises(WorkspaceBusy, match=f"pid {holder.pid}"):  # embedded use too
            run_loop(load_settings(world="tiny", iterations=1, workspace=workspace))
    finally:
        holder.kill()
        holder.wait()
    with WorkspaceLock(workspace):  # the kernel dropped the dead holder's lock
        pass


@pytest.mark.parametrize("content", ['["run-1", ', '{"runs": ["run-1"]}'])
def test_an_unreadable_runs_file_is_one_line_for_every_command_and_stays_as_it_was(
    tmp_path: Path, content: str
) -> None:
    """A truncated or hand-edited ``runs.json`` must not become a traceback, nor be numbered
    over by a new run (which would reuse run-1's checkpoints)."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    runs = workspace / "runs.json"
    runs.write_text(content)
    for command in (["status"], ["report"], ["run", "--world", "tiny"], ["run", "--resume"]):
        line = one_error_line(agentx(*command, "--workspace", str(workspace)))
        assert f"cannot read {runs}" in line, (command, line)
    assert runs.read_text() == content
    assert not (workspace / "run-settings").exists()


# ---------------------------------------------------------------- 6: settings strictness


def test_settings_errors_name_their_source(tmp_path: Path) -> None:
    workspace = str(tmp_path / "ws")
    line = one_error_line(
        agentx("status", "--workspace", workspace, env=_env(AGENTX_ITERATIONS="abc"))
    )
    assert "iterations (from env AGENTX_ITERATIONS)" in line
    typo = tmp_path / "typo.toml"
    typo.write_text('[llm]\nmodle = "gpt"\n')
    line = one_error_line(agentx("config", "--settings", str(typo)))
    assert f"llm.modle (from file {typo}): Extra inputs are not permitted" in line
    line = one_error_line(agentx("config", env=_env(AGENTX_ITERATONS="3")))
    assert "unknown environment variable AGENTX_ITERATONS (did you mean AGENTX_ITERATIONS?)" in line
    line = one_error_line(agentx("config", env=_env(AGENTX_LLM__MODLE="x")))
    assert "AGENTX_LLM__MODLE (did you mean AGENTX_LLM__MODEL?)" in line
    line = one_error_line(agentx("run", "--iterations", "0", "--workspace", workspace))
    assert "iterations (from flag --iterations)" in line
    assert not Path(workspace).exists()


def test_config_shows_effective_settings_and_their_origins(tmp_path: Path) -> None:
    settings_file = tmp_path / "agentx.toml"
    settings_file.write_text('world = "tiny"\n[llm]\nmodel = "m"\napi_key = "sk-secret"\n')
    result = agentx(
        "config", "--settings", str(settings_file), "--workspace", str(tmp_path), "--json",
        env=_env(AGENTX_SEED="7"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    assert rows["world"] == {"key": "world", "value": "tiny", "origin": f"file {settings_file}"}
    assert rows["seed"]["value"] == 7 and rows["seed"]["origin"] == "env AGENTX_SEED"
    assert rows["workspace"]["origin"] == "flag --workspace"
    assert rows["iterations"] == {"key": "iterations", "value": 5, "origin": "default"}
    assert rows["llm.model"]["origin"] == f"file {settings_file}"
    assert "sk-secret" not in result.stdout  # secrets are masked
    assert rows["stages"]["origin"] == "default"  # tiny declares no rollout shares
    table = agentx("config", "--settings", str(settings_file), env=_env(AGENTX_SEED="7"))
    assert "env AGENTX_SEED" in table.stdout and "default" in table.stdout
    shipped = agentx("config", "--workspace", str(tmp_path), "--json", env=_env())
    rows = {row["key"]: row for row in json.loads(shipped.stdout)}
    assert rows["stages"]["origin"] == "world default"  # its own rollout shares
    assert [stage["treatment_share"] for stage in rows["stages"]["value"]] == [0.025, 0.1, 0.2]


def test_the_example_settings_file_is_complete_and_valid() -> None:
    result = agentx("config", "--settings", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    text = EXAMPLE.read_text()
    keys = ["world", "seed", "iterations", "autonomous", "llm.structured_method"]
    keys += ["memory.collection", "evolution.every", "sandbox.max_detail_chars", "stages"]
    for key in keys:
        assert rows[key]["origin"] == f"file {EXAMPLE}", key
        assert key.rpartition(".")[2] in text


# ---------------------------------------------------------------- 8: unwritable workspaces


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap makes the read-only mount")
@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_an_unwritable_workspace_is_one_line_and_nothing_is_written(
    tmp_path: Path, kind: str
) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    if kind == "read-only":
        (mount / "ws").mkdir()
        layout = ["--ro-bind", str(mount), str(mount)]
        message = "Read-only file system; choose a writable --workspace"
    else:
        layout = ["--size", str(1024 * 1024), "--tmpfs", str(mount)]
        message = "1024 KiB free; a run needs at least 64 MiB"
    workspace = mount / "ws"
    command = " ".join([*AGENTX, "run", "--world", "tiny", "--workspace", str(workspace)])
    listing = f'echo "exit=$? left=[$(ls -A {workspace} 2>/dev/null)]"'
    result = subprocess.run(
        ["bwrap", "--bind", "/", "/", *layout, "--dev", "/dev", "--proc", "/proc", "--",
         "sh", "-c", f"{command}; {listing}"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.stdout.strip() == "exit=2 left=[]"  # refused, nothing half-written
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert f"workspace {workspace}" in lines[0] and message in lines[0]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap makes the small disk")
def test_a_disk_filling_mid_run_is_one_line_and_the_resumed_run_loses_nothing(
    tmp_path: Path,
) -> None:
    """The disk fills after the first experiment is learned, whatever writes next fails (git,
    Chroma's SQLite, the checkpointer, a file): one line that says how to go on, and the
    resumed run ends exactly as an uninterrupted one."""
    mount, out = tmp_path / "mnt", tmp_path / "out"
    mount.mkdir()
    out.mkdir()
    workspace = mount / "ws"
    run = " ".join([*AGENTX, "run", "--world", "tiny", "--iterations", "2"])
    trace = workspace / "traces" / "run-1.jsonl"
    script = f"""
{run} --workspace {workspace} >{out}/first.out 2>{out}/first.err &
pid=$!
until grep -q '"node": "learn"' {trace} 2>/dev/null || ! kill -0 $pid 2>/dev/null; do
  sleep 0.1
done
dd if=/dev/zero of={mount}/filler bs=64k 2>/dev/null
wait $pid; echo $? >{out}/first.rc
rm -f {mount}/filler
{" ".join(AGENTX)} run --workspace {workspace} --resume --json >{out}/second.out 2>{out}/second.err
echo $? >{out}/second.rc
"""
    subprocess.run(
        ["bwrap", "--bind", "/", "/", "--size", str(96 * 1024 * 1024), "--tmpfs", str(mount),
         "--dev", "/dev", "--proc", "/proc", "--", "sh", "-c", script],
        env=_env(), capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "2", first_err[-3000:]
    assert "Traceback" not in first_err, first_err[-3000:]
    errors = [line for line in first_err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, first_err[-3000:]  # after the progress lines, one error line
    assert f"`agentx run --workspace {workspace} --resume`" in errors[0]
    assert "the run stopped at its last checkpoint: free space" in errors[0]
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    resumed = json.loads((out / "second.out").read_text())
    reference = agentx("run", "--world", "tiny", "--iterations", "2", "--workspace",
                       str(tmp_path / "reference"), "--json")  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = json.loads(reference.stdout)
    assert len(resumed["experiments"]) == 2  # nothing lost, nothing run twice
    assert resumed["experiments"] == expected["experiments"]
    assert resumed["funnel"] == expected["funnel"]
