"""The simulated world: loading, determinism, A/A, levers with trade-offs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from agentx.sandbox.online import SandboxWorld
from agentx.sandbox.target import SandboxTarget, content_hash
from agentx.sandbox.world import WorldError, WorldParams, load_world, shipped_worlds
from agentx.target.contract import StageTraffic
from agentx.workspace import git
from agentx.workspace import scratch as scratch_dirs


def _cluster(world: WorldParams, name: str):
    return next(cluster for cluster in world.clusters if cluster.name == name)


def test_shipped_worlds_load_and_differ() -> None:
    worlds = {name: load_world(name) for name in shipped_worlds()}
    assert {"default", "fresh", "niche", "tiny"} <= set(worlds)
    assert worlds["default"].n_users >= 200_000
    explorers = {name: _cluster(w, "explorers").share for name, w in worlds.items()}
    assert explorers["fresh"] > explorers["default"] > explorers["niche"]
    loyal = {name: _cluster(w, "loyalists").taste_concentration for name, w in worlds.items()}
    assert loyal["niche"] < loyal["default"]
    assert worlds["default"].horizon_days >= 28


def test_invalid_world_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "fatigue_rate": -1}))
    with pytest.raises(WorldError, match="fatigue_rate"):
        load_world(path)
    clusters = [{"name": "a", "share": 0.5, "position_bias_eta": -1}]
    path.write_text(json.dumps({"name": "bad", "clusters": clusters}))
    with pytest.raises(WorldError, match=r"clusters\.0\.position_bias_eta"):
        load_world(path)
    path.write_text(json.dumps({"name": "bad", "clusters": [{"name": "a", "share": 0.5}]}))
    with pytest.raises(WorldError, match="shares must sum to 1"):
        load_world(path)
    path.write_text(json.dumps({"name": "bad", "n_userz": 5}))
    with pytest.raises(WorldError, match="n_userz"):
        load_world(path)
    path.write_text(json.dumps({"name": "bad", "rollout_shares": [0.2, 0.1, 0.3]}))
    with pytest.raises(WorldError, match="rollout_shares must be positive and must not shrink"):
        load_world(path)
    with pytest.raises(WorldError, match="shipped worlds"):
        load_world("no-such-world")


def test_rollout_shares_are_not_part_of_what_the_simulator_does() -> None:
    """Changing how experiments split the users must not rebuild the world or invalidate
    its cached truths."""
    world = load_world("default")
    other = world.model_copy(update={"rollout_shares": (0.05, 0.2, 0.5)})
    assert other.behaviour() == world.behaviour()
    assert world.model_copy(update={"fatigue_rate": 0.2}).behaviour() != world.behaviour()


def test_yaml_world_file(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("name: mine\nn_users: 200\nn_items: 100\nn_creators: 10\n")
    assert load_world(path).n_users == 200


def test_same_seed_same_logs(tiny_world: WorldParams) -> None:
    a, b = SandboxWorld(tiny_world), SandboxWorld(tiny_world)
    assert np.array_equal(a.log.item, b.log.item)
    assert np.array_equal(a.log.click, b.log.click)
    assert a.log.click.sum() > 0


def test_aa_comparison_has_no_true_effect(tiny_target: SandboxTarget) -> None:
    truth = tiny_target.ground_truth(tiny_target.repo_path)
    assert all(abs(value) < 1e-12 for value in truth.relative.values())


def test_online_readout_is_reproducible(tiny_target: SandboxTarget) -> None:
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    users = tiny_target.user_ids()
    assignment = (users % 2).astype(np.int64)
    first = tiny_target.collect(control, treatment, assignment, days=3, seed=4)
    shutil.rmtree(tiny_target.root / "readouts")  # simulate it again, not read it back
    second = tiny_target.collect(control, treatment, assignment, days=3, seed=4)
    for name in ("watch_time", "clicks", "active_days"):
        assert np.array_equal(first.metrics["control"][name], second.metrics["control"][name])
    assert first.metrics["control"]["watch_time"].sum() > 0
    assert len(first.pre["control"]["watch_time"]) == len(first.users["control"])


def test_a_rollout_says_where_its_time_went(tiny_target: SandboxTarget) -> None:
    """The benchmark's split: wall time of each part and the CPU time each process reported."""
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    assignment = (tiny_target.user_ids() % 2).astype(np.int64)
    tiny_target.collect(control, treatment, assignment, days=2, seed=13)
    timing = tiny_target.last_timing
    parts = ("arms_train_s", "arms_serve_s", "arms_update_s", "simulator_s", "other_s")
    assert sum(timing[part] for part in parts) == pytest.approx(timing["total_s"])
    cpu = ("arms_train_cpu_s", "arms_serve_cpu_s", "arms_update_cpu_s", "simulator_cpu_s")
    assert all(timing[part] > 0 for part in cpu), timing
    tiny_target.rollback(treatment)


