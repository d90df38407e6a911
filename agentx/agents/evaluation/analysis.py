"""Effects of one stage's readout: every metric estimated, guardrails checked.

Estimation rules (see docs/evaluation.md):

* per-user metrics: CUPED on the same metric's pre-period value, then Welch;
* ratio metrics (``<name>.num`` / ``<name>.den`` per user): the delta method;
* a metric whose estimate has no sampling error (constant in both arms) is *not measurable*:
  a flat line is far more often broken logging than certainty. The one exception is a
  lower-is-better count whose control is all zero (no errors at all), where any rise is harm;
* an undefined relative effect or interval (control mean 0) is not measurable either.
"""

from __future__ import annotations

import math

import numpy as np

from agentx.agents.evaluation.readout import metric_array, pre_array
from agentx.models import GuardrailResult, MetricEffect, ZeroBaseline
from agentx.settings import GuardrailSpec
from agentx.stats import EffectEstimate, StatsError, compare_metric, ratio_effect
from agentx.target.models import MetricSpec, OnlineReadout

NOT_MEASURABLE = "not measurable"
ROSE_FROM_ZERO = "rose from 0"
ZERO_IN_BOTH = "zero in both arms"


def estimate_effects(
    readout: OnlineReadout, specs: list[MetricSpec], alpha: float
) -> tuple[dict[str, MetricEffect], dict[str, str]]:
    """Effect of treatment on every per-user and ratio metric; problems by metric."""
    control, treatment = readout.arms
    effects: dict[str, MetricEffect] = {}
    problems: dict[str, str] = {}
    for spec in specs:
        if spec.kind not in ("per_user", "ratio"):
            continue
        try:
            est, zero_base = _estimate(readout, spec, control, treatment, alpha)
            effects[spec.name] = _to_effect(spec.name, est, zero_base)
        except StatsError as error:
            problems[spec.name] = str(error)
    return effects, problems


def _estimate(
    readout: OnlineReadout, spec: MetricSpec, control: str, treatment: str, alpha: float
) -> tuple[EffectEstimate, bool]:
    """The estimate and whether it is a zero-baseline lower-is-better count."""
    lower = spec.direction == "lower_is_better"
    if spec.kind == "per_user":
        yc = metric_array(readout, control, spec.name)
        yt = metric_array(readout, treatment, spec.name)
        zero_base = lower and yc.size > 0 and not np.any(yc)
        pc, pt = pre_array(readout, control, spec.name), pre_array(readout, treatment, spec.name)
        use_pre = (
            not zero_base
            and pc is not None
            and pt is not None
            and float(np.ptp(np.concatenate([pc, pt]))) > 0.0
        )
        est = compare_metric(yc, yt, pc if use_pre else None, pt if use_pre else None, alpha=alpha)
    else:
        nc = metric_array(readout, control, f"{spec.name}.num")
        dc = metric_array(readout, control, f"{spec.name}.den")
        nt = metric_array(readout, treatment, f"{spec.name}.num")
        dt = metric_array(readout, treatment, f"{spec.name}.den")
        zero_base = lower and nc.size > 0 and not np.any(nc)
        est = ratio_effect(nc, dc, nt, dt, alpha=alpha)
    if zero_base:
        return est, True
    if est.se == 0.0:
        raise StatsError(
            f"zero variance: {spec.name} is constant in both arms "
            f"({est.control_mean:.6g} vs {est.treatment_mean:.6g}); the metric looks unlogged"
        )
    if not all(math.isfinite(v) for v in (est.relative, est.ci_low_rel, est.ci_high_rel)):
        raise StatsError(
            f"relative effect of {spec.name} is undefined (control mean {est.control_mean:.6g})"
        )
    return est, False


