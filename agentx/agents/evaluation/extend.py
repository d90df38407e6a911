"""The follow-up of an inconclusive (EXTEND) experiment, sized by a power calculation.

Why: EXTEND means "more traffic could decide"; dropping it into the avoid set threw away
most of the true wins the loop missed. The follow-up re-runs the same change with a final
stage large enough to detect the effect the first run saw (or the smallest effect worth
having) with the configured power: more treatment share first (up to half the users), then
more days (up to the world's horizon). If even the largest allowed stage cannot add enough
evidence, there is no follow-up and the verdict stands.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field
from scipy import stats

from agentx.models import MetricEffect, Verdict
from agentx.settings import ExtendSettings, RolloutStage
from agentx.stats import StatsError, power_two_sample, required_n_per_arm

MAX_SHARE = 0.5


class FollowUpPlan(BaseModel):
    """The stages of a follow-up and the power arithmetic behind them."""

    stages: list[RolloutStage]
    n_required: int = Field(description="Users per arm the power calculation asks for.")
    n_planned: int = Field(description="Effective users per arm of the planned final stage.")
    power: float = Field(description="Power of the planned final stage for the target effect.")
    effect: float = Field(description="Relative effect the follow-up is sized to detect.")

    def line(self) -> str:
        """One line for the trace."""
        last = self.stages[-1]
        return (
            f"follow-up: {last.name} at {last.treatment_share:.0%} for {last.days} days, "
            f"~{self.n_planned} users per arm (needed {self.n_required}) for "
            f"{self.effect:+.2%}: power {self.power:.0%}"
        )


def relative_se(effect: MetricEffect, alpha: float) -> float:
    """Standard error of the relative effect implied by its interval at level ``alpha``."""
    z = float(stats.norm.isf(alpha / 2.0))
    return (effect.ci_high - effect.ci_low) / (2.0 * z)


def effect_sd(effect: MetricEffect, alpha: float) -> float:
    """Per-user standard deviation implied by the estimate's interval (after CUPED)."""
    se_absolute = relative_se(effect, alpha) * abs(effect.control_mean)
    per_arm = math.sqrt(1.0 / effect.n_control + 1.0 / effect.n_treatment)
    return se_absolute / per_arm


def plan_follow_up(
    verdict: Verdict,
    stages: list[RolloutStage],
    settings: ExtendSettings,
    *,
    alpha: float,
    ci_alpha: float,
    min_effect: float,
    horizon_days: int | None = None,
    traffic_share: float = 1.0,
) -> tuple[FollowUpPlan | None, str]:
    """The follow-up's stages for an EXTEND verdict, or None and why there is none.

    Only the final stage changes (earlier stages stay the same guards, so a canary still
    halts a harm early). The target effect is the larger of the measured gain and
    ``min_effect`` (the smallest effect worth shipping). ``alpha`` is the level of the final
    test, ``ci_alpha`` the level of the intervals in ``verdict`` (the run's alpha);
    ``horizon_days`` the most days the target simulates over the whole rollout.
    ``traffic_share`` is the fraction of its users alone that the final stage kept in its
    slice of a wave's traffic layer (:meth:`TrafficSlot.kept`): a follow-up runs alone, so
    its stages are sized for ``1 / traffic_share`` times the users the verdict measured on.
    """
    if not 0.0 < traffic_share <= 1.0:
        return None, f"the follow-up cannot be sized: traffic share {traffic_share} not in (0, 1]"
    effect = verdict.north_star
    if effect is None or effect.n_control < 2 or effect.n_treatment < 2:
        return None, "no north-star estimate to size a follow-up from"
    final = stages[-1]
    try:
        sd = effect_sd(effect, ci_alpha)
        target = max(abs(effect.relative), min_effect)
        n_required = required_n_per_arm(
            target * abs(effect.control_mean), sd, alpha=alpha, power=settings.power
        )
    except (StatsError, ZeroDivisionError, ValueError) as error:
        return None, f"the follow-up cannot be sized: {error}"
    # users per arm the same final stage gets alone (on all the traffic), and the population
    # it draws from
    n_now = min(effect.n_control, effect.n_treatment) / traffic_share
    users = n_now / final.treatment_share
    factor = n_required / n_now  # user-days needed relative to that final stage
    share = min(MAX_SHARE, max(final.treatment_share, final.treatment_share * factor))
    share = math.ceil(share * 100) / 100 if share < MAX_SHARE else MAX_SHARE
    # The horizon covers the whole rollout: the earlier stages' days come out of it.
    room = (horizon_days or settings.max_days) - sum(stage.days for stage in stages[:-1])
    max_days = max(1, min(settings.max_days, room))
    days_needed = final.days * factor * final.treatment_share / share
    days = max(final.days, min(max_days, math.ceil(days_needed)))
    gain = (share * days) / (final.treatment_share * final.days * traffic_share)
    if gain < settings.min_gain:
        return None, (
            f"more traffic cannot decide within the budget: the largest final stage "
            f"({share:.0%} for {days} days) adds only {gain:.2f}x the evidence"
        )
    n_planned = int(users * share * days / final.days)
    try:
        power = power_two_sample(
            target * abs(effect.control_mean), sd, max(2, n_planned), alpha=alpha
        )
    except StatsError:
        power = float("nan")
    if power < settings.min_power:  # NaN (unsizable) passes: the stage was sized above
        return None, (
            f"more traffic cannot decide within the budget: the largest final stage "
            f"({share:.0%} for {days} days, ~{n_planned} users per arm) reaches {power:.0%} "
            f"power for {target:+.2%}, below extend.min_power {settings.min_power:.0%}"
        )
    planned = [
        *stages[:-1],
        RolloutStage(name=final.name, treatment_share=share, days=days),
    ]
    return (
        FollowUpPlan(
            stages=planned,
            n_required=n_required,
            n_planned=n_planned,
            power=round(power, 4),
            effect=round(target, 6),
        ),
        "",
    )
