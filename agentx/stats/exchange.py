"""Composite "exchange" score: several metrics' relative effects weighed into one number.

Why: launch reviews trade metrics against each other at agreed exchange rates ("1 % of return
visits is worth 2 % of watch time"), so a small loss on one metric can be acceptable when the
others gain more. Summing the metrics' relative effects is easy; the interval is the hard part,
because the metrics are measured on the same users and are correlated.

How: each metric is *linearised* into per-user values whose difference of arm means is exactly
the metric's relative effect:

* per-user metric ``y``: ``u_i = y_i / mean_c(y) - 1``;
* ratio metric ``R = sum(num) / sum(den)``: ``u_i = (num_i - R_c den_i) / (R_c mean_arm(den))``
  (the delta-method linearisation of Deng et al., 2018, "Applying the delta method in metric
  analytics"), so ``mean_t(u) - mean_c(u) = R_t / R_c - 1``.

The score's per-user value is ``z_i = sum_m w_m u_im`` and the score is ``mean_t(z) -
mean_c(z)``: one Welch test on ``z`` (after CUPED on the same composite of the pre-period, when
given) accounts for every covariance between metrics. The normalisers (``mean_c(y)``, ``R_c``)
are treated as constants; their noise enters only multiplied by the effect itself, so it is of
second order near zero effect (the benchmark checks the A/A false-positive rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from agentx.stats._validation import as_sample, float_errors_as_stats_errors, same_length
from agentx.stats.compare import compare_metric
from agentx.stats.errors import StatsError


@dataclass(frozen=True)
class ExchangeResult:
    """The weighted net relative effect with its interval and the per-metric contributions.

    ``score`` is in relative units (0.01 = +1 % of the north-star's worth); ``contributions``
    maps each metric to ``weight x relative effect``; ``method`` is "welch" or "cuped+welch".
    """

    score: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float
    n_control: int
    n_treatment: int
    method: str
    variance_reduction: float
    contributions: dict[str, float] = field(default_factory=dict)


@float_errors_as_stats_errors
def linearize_per_user(control: np.ndarray, treatment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values ``y / mean_c(y) - 1`` of both arms (relative-effect linearisation).

    Raises StatsError for arms with < 2 values, NaN/inf, or a control mean of 0 (the relative
    effect is then undefined).
    """
    c = as_sample(control, "control")
    t = as_sample(treatment, "treatment")
    base = float(np.mean(c))
    if base == 0.0:
        raise StatsError("the control mean is 0: a relative effect is undefined")
    return c / base - 1.0, t / base - 1.0


@float_errors_as_stats_errors
def linearize_ratio(
    num_c: np.ndarray, den_c: np.ndarray, num_t: np.ndarray, den_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user delta-method values of a ratio metric; see the module docstring.

    Raises StatsError for < 2 users per arm, NaN/inf, length mismatches, a zero denominator
    total in either arm, or a zero control ratio.
    """
    nc, dc = as_sample(num_c, "num_c"), as_sample(den_c, "den_c")
    nt, dt = as_sample(num_t, "num_t"), as_sample(den_t, "den_t")
    same_length(nc, dc, "num_c", "den_c")
    same_length(nt, dt, "num_t", "den_t")
    mean_dc, mean_dt = float(np.mean(dc)), float(np.mean(dt))
    if mean_dc == 0.0 or mean_dt == 0.0:
        raise StatsError("a ratio denominator sums to 0 in one arm: the ratio is undefined")
    r_c = float(np.sum(nc) / np.sum(dc))
    if r_c == 0.0:
        raise StatsError("the control ratio is 0: a relative effect is undefined")
    return (nc - r_c * dc) / (r_c * mean_dc), (nt - r_c * dt) / (r_c * mean_dt)


@float_errors_as_stats_errors
def exchange_score(
    components: Mapping[str, tuple[np.ndarray, np.ndarray]],
    weights: Mapping[str, float],
    pre_components: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    alpha: float = 0.05,
) -> ExchangeResult:
    """Weighted sum of linearised metrics, tested as one per-user metric.

    ``components[name] = (control, treatment)`` are linearised per-user values (see
    :func:`linearize_per_user`, :func:`linearize_ratio`), ``weights[name]`` the signed exchange
    rate (negative for metrics where lower is better). ``pre_components`` holds the same
    linearisation of the pre-period, for CUPED; metrics missing there are simply left out of
    the covariate. Raises StatsError when a weighted metric has no component, when no weight is
    non-zero, or on arrays the underlying tests reject.
    """
    used = {name: float(w) for name, w in weights.items() if float(w) != 0.0}
    if not used:
        raise StatsError("exchange_score needs at least one non-zero weight")
    missing = sorted(set(used) - set(components))
    if missing:
        raise StatsError(f"exchange_score has no values for weighted metric(s) {missing}")
    z_c = z_t = None
    contributions: dict[str, float] = {}
    for name, weight in used.items():
        c = as_sample(components[name][0], f"{name} control")
        t = as_sample(components[name][1], f"{name} treatment")
        if z_c is not None and (c.size != z_c.size or t.size != z_t.size):
            raise StatsError(f"{name} has a different number of users than the other metrics")
        contributions[name] = weight * float(np.mean(t) - np.mean(c))
        z_c = weight * c if z_c is None else z_c + weight * c
        z_t = weight * t if z_t is None else z_t + weight * t
    assert z_c is not None and z_t is not None
    x_c = x_t = None
    for name, weight in used.items():
        if not pre_components or name not in pre_components:
            continue
        pc = as_sample(pre_components[name][0], f"{name} pre control")
        pt = as_sample(pre_components[name][1], f"{name} pre treatment")
        same_length(pc, z_c, f"{name} pre control", "control")
        same_length(pt, z_t, f"{name} pre treatment", "treatment")
        x_c = weight * pc if x_c is None else x_c + weight * pc
        x_t = weight * pt if x_t is None else x_t + weight * pt
    est = compare_metric(z_c, z_t, x_c, x_t, alpha=alpha)
    return ExchangeResult(
        score=est.absolute,
        ci_low=est.ci_low_abs,
        ci_high=est.ci_high_abs,
        p_value=est.p_value,
        se=est.se,
        n_control=est.n_control,
        n_treatment=est.n_treatment,
        method=est.method,
        variance_reduction=est.variance_reduction,
        contributions=contributions,
    )


__all__ = ["ExchangeResult", "exchange_score", "linearize_per_user", "linearize_ratio"]
