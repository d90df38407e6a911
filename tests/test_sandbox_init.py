"""`agentx sandbox init`: a fresh workspace trains, serves and passes its own tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from agentx.cli.app import app


def test_sandbox_init_creates_a_working_repository(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sandbox", "init", str(tmp_path / "sb"), "--world", "tiny"])
    assert result.exit_code == 0, result.output
    repo = tmp_path / "sb" / "repo"
    log = subprocess.run(["git", "log", "--oneline"], cwd=repo, capture_output=True, text=True)
    assert "Baseline" in log.stdout
    for name in ("items.npz", "interactions.npz", "meta.json"):
        assert (tmp_path / "sb" / "data" / "full" / name).is_file()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-2000:]
    smoke = subprocess.run(
        [sys.executable, "-m", "recsys", str(tmp_path / "sb" / "data" / "full")],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert smoke.returncode == 0, smoke.stderr[-2000:]


def test_sandbox_init_with_a_bad_world_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sandbox", "init", str(tmp_path), "--world", "nowhere"])
    assert result.exit_code == 2
    assert "unknown world 'nowhere'" in result.output and "Traceback" not in result.output


def test_a_workspace_built_for_one_world_refuses_another(tmp_path: Path) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(app, ["sandbox", "init", str(tmp_path / "sb"), "--world", "tiny"]).exit_code
        == 0
    )
    marker = (tmp_path / "sb" / "data" / "world.json").read_text()
    result = runner.invoke(app, ["sandbox", "init", str(tmp_path / "sb"), "--world", "niche"])
    assert result.exit_code == 2
    assert "holds the sandbox of world 'tiny', not 'niche'" in result.output
    assert "--world tiny" in result.output
    assert (tmp_path / "sb" / "data" / "world.json").read_text() == marker  # nothing rewritten