def _variant(target: SandboxTarget, tmp_path: Path, pattern: str, replacement: str) -> Path:
    path = tmp_path / "variant"
    git.add_worktree(target.repo_path, path, f"test/{tmp_path.name}")
    config = path / "config.toml"
    config.write_text(re.sub(pattern, replacement, config.read_text(), flags=re.MULTILINE))
    return path


def test_levers_have_real_trade_offs(tiny_target: SandboxTarget, tmp_path: Path) -> None:
    """A bigger candidate pool costs latency; exploration slots reach the long tail."""
    pool = _variant(tiny_target, tmp_path / "a", r"^mf_pool\s*=\s*\d+", "mf_pool = 200")
    truth_pool = tiny_target.ground_truth(pool)
    assert truth_pool.relative["latency_ms"] > 0.5
    explore = _variant(
        tiny_target, tmp_path / "b", r"^exploration_slots\s*=\s*\d+", "exploration_slots = 2"
    )
    truth_explore = tiny_target.ground_truth(explore)
    assert truth_explore.relative["tail_share"] > 0.05


def test_user_state_never_holds_a_users_by_items_array(tiny_world: WorldParams) -> None:
    """Memory grows with users x history: a world with 10x the items keeps the same state."""
    small = SandboxWorld(tiny_world.model_copy(update={"n_users": 300}))
    large = SandboxWorld(tiny_world.model_copy(update={"n_users": 300, "n_items": 4000}))
    for name, value in vars(small.state_after_logs).items():
        assert value.shape == getattr(large.state_after_logs, name).shape, name


