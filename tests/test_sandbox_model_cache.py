"""Arms of a snapshot trained before load its pickled model instead of training it again:
they serve and learn exactly as a freshly trained arm; arms of one snapshot started together
train once; a bad entry costs a training, never an arm; code under test cannot write
another snapshot's model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from timelines import assert_same_timeline

from agentx.sandbox.arms import ArmProcess
from agentx.sandbox.model_cache import MODEL_FILE, ModelCache
from agentx.sandbox.online import Phase
from agentx.sandbox.target import SandboxTarget, _files_fingerprint
from agentx.sandbox.world import WorldParams


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, tiny_world: WorldParams) -> SandboxTarget:
    return SandboxTarget.create(tmp_path_factory.mktemp("cache-sandbox"), tiny_world, seed=0)


def _snapshot(target: SandboxTarget, workdir: Path) -> Path:
    return Path(target.launch("arm", workdir).artefact)


def _copy(target: SandboxTarget, tmp_path: Path, note: str) -> Path:
    """The baseline's files with a note added: another snapshot, so another model key."""
    repo = tmp_path / "repo"
    shutil.copytree(target.repo_path, repo, ignore=shutil.ignore_patterns(".git"))
    (repo / "NOTES.md").write_text(note + "\n")
    return repo


def _arm(target: SandboxTarget, snapshot: Path, cached: bool = True) -> ArmProcess:
    data = target.root / "data" / "full"
    key = ModelCache.key(snapshot, _files_fingerprint(data), target.seed) if cached else None
    return target._arm("arm", snapshot, data, cache_key=key)


def _day(target: SandboxTarget, arm: ArmProcess, day: int) -> np.ndarray:
    """Serve half the users on ``day``, then learn from a day of clicks on the first slot."""
    users = target.user_ids()[::2]
    slates, _ = arm.serve(day, users)
    n = users.size
    arm.update(
        {
            "user": users.astype(np.int64),
            "item": slates[:, 0].astype(np.int64),
            "day": np.full(n, day, dtype=np.int64),
            "position": np.zeros(n, dtype=np.int64),
            "click": (users % 3 == 0).astype(np.int8),
            "watch_time": (users % 3 == 0).astype(np.float64) * 30.0,
        }
    )
    return slates


def test_a_loaded_model_serves_and_learns_exactly_as_a_trained_one(
    target: SandboxTarget,
) -> None:
    snapshot = _snapshot(target, target.repo_path)
    day = target.world.online_start_day
    with _arm(target, snapshot, cached=False) as fresh:
        expected = [_day(target, fresh, day), _day(target, fresh, day + 1)]
    with _arm(target, snapshot) as trainer:
        assert not trainer.loaded_model
        trained = [_day(target, trainer, day), _day(target, trainer, day + 1)]
    sealed = [p for p in target.models.root.iterdir() if (p / MODEL_FILE).is_file()]
    assert len(sealed) == 1  # the model as trained, before it served
    with _arm(target, snapshot) as loader:
        assert loader.loaded_model
        served = [_day(target, loader, day), _day(target, loader, day + 1)]
    for got in (trained, served):
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_arms_of_one_snapshot_started_together_train_once(
    target: SandboxTarget, tmp_path: Path
) -> None:
    snapshot = _snapshot(target, _copy(target, tmp_path, "another snapshot, another model"))
    arms = [_arm(target, snapshot), _arm(target, snapshot), _arm(target, snapshot)]
    try:
        for arm in arms:
            arm.spawn()
        for arm in arms:
            arm.wait_ready()
        assert [arm.loaded_model for arm in arms] == [False, True, True]
        day = target.world.online_start_day
        first = arms[0].serve(day, target.user_ids())[0]
        assert all(np.array_equal(arm.serve(day, target.user_ids())[0], first) for arm in arms)
    finally:
        for arm in arms:
            arm.close()


def test_an_unreadable_entry_costs_a_training_and_is_replaced(
    target: SandboxTarget, tmp_path: Path
) -> None:
    snapshot = _snapshot(target, _copy(target, tmp_path, "its cached model gets corrupted"))
    with _arm(target, snapshot) as arm:
        pass
    entry = target.models.entry(arm._cache_key)  # type: ignore[arg-type]
    (entry / MODEL_FILE).write_bytes(b"not a pickle")
    with _arm(target, snapshot) as arm:
        assert not arm.loaded_model  # it trained, and serves
        assert arm.serve(target.world.online_start_day, target.user_ids())[0].shape[0] > 0
    assert not entry.exists()
    with _arm(target, snapshot) as arm:
        assert not arm.loaded_model
    with _arm(target, snapshot) as arm:
        assert arm.loaded_model


