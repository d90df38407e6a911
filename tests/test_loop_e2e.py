"""The closed loop end to end on the tiny world: ledger, memory, determinism, resume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from processes import kill_during_second_experiment

from agentx.memory.store import open_store
from agentx.runner import run_loop
from agentx.sandbox.target import SandboxTarget
from agentx.settings import load_settings


def _settings(workspace: Path, iterations: int = 2):
    return load_settings(world="tiny", iterations=iterations, seed=3, workspace=workspace)


def test_loop_runs_learns_and_is_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefetched: list[Path] = []
    prefetch = SandboxTarget.prefetch_ground_truth

    def recorded(target: SandboxTarget, workdir: Path) -> None:
        prefetched.append(Path(workdir))
        prefetch(target, workdir)

    monkeypatch.setattr(SandboxTarget, "prefetch_ground_truth", recorded)
    first = run_loop(_settings(tmp_path / "a"))
    assert len(first.experiments) == 2
    # every launched treatment's truth was started beside its rollout, not after it
    launched = [e for e in first.experiments if e.status != "abandoned"]
    assert launched and len(prefetched) == len(launched)
    assert all(path.parent == tmp_path / "a" / "worktrees" for path in prefetched), prefetched
    assert first.funnel["ideas"] >= first.funnel["admitted"] >= first.funnel["implemented"]
    assert {e.id for e in first.experiments} == {e.id for e in first.experiments}
    settings = _settings(tmp_path / "a")
    store = open_store(settings.workspace, settings.memory, settings.embeddings)
    assert store.count() == 2  # one knowledge card per experiment
    second = run_loop(_settings(tmp_path / "b"))
    assert first.model_dump() == second.model_dump()


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    command = [
        sys.executable,
        "-m",
        "agentx.cli.app",
        "run",
        "--world",
        "tiny",
        "--iterations",
        "3",
        "--seed",
        "3",
        "--workspace",
        str(workspace),
    ]
    kill_during_second_experiment(command)
    summary = run_loop(_settings(workspace, iterations=3), resume=True)
    ids = [e.id for e in summary.experiments]
    assert len(ids) == 3 and len(set(ids)) == 3
    settings = _settings(workspace, iterations=3)
    store = open_store(settings.workspace, settings.memory, settings.embeddings)
    assert store.count() == 3


def test_without_ground_truth_no_truth_is_computed_and_every_experiments_arms_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ground_truth = false``: what an experiment costs on a real target, which has no
    oracle. The verdict asks for no truth (none is started beside the rollout either), the
    summary says none is known, and each experiment's arms are released at its verdict
    (which no longer leaves it to the sandbox's truth request to end the rollout)."""
    asked: list[str] = []
    released: dict[str, SandboxTarget] = {}
    rollback = SandboxTarget.rollback

    def truth_asked(target: SandboxTarget, workdir: Path) -> None:
        asked.append(str(workdir))

    def recorded_rollback(target: SandboxTarget, arm) -> None:
        released[arm.artefact] = target
        rollback(target, arm)

    monkeypatch.setattr(SandboxTarget, "ground_truth", truth_asked)
    monkeypatch.setattr(SandboxTarget, "prefetch_ground_truth", truth_asked)
    monkeypatch.setattr(SandboxTarget, "rollback", recorded_rollback)
    summary = run_loop(
        load_settings(world="tiny", iterations=2, seed=3, workspace=tmp_path, ground_truth=False)
    )
    launched = [e for e in summary.experiments if e.status != "abandoned"]
    assert launched and asked == []
    assert all(e.true_effect is None for e in summary.experiments)
    assert len(released) == len(launched)  # each treatment, whatever its verdict
    assert all(not target._live for target in released.values())  # no arm left running
