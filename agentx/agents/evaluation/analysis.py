"""Effects of one stage's readout: every metric estimated, guardrails checked."""

from __future__ import annotations

import numpy as np

from agentx.models import GuardrailResult, MetricEffect
from agentx.settings import GuardrailSpec
from agentx.stats import StatsError, compare_metric, ratio_effect
from agentx.target.models import MetricSpec, OnlineReadout


def estimate_effects(
    readout: OnlineReadout, specs: list[MetricSpec], alpha: float
) -> tuple[dict[str, MetricEffect], dict[str, str]]:
    """Effect of treatment on every per-user and ratio metric; problems by metric."""
    control, treatment = readout.arms
    mc, mt = readout.metrics[control], readout.metrics[treatment]
    pc, pt = readout.pre[control], readout.pre[treatment]
    effects: dict[str, MetricEffect] = {}
    problems: dict[str, str] = {}
    for spec in specs:
        try:
            if spec.kind == "per_user":
                if spec.name not in mc or spec.name not in mt:
                    raise StatsError(f"metric {spec.name!r} is missing from the readout")
                pre_c, pre_t = pc.get(spec.name), pt.get(spec.name)
                use_pre = (
                    pre_c is not None and pre_t is not None and np.std(np.r_[pre_c, pre_t]) > 0
                )
                est = compare_metric(
                    mc[spec.name],
                    mt[spec.name],
                    pre_c if use_pre else None,
                    pre_t if use_pre else None,
                    alpha=alpha,
                )
            elif spec.kind == "ratio":
                num, den = f"{spec.name}.num", f"{spec.name}.den"
                if num not in mc or num not in mt:
                    raise StatsError(f"metric {spec.name!r} is missing from the readout")
                est = ratio_effect(mc[num], mc[den], mt[num], mt[den], alpha=alpha)
            else:
                continue
        except StatsError as error:
            problems[spec.name] = str(error)
            continue
        effects[spec.name] = MetricEffect(
            metric=spec.name,
            control_mean=_finite(est.control_mean),
            treatment_mean=_finite(est.treatment_mean),
            absolute=_finite(est.absolute),
            relative=_finite(est.relative),
            ci_low=_finite(est.ci_low_rel),
            ci_high=_finite(est.ci_high_rel),
            p_value=_finite(est.p_value, 1.0),
            method=est.method,
            n_control=est.n_control,
            n_treatment=est.n_treatment,
            variance_reduction=_finite(est.variance_reduction),
        )
    return effects, problems


def check_guardrails(
    effects: dict[str, MetricEffect], problems: dict[str, str], guardrails: list[GuardrailSpec]
) -> list[GuardrailResult]:
    """A guardrail breaks when the harm is beyond its tolerance and significant.

    A guardrail whose metric could not be estimated counts as broken: missing evidence
    never passes a launch.
    """
    results: list[GuardrailResult] = []
    for spec in guardrails:
        effect = effects.get(spec.metric)
        if effect is None:
            results.append(
                GuardrailResult(
                    metric=spec.metric,
                    tier=spec.tier,
                    relative=0.0,
                    ci_low=0.0,
                    ci_high=0.0,
                    breached=spec.tier != "observe",
                    detail=f"not measurable: {problems.get(spec.metric, 'missing')}",
                )
            )
            continue
        sign = 1.0 if spec.direction == "higher_is_better" else -1.0
        harm = -sign * effect.relative
        harmful_bound = effect.ci_high if sign > 0 else effect.ci_low
        significant = (sign * harmful_bound) < 0
        if spec.direction == "lower_is_better" and effect.control_mean == 0.0:
            # e.g. errors: any increase from zero is harm beyond tolerance.
            harm = float("inf") if effect.treatment_mean > 0 else 0.0
            significant = effect.treatment_mean > 0
        breached = spec.tier != "observe" and significant and harm > spec.max_relative_harm
        results.append(
            GuardrailResult(
                metric=spec.metric,
                tier=spec.tier,
                relative=effect.relative,
                ci_low=effect.ci_low,
                ci_high=effect.ci_high,
                breached=breached,
                detail=(
                    f"{effect.relative:+.2%} [{effect.ci_low:+.2%}, {effect.ci_high:+.2%}], "
                    f"tolerance {spec.max_relative_harm:.1%}"
                ),
            )
        )
    return results


def _finite(value: float, default: float = 0.0) -> float:
    return float(value) if np.isfinite(value) else default
