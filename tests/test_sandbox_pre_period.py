"""Rollouts of one baseline reuse its pre-period: the same numbers as running it again
(even for a control whose serving changes its own model), run once for rollouts that start
together, and an unreadable checkpoint costs a re-run, never a wrong number."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from timelines import assert_same_timeline

from agentx.sandbox.model_cache import MODEL_FILE
from agentx.sandbox.online import Phase, Timeline, TimelineResult
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldParams


@pytest.fixture
def target(tmp_path: Path, tiny_world: WorldParams) -> SandboxTarget:
    return SandboxTarget.create(tmp_path / "sandbox", tiny_world, seed=0)


def _snapshot(target: SandboxTarget, repo: Path) -> Path:
    return Path(target.launch("arm", repo).artefact)


def _variant(target: SandboxTarget, root: Path, note: str, edit: bool = False) -> Path:
    """The baseline's files with a note added (another snapshot); with ``edit`` its
    serving also changes the model: every call moves the exploration slot's seed."""
    repo = root / note.replace(" ", "-")
    shutil.copytree(target.repo_path, repo, ignore=shutil.ignore_patterns(".git"))
    (repo / "NOTES.md").write_text(note + "\n")
    if edit:
        pipeline = repo / "recsys" / "pipeline.py"
        text = pipeline.read_text()
        anchor = "        return ServeResult(items=items, candidates_scored=scored)\n"
        assert anchor in text
        pipeline.write_text(text.replace(anchor, "        self.seed += 1\n" + anchor, 1))
    return repo


def _phases(target: SandboxTarget) -> list[Phase]:
    users = target.user_ids()
    assignment = np.where(users % 2 == 0, 0, 1).astype(np.int64)
    return [Phase(assignment=assignment, days=2, seed=11)]


def _count_pre_periods(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many pre-periods were served, and how many were resumed from a record."""
    counts = {"served_days": 0, "resumed": 0}
    day, resume = Timeline._day, Timeline._resume_pre_period

    def counting_day(self: Timeline, *args: object, **kwargs: object) -> None:
        counts["served_days"] += bool(kwargs.get("learn_all"))
        day(self, *args, **kwargs)  # type: ignore[arg-type]

    def counting_resume(self: Timeline, *args: object) -> None:
        counts["resumed"] += 1
        resume(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Timeline, "_day", counting_day)
    monkeypatch.setattr(Timeline, "_resume_pre_period", counting_resume)
    return counts


def _rollout(target: SandboxTarget, control: Path, treatment: Path) -> TimelineResult:
    result = target._continue_rollout({0: control, 1: treatment}, _phases(target))
    target._close_live()
    return result


@pytest.mark.parametrize("stateful_serving", [False, True])
def test_a_rollout_that_reuses_its_baselines_pre_period_gives_the_numbers_of_running_it(
    target: SandboxTarget,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stateful_serving: bool,
) -> None:
    """The second experiment at a baseline starts from the first one's pre-period: nobody
    serves it again, and its numbers are those of a sandbox that runs it. The control's
    model after the pre-period is restored from its own pickle, so even code whose serving
    changes its model (here: each call moves a seed) continues exactly."""
    counts = _count_pre_periods(monkeypatch)
    baseline = _variant(target, tmp_path, "the baseline", edit=stateful_serving)
    control = _snapshot(target, baseline)
    first = _snapshot(target, _variant(target, tmp_path, "one change"))
    second = _snapshot(target, _variant(target, tmp_path, "another change"))
    pre_days = target.world_params.pre_days

    _rollout(target, control, first)
    assert counts == {"served_days": pre_days, "resumed": 0}
    reused = _rollout(target, control, second)
    assert counts == {"served_days": pre_days, "resumed": 1}

    target.pre_periods.clear()  # as a process that recorded nothing
    ran = _rollout(target, control, second)
    assert counts == {"served_days": 2 * pre_days, "resumed": 1}
    assert_same_timeline(reused, ran)


def test_rollouts_of_one_baseline_that_start_together_serve_its_pre_period_once(
    target: SandboxTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wave's rollouts share a baseline: one serves the pre-period, the others wait for
    it and start from its end, with the numbers they get alone."""
    control = _snapshot(target, target.repo_path)
    treatments = [_snapshot(target, _variant(target, tmp_path, f"change {i}")) for i in range(3)]
    alone = {}
    for treatment in treatments:  # each in a sandbox of its own, nothing recorded
        target.pre_periods.clear()
        target.models.clear()
        alone[treatment.name] = _rollout(target, control, treatment)
    target.pre_periods.clear()
    target.models.clear()
    counts = _count_pre_periods(monkeypatch)
    together: dict[str, TimelineResult] = {}
    failures: list[BaseException] = []

    def run(treatment: Path) -> None:
        try:
            together[treatment.name] = target._continue_rollout(
                {0: control, 1: treatment}, _phases(target)
            )
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(t,)) for t in treatments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    target._close_live()
    assert not failures
    assert counts == {"served_days": target.world_params.pre_days, "resumed": 2}
    for name, result in together.items():
        assert_same_timeline(result, alone[name])


def test_an_unreadable_checkpoint_costs_a_rerun_of_the_pre_period_not_a_wrong_number(
    target: SandboxTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the control's pickled state after the pre-period cannot be loaded, the control
    trains afresh and serves the pre-period again; the entry is dropped, the next rollout
    saves it again, and the one after reuses it with the same numbers."""
    control = _snapshot(target, target.repo_path)
    first = _snapshot(target, _variant(target, tmp_path, "one change"))
    second = _snapshot(target, _variant(target, tmp_path, "another change"))
    counts = _count_pre_periods(monkeypatch)
    _rollout(target, control, first)
    (key,) = target.pre_periods._records
    (target.models.entry(key) / MODEL_FILE).write_bytes(b"not a pickle")

    rerun = _rollout(target, control, second)
    pre_days = target.world_params.pre_days
    assert counts == {"served_days": 2 * pre_days, "resumed": 0}
    assert not target.models.entry(key).exists()
    _rollout(target, control, first)
    assert counts == {"served_days": 3 * pre_days, "resumed": 0}
    again = _rollout(target, control, second)
    assert counts == {"served_days": 3 * pre_days, "resumed": 1}
    assert_same_timeline(again, rerun)