def test_code_under_test_cannot_write_another_snapshots_model(
    target: SandboxTarget, tmp_path: Path
) -> None:
    """A treatment that tries to replace the control's cached model (so the control would
    serve what the treatment wants) finds it read-only, like everything but its own staging
    directory."""
    control = _snapshot(target, target.repo_path)
    with _arm(target, control):
        pass
    entries = [p for p in target.models.root.iterdir() if (p / MODEL_FILE).is_file()]
    before = {p: (p / MODEL_FILE).read_bytes() for p in entries}
    repo = _copy(target, tmp_path, "a hostile treatment")
    attempt = "try:\n    open({!r}, 'wb').write(b'owned')\nexcept Exception:\n    pass"
    hostile = "\n".join(attempt.format(str(p / MODEL_FILE)) for p in entries)
    init = repo / "recsys" / "__init__.py"
    init.write_text(init.read_text() + "\n" + hostile + "\n")
    with _arm(target, _snapshot(target, repo)) as arm:
        assert not arm.loaded_model
    assert {p: (p / MODEL_FILE).read_bytes() for p in entries} == before


def test_entries_beyond_the_limit_go_least_recently_used_first(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models", max_entries=2)
    for key in ("a", "b", "c"):
        plan = cache.plan(key)
        assert plan.action == "train" and plan.path is not None
        (plan.path / MODEL_FILE).write_bytes(key.encode())
        cache.finish(plan, saved=True)
        if key == "b":
            assert cache.plan("a").action == "load"  # "a" used again: "b" is now the oldest
    assert sorted(p.name for p in cache.root.iterdir()) == ["a", "c"]
    plan = cache.plan("d")
    cache.finish(plan, saved=False)  # nothing saved: nothing sealed, no staging left
    assert sorted(p.name for p in cache.root.iterdir()) == ["a", "c"]


def test_clearing_removes_sealed_models_but_not_a_training_in_flight(tmp_path: Path) -> None:
    """A workspace done with its sandbox frees the disk its models take (about 400 MB
    each on `default`), without pulling the staging directory from under an arm that is
    still training."""
    cache = ModelCache(tmp_path / "models")
    for key in ("a", "b"):
        plan = cache.plan(key)
        (plan.path / MODEL_FILE).write_bytes(key.encode())  # type: ignore[operator]
        cache.finish(plan, saved=True)
    training = cache.plan("c")
    cache.clear()
    assert cache.plan("a").action == "train" and cache.plan("b").action == "train"
    assert training.path is not None and training.path.is_dir()


# ------------------------------------------------------------ training through the pre-period
def _feedback(target: SandboxTarget, day: int) -> dict[str, np.ndarray]:
    users = target.user_ids()[::3]
    n = users.size
    released = np.flatnonzero(target.world.population.item_release_day <= day)
    return {
        "user": users.astype(np.int64),
        "item": released[users % released.size].astype(np.int64),
        "day": np.full(n, day, dtype=np.int64),
        "position": np.zeros(n, dtype=np.int64),
        "click": (users % 2 == 0).astype(np.int8),
        "watch_time": (users % 2 == 0).astype(np.float64) * 20.0,
    }


def test_a_deferred_arm_learns_the_held_feedback_exactly_as_one_that_waited(
    target: SandboxTarget,
) -> None:
    """A treatment trains while the control serves the pre-period; the days of feedback it
    is given meanwhile are held and replayed in order once it is ready, so it serves what
    an arm that waited for its training and learned each day at once serves."""
    snapshot = _snapshot(target, target.repo_path)
    day = target.world.online_start_day
    days = [_feedback(target, day), _feedback(target, day + 1)]
    with _arm(target, snapshot, cached=False) as waited:
        for rows in days:
            waited.update(rows)
        expected = waited.serve(day + 2, target.user_ids())[0]
    deferred = _arm(target, snapshot, cached=False)
    try:
        deferred.spawn()
        deferred.defer_readiness()
        for rows in days:
            deferred.begin_update(rows)
            deferred.finish_update()
        assert deferred.deferred  # nothing was sent: it may still be training
        served = deferred.serve(day + 2, target.user_ids())[0]
        assert not deferred.deferred
    finally:
        deferred.close()
    assert np.array_equal(served, expected)


def test_a_rollout_trains_its_treatment_through_the_pre_period_with_the_same_result(
    target: SandboxTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The treatment's training runs beside the control's pre-period (it serves no one
    there), and the rollout's numbers are those of one that waited for it first."""
    control = _snapshot(target, target.repo_path)
    treatment = _snapshot(target, _copy(target, tmp_path, "a treatment"))
    users = target.user_ids()
    assignment = np.where(users % 2 == 0, 0, 1).astype(np.int64)
    phases = [Phase(assignment=assignment, days=2, seed=11)]
    deferred: list[str] = []
    defer = ArmProcess.defer_readiness

    def spy(arm: ArmProcess) -> None:
        deferred.append(arm.name)
        defer(arm)

    monkeypatch.setattr(ArmProcess, "defer_readiness", spy)
    overlapped = target._simulate({0: control, 1: treatment}, phases)
    assert deferred == ["treatment"]
    monkeypatch.setattr("agentx.sandbox.target._trains_through_pre_period", lambda *_: False)
    waited = target._simulate({0: control, 1: treatment}, phases)
    assert deferred == ["treatment"]  # not again
    assert_same_timeline(overlapped, waited)
