"""The simulated world: loading, determinism, A/A, levers with trade-offs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from agentx.sandbox.online import SandboxWorld
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldError, WorldParams, load_world, shipped_worlds
from agentx.workspace import git


def test_shipped_worlds_load_and_differ() -> None:
    worlds = {name: load_world(name) for name in shipped_worlds()}
    assert {"default", "fresh", "niche", "tiny"} <= set(worlds)
    assert worlds["fresh"].freshness_weight > worlds["default"].freshness_weight
    assert worlds["niche"].taste_concentration < worlds["default"].taste_concentration


def test_invalid_world_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "position_bias_eta": -1}))
    with pytest.raises(WorldError, match="position_bias_eta"):
        load_world(path)
    path.write_text(json.dumps({"name": "bad", "n_userz": 5}))
    with pytest.raises(WorldError, match="n_userz"):
        load_world(path)
    with pytest.raises(WorldError, match="shipped worlds"):
        load_world("no-such-world")


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
    second = tiny_target.collect(control, treatment, assignment, days=3, seed=4)
    for name in ("watch_time", "clicks", "active_days"):
        assert np.array_equal(first.metrics["control"][name], second.metrics["control"][name])
    assert first.metrics["control"]["watch_time"].sum() > 0
    assert len(first.pre["control"]["watch_time"]) == len(first.users["control"])


def _variant(target: SandboxTarget, tmp_path: Path, pattern: str, replacement: str) -> Path:
    path = tmp_path / "variant"
    git.add_worktree(target.repo_path, path, f"test/{tmp_path.name}")
    config = path / "config.toml"
    config.write_text(re.sub(pattern, replacement, config.read_text(), flags=re.MULTILINE))
    return path


def test_levers_have_real_trade_offs(tiny_target: SandboxTarget, tmp_path: Path) -> None:
    """A bigger candidate pool costs latency beyond the budget; exploration helps."""
    pool = _variant(tiny_target, tmp_path / "a", r"^mf_pool\s*=\s*\d+", "mf_pool = 200")
    truth_pool = tiny_target.ground_truth(pool)
    assert truth_pool.relative["latency_ms"] > 0.5
    explore = _variant(
        tiny_target, tmp_path / "b", r"^exploration_slots\s*=\s*\d+", "exploration_slots = 2"
    )
    truth_explore = tiny_target.ground_truth(explore)
    assert truth_explore.relative["tail_share"] > 0.0
    assert truth_explore.relative["watch_time"] > 0.0
