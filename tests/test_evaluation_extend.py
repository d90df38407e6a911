"""The EXTEND follow-up's sizing (agentx/agents/evaluation/extend.py)."""

from __future__ import annotations

import pytest

from agentx.agents.evaluation.extend import plan_follow_up
from agentx.models import Decision, MetricEffect, Verdict
from agentx.settings import ExtendSettings, RolloutStage

STAGES = [
    RolloutStage(name="canary", treatment_share=0.05, days=2),
    RolloutStage(name="full", treatment_share=0.5, days=14),
]


def _extend(relative: float, n_per_arm: int, half_width: float) -> Verdict:
    """An inconclusive verdict: ``relative`` gain, its interval ``relative +- half_width``."""
    effect = MetricEffect(
        metric="watch_time",
        control_mean=10.0,
        treatment_mean=10.0 * (1 + relative),
        absolute=10.0 * relative,
        relative=relative,
        ci_low=relative - half_width,
        ci_high=relative + half_width,
        p_value=0.2,
        method="welch",
        n_control=n_per_arm,
        n_treatment=n_per_arm,
    )
    return Verdict(experiment_id="e", decision=Decision.EXTEND, north_star=effect)


def _plan(verdict: Verdict, traffic_share: float = 1.0):
    return plan_follow_up(
        verdict,
        STAGES,
        ExtendSettings(),
        alpha=0.05,
        ci_alpha=0.05,
        min_effect=0.005,
        horizon_days=23,
        traffic_share=traffic_share,
    )


def test_a_follow_up_of_a_wave_slice_is_sized_for_all_the_traffic() -> None:
    """An experiment measured on half the users (a wave of two) is followed up alone: the
    follow-up reaches twice the users per arm, which decides an effect the slice could not
    (measured on session 9's `tiny` runs: +8.7% planned at ~700 users per arm, 50% power,
    when all the traffic gives ~1,400)."""
    verdict = _extend(relative=0.08, n_per_arm=700, half_width=0.10)
    alone, why = _plan(verdict)
    assert alone is None and "below extend.min_power" in why
    sliced, why = _plan(verdict, traffic_share=0.5)
    assert sliced is not None, why
    assert sliced.n_planned >= 2 * 700
    assert sliced.power >= ExtendSettings().min_power
    # the final stage is the one sized; the canary guard stays
    assert sliced.stages[0] == STAGES[0] and sliced.stages[-1].name == "full"


def test_a_slice_with_enough_evidence_is_not_followed_up_for_nothing() -> None:
    """Sized up by the slice, the follow-up must still add evidence over what the same
    final stage would give alone; a share outside (0, 1] is refused in one line."""
    verdict = _extend(relative=0.30, n_per_arm=700, half_width=0.28)
    plan, why = _plan(verdict, traffic_share=0.5)
    assert plan is not None
    assert plan.n_planned == pytest.approx(1400 * plan.stages[-1].days / 14, rel=0.02)
    plan, why = _plan(verdict, traffic_share=0.0)
    assert plan is None and "traffic share" in why
