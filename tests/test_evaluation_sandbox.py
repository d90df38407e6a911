"""The Evaluation Agent on the real tiny sandbox: real levers, real simulator, ground truth."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentx.agents.evaluation.rollout import run_rollout
from agentx.agents.evaluation.truth import tally_verdicts
from agentx.agents.evaluation.verdict import decide, status_of
from agentx.models import Decision, ExperimentStatus, RootCause, Verdict
from agentx.sandbox.calibration import popularity_slate
from agentx.sandbox.target import SandboxTarget
from agentx.settings import Settings, load_settings
from agentx.workspace import git


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(world="tiny", workspace=tmp_path_factory.mktemp("ws"), seed=0)


def _variant(target: SandboxTarget, root: Path, name: str, pattern: str, value: str) -> Path:
    path = root / name
    git.add_worktree(target.repo_path, path, f"eval-test/{root.name}/{name}")
    config = path / "config.toml"
    config.write_text(re.sub(pattern, value, config.read_text(), flags=re.MULTILINE))
    return path


def _evaluate(
    target: SandboxTarget,
    workdir: Path,
    experiment_id: str,
    settings: Settings,
    control_dir: Path | None = None,
) -> Verdict:
    """Roll ``workdir`` out against ``control_dir`` (default: the baseline) and judge it.

    True effects are relative to the control that was actually served.
    """
    control_dir = control_dir or target.repo_path
    control = target.launch("control", control_dir)
    treatment = target.launch("treatment", workdir)
    rollout = run_rollout(target, control, treatment, experiment_id, settings)
    verdict = decide(rollout, settings.north_star, settings.alpha)
    treated, base = target.truth_of(workdir), target.truth_of(control_dir)
    verdict.true_effects = {
        name: treated[name] / base[name] - 1.0 if base[name] else treated[name] for name in treated
    }
    return verdict


def test_levers_on_the_tiny_sandbox_against_ground_truth(
    tiny_target: SandboxTarget, settings: Settings, tmp_path: Path
) -> None:
    """A large true win is kept, a latency harm is vetoed, an A/A is not kept.

    Real recommender wins are small and the tiny world has few users, so the win here is
    the baseline itself rolled out against a popularity-only control: an effect of tens of
    percent that any sound evaluation must keep.
    """
    popular = tmp_path / "popular"
    git.add_worktree(tiny_target.repo_path, popular, f"eval-test/{tmp_path.name}/popular")
    popularity_slate(popular)
    pool = _variant(tiny_target, tmp_path, "pool", r"^mf_pool\s*=\s*\d+", "mf_pool = 300")
    win = _evaluate(tiny_target, tiny_target.repo_path, "baseline-vs-popular", settings, popular)
    assert win.decision == Decision.KEEP, win.caveats
    assert win.north_star is not None and win.north_star.ci_low > 0
    assert win.true_effects["watch_time"] > 0.1
    harm = _evaluate(tiny_target, pool, "pool300", settings)
    assert harm.decision == Decision.DISCARD and harm.root_cause == RootCause.GUARDRAIL_HARM
    assert status_of(harm) == ExperimentStatus.VETOED
    assert any("latency_ms" in c and "canary" in c for c in harm.caveats)
    # One A/A draw (its assignment is keyed on the id). A false KEEP has a few percent chance
    # per draw; the rate itself is tested over many draws in the statistics tests. After the
    # sandbox's recalibration the draw keyed "aa" happened to be one of those few.
    same = _evaluate(tiny_target, tiny_target.repo_path, "aa-0", settings)
    assert same.decision != Decision.KEEP
    assert same.guardrails and not any(g.breached for g in same.guardrails)
    tally = tally_verdicts([win, harm, same], settings.north_star, settings.guardrails)
    assert tally.counts["true_keep"] == 1
    assert tally.counts["harmful_blocked"] == 1
    assert tally.counts["correct_discard"] == 1
    assert tally.harmful_launches == 0
