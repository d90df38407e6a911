"""Levers with real trade-offs in the shipped worlds, measured by noise-free ground truth.

These build the full default and niche worlds (a few seconds each) and train real arms.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world
from agentx.workspace import git


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SandboxTarget]:
    root = tmp_path_factory.mktemp("worlds")
    return {
        name: SandboxTarget.create(root / name, load_world(name)) for name in ("default", "niche")
    }


def _variant(target: SandboxTarget, name: str, pattern: str, value: str) -> Path:
    path = target.root / "variants" / name
    if not path.exists():
        git.add_worktree(target.repo_path, path, f"variant/{name}")
        config = path / "config.toml"
        config.write_text(re.sub(pattern, value, config.read_text(), flags=re.MULTILINE))
    return path


def test_a_lever_improves_the_north_star_in_the_default_world(targets) -> None:
    target = targets["default"]
    fresh = _variant(target, "fresh", r"^fresh_pool\s*=\s*\d+", "fresh_pool = 20")
    truth = target.ground_truth(fresh)
    assert truth.relative["watch_time"] > 0.05
    assert truth.relative["active_days"] > 0.0


def test_a_plausible_lever_hurts_a_guardrail_in_the_default_world(targets) -> None:
    target = targets["default"]
    big_pool = _variant(target, "pool", r"^mf_pool\s*=\s*\d+", "mf_pool = 200")
    truth = target.ground_truth(big_pool)
    assert truth.metrics["latency_ms"] > target.world_params.latency_budget_ms
    assert truth.relative["active_days"] < -0.01  # users abandon slow pages and return less


def test_worlds_disagree_on_a_lever(targets) -> None:
    effects = {}
    for name, target in targets.items():
        tighter_cap = _variant(target, "cap2", r"^category_cap\s*=\s*\d+", "category_cap = 2")
        effects[name] = target.ground_truth(tighter_cap).relative["watch_time"]
    assert effects["default"] > 0.01 > -0.01 > effects["niche"]
