"""The proving ground's qualitative calibration, on the tiny world, measured by ground truth.

`benchmarks/calibration.py` measures the quantitative targets on the shipped worlds; these
tests keep the properties that make the sandbox credible from silently regressing:
the closed-loop baseline beats a random and a popularity-only slate, a plausible lever hurts
a guardrail, and a readout of the first days can disagree with the long-term truth.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from agentx.agents.evaluation.truth import classify_truth
from agentx.research.catalog import load_catalog
from agentx.sandbox.calibration import popularity_slate, random_slate
from agentx.sandbox.target import SandboxTarget
from agentx.settings import load_settings
from agentx.workspace import git
from agentx.workspace.edits import apply_edits


def _variant(target: SandboxTarget, name: str, edit: Callable[[Path], None]) -> Path:
    path = target.root / "variants" / name
    if not path.exists():
        git.add_worktree(target.repo_path, path, f"variant/{name}")
        edit(path)
    return path


def _config(pattern: str, value: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        config = path / "config.toml"
        text, count = re.subn(pattern, value, config.read_text(), flags=re.MULTILINE)
        assert count == 1
        config.write_text(text)

    return edit


def test_the_baseline_beats_random_and_popular_slates(tiny_target: SandboxTarget) -> None:
    """A production-like baseline that is hard to beat, not a strawman."""
    random = tiny_target.ground_truth(_variant(tiny_target, "random", random_slate))
    popular = tiny_target.ground_truth(_variant(tiny_target, "popular", popularity_slate))
    assert random.relative["watch_time"] < -0.2
    assert popular.relative["watch_time"] < -0.05
    assert random.relative["active_days"] < 0.0  # bad slates cost return visits too


def test_a_plausible_lever_hurts_a_guardrail(tiny_target: SandboxTarget) -> None:
    """A much larger candidate pool breaks the latency budget; users abandon and return less."""
    big_pool = _variant(tiny_target, "pool", _config(r"^mf_pool\s*=\s*\d+", "mf_pool = 300"))
    truth = tiny_target.ground_truth(big_pool)
    assert truth.metrics["latency_ms"] > tiny_target.world_params.latency_budget_ms
    assert truth.relative["active_days"] < 0.0


def test_a_catalog_technique_wins_the_north_star_while_breaking_a_guardrail(
    tiny_target: SandboxTarget,
) -> None:
    """The trade the guardrails exist for: the favourite-category channel adds recall that
    users watch, and so many candidates that latency rises past the guardrail's tolerance
    (while staying under the budget, so users do not abandon)."""
    technique = load_catalog()["category_channel"]
    recipe = technique.render_recipe(technique.default_params())
    channel = _variant(tiny_target, "category", lambda path: apply_edits(path, recipe))
    truth = tiny_target.ground_truth(channel)
    guardrails = load_settings(world="tiny").guardrails
    klass, harmed = classify_truth(truth.relative, "watch_time", guardrails, 0.0)
    assert truth.relative["watch_time"] > 0.0
    assert klass == "harmful" and harmed == ["latency_ms"]
    assert truth.metrics["latency_ms"] < tiny_target.world_params.latency_budget_ms


def test_truth_keeps_the_daily_series_a_short_readout_cannot_see(
    tiny_target: SandboxTarget,
) -> None:
    """The truth horizon outlasts the readout: its daily series shows how effects evolve."""
    explore = _variant(
        tiny_target, "explore", _config(r"^exploration_slots\s*=\s*\d+", "exploration_slots = 2")
    )
    series = tiny_target.truth_series(explore)
    base = tiny_target.truth_series(tiny_target.repo_path)
    assert len(series) == len(base) == tiny_target.world_params.horizon_days
    longest_readout = sum(stage.days for stage in load_settings().stages)
    assert len(series) > longest_readout
    early = sum(series[:3]) / sum(base[:3]) - 1.0
    late = sum(series[-7:]) / sum(base[-7:]) - 1.0
    assert early != late