def test_playing_visits_in_blocks_changes_nothing(
    tiny_world: WorldParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator plays a day's visits in cache-sized blocks; any block size gives the
    same clicks, watch time, totals and user state, bit for bit (a step that read another
    visitor's row would break this)."""
    from agentx.sandbox import simulator
    from agentx.sandbox.logs import logging_policy_slates

    world = SandboxWorld(tiny_world.model_copy(update={"n_users": 600}))
    params, population = world.params, world.population

    def play(block: int) -> tuple[list[simulator.DayOutcome], simulator.UserState, dict]:
        monkeypatch.setattr(simulator, "ROW_BLOCK", block)
        sim = simulator.Simulator(params, population, world.tail_items)
        state = world.fresh_state()
        totals = simulator.WindowTotals.zeros(population.n_users, population.n_items)
        rng = np.random.default_rng(3)
        outcomes = []
        for day in range(world.online_start_day, world.online_start_day + 4):
            draws = sim.streams(7, 0, day)
            users = sim.visitors(state, day, draws)
            slates = logging_policy_slates(params, population, users, day, rng)
            slates[rng.random(slates.shape) < 0.1] = -1  # empty slots too
            latency = (params.latency_base_ms + 40 * rng.random(users.size)).astype(np.float32)
            traffic = simulator.DayTraffic(users, slates, latency, np.zeros(users.size))
            outcomes.append(sim.sessions(state, traffic, day, draws, totals))
        return outcomes, state, {**totals.sums, "daily": np.array(totals.daily_watch)}

    one_pass, state_one, totals_one = play(1_000_000)
    blocked, state_blocked, totals_blocked = play(7)
    assert sum(int(o.clicks.sum()) for o in one_pass) > 0
    for whole, parts in zip(one_pass, blocked, strict=True):
        for name in ("shown", "clicks", "watch"):
            assert np.array_equal(getattr(whole, name), getattr(parts, name)), name
    for name, value in vars(state_one).items():
        assert np.array_equal(value, getattr(state_blocked, name)), name
    for name, value in totals_one.items():
        assert np.array_equal(value, totals_blocked[name]), name


def test_stages_follow_each_other_in_time(tiny_target: SandboxTarget) -> None:
    """A stage after an earlier one reads different days than the same stage alone."""
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    users = tiny_target.user_ids()
    everyone = (users % 2).astype(np.int64)
    canary = np.where(users % 10 < 2, everyone, -1)
    alone = tiny_target.collect(control, treatment, everyone, days=2, seed=9)
    later = tiny_target.collect(
        control, treatment, everyone, days=2, seed=9, earlier=[StageTraffic(canary, 3, 8)]
    )
    assert not np.array_equal(
        alone.metrics["control"]["watch_time"], later.metrics["control"]["watch_time"]
    )
    # The pre-period of a rollout precedes its first stage and is the same for every stage.
    first = tiny_target.collect(control, treatment, canary, days=3, seed=8)
    members = np.isin(later.users["control"], first.users["control"])
    assert np.array_equal(
        first.pre["control"]["watch_time"], later.pre["control"]["watch_time"][members]
    )


def _broken_variant(target: SandboxTarget, tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "broken"
    git.add_worktree(target.repo_path, path, f"test/{tmp_path.name}")
    pipeline = path / "recsys" / "pipeline.py"
    text = pipeline.read_text()
    assert old in text
    pipeline.write_text(text.replace(old, new, 1))
    return path


_RAISES = "        raise ZeroDivisionError('the model cannot learn')\n"
_DIES = (
    "        import os, sys\n"
    "        print('the learner ran out of road', file=sys.stderr, flush=True)\n"
    "        os._exit(3)\n"
)


@pytest.mark.parametrize(
    ("body", "reported"),
    [(_RAISES, "ZeroDivisionError"), (_DIES, "the learner ran out of road")],
    ids=["raises", "dies-hard"],
)
def test_an_arm_that_fails_to_learn_is_reported_not_raised(
    tiny_target: SandboxTarget, tmp_path: Path, body: str, reported: str
) -> None:
    """The closed loop calls the arm's update every day; a crash there halts the readout.
    An exception reaches the parent on the protocol; a process that dies without a word
    (as the kernel's OOM killer or a segfault leaves it) is reported with the last lines
    it wrote to stderr."""
    broken = _broken_variant(
        tiny_target,
        tmp_path,
        "    def update(self",
        f"    def update(self, *_args: object) -> None:\n{body}\n    def _replaced_update(self",
    )
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", broken)
    users = tiny_target.user_ids()
    readout = tiny_target.collect(control, treatment, (users % 2).astype(np.int64), 2, seed=1)
    assert set(readout.errors) == {"treatment"}
    assert reported in readout.errors["treatment"]


def test_a_snapshot_altered_after_launch_is_refused(tiny_target: SandboxTarget) -> None:
    """What an arm runs is frozen at launch and re-hashed on use."""
    control = tiny_target.launch("control", tiny_target.repo_path)
    arm = tiny_target.launch("treatment", tiny_target.repo_path)
    victim = Path(arm.artefact) / "config.toml"
    original = victim.read_text()
    try:
        victim.write_text(original + "\n# tampered\n")
        users = tiny_target.user_ids()
        readout = tiny_target.collect(control, arm, (users % 2).astype(np.int64), 2, seed=1)
        assert readout.errors and "altered" in " ".join(readout.errors.values())
    finally:
        victim.write_text(original)
    relaunched = tiny_target.launch("treatment", tiny_target.repo_path)
    assert relaunched.ok and (Path(relaunched.artefact) / "config.toml").read_text() == original


def test_a_live_rollout_gives_what_a_replay_gives(tiny_target: SandboxTarget) -> None:
    """Stages collected in order continue one live timeline (arms kept running); a resumed
    process, which must replay the earlier stages, reads exactly the same numbers."""
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    users = tiny_target.user_ids()
    canary = np.where(users % 10 < 2, (users % 2).astype(np.int64), -1)
    everyone = (users % 2).astype(np.int64)
    tiny_target.collect(control, treatment, canary, days=2, seed=21)
    live = tiny_target.collect(
        control, treatment, everyone, days=2, seed=22, earlier=[StageTraffic(canary, 2, 21)]
    )

    def running(target: SandboxTarget) -> bool:
        """Whether a live rollout treats with ``treatment``'s code."""
        snapshot = Path(treatment.artefact).name
        return any(snapshot in live.roles[1:] for live in target._live.values())

    assert running(tiny_target)  # the arms kept running between the stages
    shutil.rmtree(tiny_target.root / "readouts")  # the resumed process must simulate
    resumed = SandboxTarget(tiny_target.root, tiny_target.world_params, tiny_target.seed)
    replayed = resumed.collect(
        control, treatment, everyone, days=2, seed=22, earlier=[StageTraffic(canary, 2, 21)]
    )
    for arm in ("control", "treatment"):
        assert np.array_equal(live.metrics[arm]["watch_time"], replayed.metrics[arm]["watch_time"])
    tiny_target.rollback(treatment)
    resumed.rollback(treatment)
    assert not running(tiny_target) and not running(resumed)


@pytest.mark.parametrize("case", ["room", "memory short", "over the count"])
def test_live_rollouts_are_closed_past_the_count_or_while_memory_is_short(
    tiny_target: SandboxTarget, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Live rollouts stay up for their next stage, unless the machine is short of memory
    or more than ``MAX_LIVE`` are live: then the older ones are closed (their arm
    processes end), never the one just run."""
    from agentx.sandbox import target as target_module

    short = case != "room"
    monkeypatch.setattr(target_module, "memory_is_short", lambda reserve: case == "memory short")
    if case == "over the count":
        monkeypatch.setattr(target_module, "MAX_LIVE", 1)
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    everyone = (tiny_target.user_ids() % 2).astype(np.int64)
    offset = 2 * ["room", "memory short", "over the count"].index(case)
    seeds = (61 + offset, 62 + offset)  # this case's rollouts, among the session's

    def mine(seed: int) -> list:
        return [v for v in tiny_target._live.values() if v.phases[-1][2] == seed]

    tiny_target.collect(control, treatment, everyone, days=1, seed=seeds[0])
    (first,) = mine(seeds[0])
    arms = list(first.timeline.arms.values())
    tiny_target.collect(control, treatment, everyone, days=1, seed=seeds[1])
    assert len(mine(seeds[1])) == 1  # the rollout just run stays up either way
    assert len(mine(seeds[0])) == (0 if short else 1)
    running = [arm._process is not None and arm._process.poll() is None for arm in arms]
    assert running == [not short] * len(arms)
    tiny_target.rollback(treatment)


def test_a_prefetched_truth_runs_beside_the_rollout_and_is_the_verdicts_truth(
    tiny_target: SandboxTarget, tmp_path: Path
) -> None:
    """The truth started when the arms are up leaves the live rollout running, and the
    verdict reads exactly what computing it then would give."""
    workdir = tmp_path / "variant"
    git.add_worktree(tiny_target.repo_path, workdir, f"prefetch-test/{tmp_path.name}")
    config = workdir / "config.toml"
    config.write_text(config.read_text() + "\n# a state whose truth is not cached yet\n")
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", workdir)
    users = tiny_target.user_ids()
    tiny_target.collect(control, treatment, (users % 2).astype(np.int64), days=2, seed=41)
    entry = tiny_target.root / "truth" / f"{content_hash(workdir)}.json"
    assert not entry.exists()

    tiny_target.prefetch_ground_truth(workdir)
    deadline = time.monotonic() + 600
    while not entry.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert entry.exists(), "the prefetched truth never landed"
    snapshot = Path(treatment.artefact).name
    assert any(snapshot in live.roles[1:] for live in tiny_target._live.values())

    prefetched = tiny_target.ground_truth(workdir)  # the verdict's call
    assert not any(snapshot in live.roles[1:] for live in tiny_target._live.values())
    entry.unlink()
    assert tiny_target.truth_of(workdir) == prefetched.metrics  # computed again: identical


def test_a_sandbox_adopts_only_the_truths_it_would_compute_itself(
    tiny_target: SandboxTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A benchmark's judge takes over a run's truths instead of computing them again, but
    only from a sandbox of the same world and simulator and with its own arm seed."""
    baseline = tiny_target.truth_of(tiny_target.repo_path)
    judge = SandboxTarget.create(tmp_path / "judge", tiny_target.world_params, seed=0)
    other_seed = SandboxTarget.create(tmp_path / "seed3", tiny_target.world_params, seed=3)
    other_world = SandboxTarget.create(
        tmp_path / "other", tiny_target.world_params.model_copy(update={"n_users": 333}), seed=0
    )
    assert other_seed.adopt_truths(tiny_target.root) == 0  # another arm seed: another truth
    assert other_world.adopt_truths(tiny_target.root) == 0  # another world
    assert judge.adopt_truths(tiny_target.root) >= 1

    def no_simulation(*args: object, **kwargs: object) -> None:
        raise AssertionError("an adopted truth was computed again")

    monkeypatch.setattr(judge, "_compute_truth", no_simulation)
    assert judge.truth_of(judge.repo_path) == baseline
    assert judge.adopt_truths(tiny_target.root) == 0  # nothing new to take over


def test_a_collected_stage_is_read_back_not_simulated_again(tiny_target: SandboxTarget) -> None:
    """Replays of recorded traffic (harness evolution) read the stage they already ran: the
    same arrays bit for bit, no arm process started; an altered entry is simulated again."""
    control = tiny_target.launch("control", tiny_target.repo_path)
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)
    users = tiny_target.user_ids()
    canary = np.where(users % 10 < 3, (users % 2).astype(np.int64), -1)
    everyone = (users % 2).astype(np.int64)
    earlier = [StageTraffic(canary, 2, 31)]
    first = tiny_target.collect(control, treatment, everyone, days=2, seed=32, earlier=earlier)
    tiny_target.rollback(treatment)  # its arm processes stop: a re-simulation would restart them
    treatment = tiny_target.launch("treatment", tiny_target.repo_path)  # the same snapshot
    tiny_target.last_timing = {}
    control_b = control.model_copy(update={"name": "base"})
    again = tiny_target.collect(control_b, treatment, everyone, days=2, seed=32, earlier=earlier)
    assert tiny_target.last_timing == {}  # nothing was simulated
    assert again.arms == ["base", "treatment"]
    for old, new in (("control", "base"), ("treatment", "treatment")):
        assert np.array_equal(first.users[old], again.users[new])
        assert first.metrics[old].keys() == again.metrics[new].keys()
        for name, values in first.metrics[old].items():
            assert np.array_equal(values, again.metrics[new][name]), name
            assert np.array_equal(first.pre[old][name], again.pre[new][name]), name
    for entry in (tiny_target.root / "readouts").glob("*.npz"):
        entry.write_bytes(entry.read_bytes()[:-10] + bytes(10))  # altered behind our back
    rerun = tiny_target.collect(control, treatment, everyone, days=2, seed=32, earlier=earlier)
    assert tiny_target.last_timing  # simulated again, to the same numbers
    assert np.array_equal(
        first.metrics["treatment"]["watch_time"], rerun.metrics["treatment"]["watch_time"]
    )
    tiny_target.rollback(treatment)


def test_the_readout_cache_keeps_under_its_budget(tmp_path: Path) -> None:
    """Least recently used entries go first; an entry leaves with its checksum."""
    from agentx.sandbox import cache, readouts

    for index, name in enumerate(("old", "middle", "new")):
        staging = tmp_path / f"{name}.tmp"
        staging.write_bytes(bytes(1000))
        cache.seal(staging, tmp_path / f"{name}.npz")
        os.utime(tmp_path / f"{name}.npz", (index, index))
    readouts.evict(tmp_path, budget=2500)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "middle.npz",
        "middle.npz.sha256",
        "new.npz",
        "new.npz.sha256",
    ]


def test_the_system_description_follows_the_baselines_files(tiny_target: SandboxTarget) -> None:
    """Built once per state of the repository (every stage asks for it), rebuilt as soon as
    a file changes: a module added to the baseline appears in the map."""
    first = tiny_target.describe()
    assert tiny_target.describe() is first  # not mapped again
    added = tiny_target.repo_path / "recsys" / "extra_channel.py"
    try:
        added.write_text("def extra_channel():\n    return 1\n")
        mapped = {info.path: info for info in tiny_target.describe().files}
        assert [s.name for s in mapped["recsys/extra_channel.py"].symbols] == ["extra_channel"]
    finally:
        added.unlink()
    assert "recsys/extra_channel.py" not in {info.path for info in tiny_target.describe().files}


def test_a_sealed_entry_that_is_not_a_readout_is_simulated_again(tmp_path: Path) -> None:
    """An intact entry this code did not write (another version's layout) is discarded,
    not read: the caller simulates the stage again."""
    from agentx.sandbox import cache, readouts

    staging = tmp_path / "other.tmp"
    with staging.open("wb") as handle:
        np.savez(handle, something=np.arange(3))
    entry = tmp_path / "other.npz"
    cache.seal(staging, entry)
    assert readouts.load(entry, ["control", "treatment"], days=2) is None
    assert not entry.exists()


_SPAWN_AN_ARM = """
import sys, time
from pathlib import Path
from agentx.sandbox.arms import ArmProcess
arm = ArmProcess("left", Path(sys.argv[1]), Path(sys.argv[2]), seed=0, slate_size=10, n_items=400)
arm.spawn()
print("spawned", flush=True)
time.sleep(120)
"""


def test_what_a_killed_parent_left_on_disk_is_swept_away(
    tiny_target: SandboxTarget, tmp_path: Path
) -> None:
    """kill -9 of the process that started an arm runs no clean-up. The arm's stderr is an
    anonymous file, so nothing of it stays; its confined run's scratch directory (which
    bubblewrap needs as a real one) is stamped with its owner and swept away by the next
    process that makes one, while a live owner's directory is kept."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", _SPAWN_AN_ARM, str(tiny_target.repo_path),
         str(tiny_target.root / "data" / "sample")],
        stdout=subprocess.PIPE, env={**os.environ, "TMPDIR": str(scratch)}, text=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "spawned"
    finally:
        parent.kill()
        parent.wait()
    left = sorted(p.name for p in scratch.iterdir())
    assert len(left) == 1 and left[0].startswith("agentx-run-")  # no agentx-arm-* any more
    mine = Path(tempfile.mkdtemp(prefix="agentx-run-", dir=scratch))
    (mine / scratch_dirs.OWNER_FILE).write_text(scratch_dirs._owner_stamp())
    assert scratch_dirs.sweep_orphans("agentx-run-", scratch) == 1
    assert list(scratch.iterdir()) == [mine]
