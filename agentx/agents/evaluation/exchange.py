"""The composite exchange score of a stage, and the rule that lets it trade a small loss.

Why a separate rule: the paper's launch reviews accept a small loss on one metric when the
others gain more at agreed exchange rates. Here that judgement is mechanical and bounded: the
score can only excuse a MODERATE guardrail whose loss is at most ``max_trade_loss`` and only
when the weighted net effect is significantly positive; a severe breach is never excused, and
an unmeasurable guardrail cannot be traded (nothing is known to trade).
"""

from __future__ import annotations

import numpy as np

from agentx.agents.evaluation.analysis import is_measured
from agentx.agents.evaluation.policy import EXCHANGE_METRIC, ExchangeSpec
from agentx.agents.evaluation.readout import metric_array, pre_array
from agentx.models import Acceptance, GuardrailResult, MetricEffect
from agentx.stats import StatsError
from agentx.stats.exchange import exchange_score, linearize_per_user, linearize_ratio
from agentx.target.models import MetricSpec, OnlineReadout

TRADED = "traded for the exchange score"

Pair = tuple[np.ndarray, np.ndarray]


def estimate_exchange(
    readout: OnlineReadout, specs: list[MetricSpec], spec: ExchangeSpec, alpha: float
) -> tuple[MetricEffect | None, str | None]:
    """The exchange score as a pseudo-metric named ``exchange``, or why it is unavailable."""
    if not spec.active:
        return None, None
    by_name = {s.name: s for s in specs}
    control, treatment = readout.arms
    weights: dict[str, float] = {}
    components: dict[str, Pair] = {}
    pre: dict[str, Pair] = {}
    try:
        for name, weight in spec.weights.items():
            if weight == 0:
                continue
            metric = by_name.get(name)
            if metric is None or metric.kind not in ("per_user", "ratio"):
                raise StatsError(f"exchange metric {name!r} is not a per-user or ratio metric")
            weights[name] = weight if metric.direction == "higher_is_better" else -weight
            components[name] = _linearized(readout, metric, control, treatment)
            covariate = _pre_linearized(readout, metric, control, treatment)
            if covariate is not None:
                pre[name] = covariate
        result = exchange_score(components, weights, pre, alpha=alpha)
    except StatsError as error:
        return None, f"exchange score not measurable: {error}"
    effect = MetricEffect(
        metric=EXCHANGE_METRIC,
        control_mean=0.0,
        treatment_mean=result.score,
        absolute=result.score,
        relative=result.score,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=result.p_value,
        method=f"exchange({result.method}): "
        + ", ".join(f"{k} {v:+.2%}" for k, v in result.contributions.items()),
        n_control=result.n_control,
        n_treatment=result.n_treatment,
        variance_reduction=result.variance_reduction,
    )
    return effect, None


def _linearized(readout: OnlineReadout, metric: MetricSpec, control: str, treatment: str) -> Pair:
    """Checked per-user linearised values of ``metric`` in both arms (raises StatsError)."""
    get = metric_array
    if metric.kind == "per_user":
        return linearize_per_user(
            get(readout, control, metric.name), get(readout, treatment, metric.name)
        )
    return linearize_ratio(
        get(readout, control, f"{metric.name}.num"),
        get(readout, control, f"{metric.name}.den"),
        get(readout, treatment, f"{metric.name}.num"),
        get(readout, treatment, f"{metric.name}.den"),
    )


def _pre_linearized(
    readout: OnlineReadout, metric: MetricSpec, control: str, treatment: str
) -> Pair | None:
    """The same linearisation on the pre-period (a CUPED covariate), or None if unusable."""
    if metric.kind == "per_user":
        keys = [metric.name]
    else:
        keys = [f"{metric.name}.num", f"{metric.name}.den"]
    arrays = [(pre_array(readout, control, k), pre_array(readout, treatment, k)) for k in keys]
    if any(c is None or t is None for c, t in arrays):
        return None
    try:
        if metric.kind == "per_user":
            return linearize_per_user(arrays[0][0], arrays[0][1])  # type: ignore[arg-type]
        (nc, nt), (dc, dt) = arrays
        return linearize_ratio(nc, dc, nt, dt)  # type: ignore[arg-type]
    except StatsError:
        return None


def trade_moderate(
    guardrails: list[GuardrailResult],
    exchange: MetricEffect | None,
    spec: ExchangeSpec,
) -> list[GuardrailResult]:
    """Guardrails with tradeable moderate breaches marked as traded (no longer breached).

    A breach is tradeable when it is moderate, measured, its whole interval keeps the loss
    within ``spec.max_trade_loss`` (a small loss for sure, not just on average), and the
    exchange score's interval lies above 0.
    """
    if exchange is None or not spec.active or exchange.ci_low <= 0.0:
        return guardrails
    out: list[GuardrailResult] = []
    for g in guardrails:
        loss = max(abs(g.ci_low), abs(g.ci_high))  # a breach's interval excludes 0
        if g.breached and g.tier == "moderate" and is_measured(g) and loss <= spec.max_trade_loss:
            g = g.model_copy(
                update={
                    "breached": False,
                    "accepted": Acceptance.EXCHANGE,
                    "detail": f"{g.detail}; {TRADED} {exchange.relative:+.2%} "
                    f"[{exchange.ci_low:+.2%}, {exchange.ci_high:+.2%}]",
                }
            )
        out.append(g)
    return out


def was_traded(result: GuardrailResult) -> bool:
    """Whether a breach of this guardrail was accepted by the exchange score."""
    return result.accepted == Acceptance.EXCHANGE