def _to_effect(name: str, est: EffectEstimate, zero_base: bool) -> MetricEffect:
    relative, low, high = (
        (0.0, 0.0, 0.0) if zero_base else (est.relative, est.ci_low_rel, est.ci_high_rel)
    )
    return MetricEffect(
        metric=name,
        control_mean=est.control_mean,
        treatment_mean=est.treatment_mean,
        absolute=est.absolute,
        relative=relative,
        ci_low=low,
        ci_high=high,
        p_value=est.p_value,
        method=est.method + ("; zero baseline" if zero_base else ""),
        n_control=est.n_control,
        n_treatment=est.n_treatment,
        variance_reduction=est.variance_reduction,
    )


def check_guardrails(
    effects: dict[str, MetricEffect],
    problems: dict[str, str],
    guardrails: list[GuardrailSpec],
    alpha: float = 0.05,
) -> list[GuardrailResult]:
    """A guardrail breaks when the harm is beyond its tolerance AND significant at ``alpha``.

    "Significant" is the metric's own two-sided test (p < alpha) with the effect in the harmful
    direction; "beyond tolerance" compares the point estimate of the relative harm with
    ``max_relative_harm``. A lower-is-better metric with a zero control (no errors) is harmed
    by any significant rise. A guardrail whose metric could not be estimated counts as broken
    unless its tier is observe: missing evidence never passes a launch.
    """
    results: list[GuardrailResult] = []
    for spec in guardrails:
        effect = effects.get(spec.metric)
        if effect is None:
            reason = problems.get(spec.metric, "the target does not report this metric")
            results.append(unmeasured_guardrail(spec, f"{NOT_MEASURABLE}: {reason}"))
            continue
        sign = 1.0 if spec.direction == "higher_is_better" else -1.0
        harmful_direction = sign * effect.absolute < 0.0
        significant = effect.p_value < alpha and harmful_direction
        zero_base = effect.method.endswith("zero baseline")
        zero: ZeroBaseline | None = None
        if zero_base:
            harm = math.inf if effect.treatment_mean > effect.control_mean else 0.0
            zero = ZeroBaseline.ROSE if harm else ZeroBaseline.FLAT
            detail = (
                f"{ROSE_FROM_ZERO} to {effect.treatment_mean:.4g} per user (p={effect.p_value:.3g})"
                if harm
                else ZERO_IN_BOTH
            )
        else:
            harm = -sign * effect.relative
            detail = (
                f"{effect.relative:+.2%} [{effect.ci_low:+.2%}, {effect.ci_high:+.2%}], "
                f"p={effect.p_value:.3g}"
            )
        breached = spec.tier != "observe" and significant and harm > spec.max_relative_harm
        results.append(
            GuardrailResult(
                metric=spec.metric,
                tier=spec.tier,
                relative=effect.relative,
                ci_low=effect.ci_low,
                ci_high=effect.ci_high,
                breached=breached,
                detail=f"{detail}, tolerance {spec.max_relative_harm:.1%}",
                zero_baseline=zero,
            )
        )
    return results


def is_measured(result: GuardrailResult) -> bool:
    """Whether the guardrail's metric was estimated (False: it counts as broken)."""
    return result.measured


def unmeasured_guardrail(spec: GuardrailSpec, detail: str) -> GuardrailResult:
    """A guardrail without evidence: broken unless its tier is observe, because missing
    evidence never passes a launch (or a merge)."""
    return GuardrailResult(
        metric=spec.metric,
        tier=spec.tier,
        relative=0.0,
        ci_low=0.0,
        ci_high=0.0,
        breached=spec.tier != "observe",
        detail=detail,
        measured=False,
    )


def within_tolerance(result: GuardrailResult, spec: GuardrailSpec) -> bool:
    """Whether the interval already rules out harm beyond tolerance (non-inferiority).

    Stricter than "not breached": used before stopping early, when later stages would
    otherwise have had the power to catch a harm this stage cannot yet see.
    """
    if not result.measured or result.zero_baseline == ZeroBaseline.ROSE:
        return False
    if result.zero_baseline == ZeroBaseline.FLAT:
        return True
    if spec.direction == "higher_is_better":
        return result.ci_low >= -spec.max_relative_harm
    return result.ci_high <= spec.max_relative_harm
