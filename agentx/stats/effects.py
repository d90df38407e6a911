"""Two-sample effect estimates: Welch's t for means, the delta method for ratio metrics.

Why Welch: arms of an A/B test rarely have equal variances (a treatment that changes behaviour
changes the spread too), and Welch loses almost nothing when they are equal.

Why the delta method for relative effects: "+3 %" is what people act on, but the ratio of two
noisy means has its own sampling error. A first-order Taylor expansion of ``m_t / m_c`` gives its
variance; the relative interval uses the *normal* quantile (the delta method is an asymptotic
argument, so a t-correction would be cosmetic), while the absolute interval and the p-value use
the Welch-Satterthwaite t distribution exactly as ``scipy.stats.ttest_ind(equal_var=False)``.

Degenerate data (documented decision): if *both* arms are constant the standard error is 0.
Equal constants give ``p = 1`` and an interval of zero width around 0 (no evidence of any
effect); different constants give ``p = 0`` and a zero-width interval at the difference (the
data leave no doubt); ``df`` is then ``n_control + n_treatment - 2``, the limit of Welch's df
for equal variances. "Constant" and "equal" allow a relative 1e-12 of floating-point noise, so
``0.1 + 0.2`` vs ``0.3`` is not reported as a certain effect. A relative effect against a
control mean of 0 is undefined and reported as NaN (the absolute effect is still valid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from agentx.stats._validation import (
    as_sample,
    check_probability,
    float_errors_as_stats_errors,
    is_constant,
    nearly_equal,
    same_length,
)
from agentx.stats.errors import StatsError


@dataclass(frozen=True)
class EffectEstimate:
    """Treatment-minus-control effect of one metric.

    ``absolute = treatment_mean - control_mean`` with interval ``[ci_low_abs, ci_high_abs]``;
    ``relative`` is the effect as a fraction of the control mean (0.03 = +3 %) with its
    delta-method interval; ``p_value`` is two-sided for ``absolute == 0``; ``df`` is the
    Welch-Satterthwaite degrees of freedom (``inf`` for normal-approximation methods);
    ``method`` names the procedure ("welch", "cuped+welch", "delta");
    ``variance_reduction`` is the CUPED variance reduction (0 without CUPED).
    """

    control_mean: float
    treatment_mean: float
    absolute: float
    se: float
    ci_low_abs: float
    ci_high_abs: float
    relative: float
    ci_low_rel: float
    ci_high_rel: float
    p_value: float
    df: float
    n_control: int
    n_treatment: int
    method: str
    variance_reduction: float = 0.0

    @property
    def significant(self) -> bool:
        """Whether the absolute interval excludes 0 (i.e. ``p_value < alpha`` used to build it)."""
        return self.ci_low_abs > 0.0 or self.ci_high_abs < 0.0


def relative_interval(
    diff: float,
    var_diff: float,
    base: float,
    var_base: float,
    cov_diff_base: float,
    alpha: float,
) -> tuple[float, float, float]:
    """Delta-method estimate and normal interval of ``diff / base``.

    ``Var(D/M) ~= Var(D)/M^2 + D^2 Var(M)/M^4 - 2 D Cov(D, M)/M^3``. With ``D = m_t - m_c`` and
    ``M = m_c`` (so ``Cov(D, M) = -Var(m_c)``) this is the textbook variance of ``m_t/m_c``;
    the general form also covers CUPED, where ``D`` uses adjusted data but ``M`` does not.
    Returns NaNs when ``base == 0``.
    """
    denom = base * base
    if denom == 0.0:  # base is 0 (or so small its square underflows): relative is undefined
        return math.nan, math.nan, math.nan
    rel = diff / base
    # Same expression with D/M factored out, which avoids M**4 under- or overflowing.
    var_rel = (var_diff + rel * rel * var_base - 2.0 * rel * cov_diff_base) / denom
    if not math.isfinite(var_rel):
        return rel, math.nan, math.nan
    half = float(stats.norm.ppf(1.0 - alpha / 2.0)) * math.sqrt(max(var_rel, 0.0))
    return rel, rel - half, rel + half


@dataclass(frozen=True)
class _Absolute:
    mean_c: float
    mean_t: float
    diff: float
    se: float
    lo: float
    hi: float
    p: float
    df: float


def _welch_absolute(c: np.ndarray, t: np.ndarray, alpha: float) -> _Absolute:
    """Welch's t-test of ``mean(t) - mean(c)``.

    The formulas are those of ``scipy.stats.ttest_ind(t, c, equal_var=False)`` (the tests check
    agreement to 1e-10), written out because scipy emits a RuntimeWarning ("catastrophic
    cancellation") for an arm of identical values such as ``[0.1, 0.1, 0.1]``, and because
    constant arms need the explicit convention described in the module docstring.
    """
    mc, mt = float(np.mean(c)), float(np.mean(t))
    d = mt - mc
    vc = 0.0 if is_constant(c) else float(np.var(c, ddof=1)) / c.size
    vt = 0.0 if is_constant(t) else float(np.var(t, ddof=1)) / t.size
    se2 = vc + vt
    if se2 == 0.0:
        df = float(c.size + t.size - 2)
        if nearly_equal(mc, mt):
            return _Absolute(mc, mt, d, 0.0, min(d, 0.0), max(d, 0.0), 1.0, df)
        return _Absolute(mc, mt, d, 0.0, d, d, 0.0, df)
    se = math.sqrt(se2)
    df = se2 * se2 / (vc * vc / (c.size - 1) + vt * vt / (t.size - 1))
    p = float(2.0 * stats.t.sf(abs(d) / se, df))
    q = float(stats.t.isf(alpha / 2.0, df))
    return _Absolute(mc, mt, d, se, d - q * se, d + q * se, p, df)


@float_errors_as_stats_errors
def welch_effect(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> EffectEstimate:
    """Difference of means by Welch's t-test, plus the delta-method relative effect.

    Raises StatsError if an arm has fewer than 2 finite values or alpha is not in (0, 1).
    """
    c = as_sample(control, "control")
    t = as_sample(treatment, "treatment")
    alpha = check_probability(alpha, "alpha")
    a = _welch_absolute(c, t, alpha)
    var_c = 0.0 if is_constant(c) else float(np.var(c, ddof=1)) / c.size
    rel, rlo, rhi = relative_interval(a.diff, a.se * a.se, a.mean_c, var_c, -var_c, alpha)
    return EffectEstimate(
        control_mean=a.mean_c,
        treatment_mean=a.mean_t,
        absolute=a.diff,
        se=a.se,
        ci_low_abs=a.lo,
        ci_high_abs=a.hi,
        relative=rel,
        ci_low_rel=rlo,
        ci_high_rel=rhi,
        p_value=a.p,
        df=a.df,
        n_control=int(c.size),
        n_treatment=int(t.size),
        method="welch",
    )


def _ratio_and_var(num: np.ndarray, den: np.ndarray, arm: str) -> tuple[float, float]:
    """``R = sum(num)/sum(den)`` and its delta-method variance.

    Linearising ``R = mean(num)/mean(den)`` gives per-user residuals
    ``z_i = (num_i - R den_i) / mean(den)`` and ``Var(R) ~= var(z) / n``. This accounts for the
    clustering of impressions within users, which a per-impression binomial variance ignores.
    """
    mean_den = float(np.mean(den))
    if mean_den == 0.0:
        raise StatsError(f"the {arm} denominator sums to 0: the ratio is undefined")
    r = float(np.sum(num) / np.sum(den))
    z = (num - r * den) / mean_den
    var = 0.0 if is_constant(z) else float(np.var(z, ddof=1)) / num.size
    return r, var


@float_errors_as_stats_errors
def ratio_effect(
    num_c: np.ndarray,
    den_c: np.ndarray,
    num_t: np.ndarray,
    den_t: np.ndarray,
    alpha: float = 0.05,
) -> EffectEstimate:
    """Effect on a ratio metric such as CTR = sum(clicks) / sum(impressions), one row per user.

    Users, not impressions, are the randomisation unit, so impressions of one user are not
    independent; the per-arm variance of ``sum(num)/sum(den)`` comes from the delta method and
    the test is a two-sided z-test (normal approximation, ``df = inf``). ``control_mean`` and
    ``treatment_mean`` are the two ratios. If both ratios have zero variance the same convention
    as :func:`welch_effect` applies. Raises StatsError for fewer than 2 users per arm,
    NaN/inf values, numerator/denominator length mismatch, or a zero denominator total.
    """
    nc = as_sample(num_c, "num_c")
    dc = as_sample(den_c, "den_c")
    nt = as_sample(num_t, "num_t")
    dt = as_sample(den_t, "den_t")
    same_length(nc, dc, "num_c", "den_c")
    same_length(nt, dt, "num_t", "den_t")
    alpha = check_probability(alpha, "alpha")
    rc, var_c = _ratio_and_var(nc, dc, "control")
    rt, var_t = _ratio_and_var(nt, dt, "treatment")
    diff = rt - rc
    se = math.sqrt(var_c + var_t)
    if se == 0.0:
        if nearly_equal(rc, rt):
            p, lo, hi = 1.0, min(diff, 0.0), max(diff, 0.0)
        else:
            p, lo, hi = 0.0, diff, diff
    else:
        z = float(stats.norm.ppf(1.0 - alpha / 2.0))
        p = float(2.0 * stats.norm.sf(abs(diff) / se))
        lo, hi = diff - z * se, diff + z * se
    rel, rlo, rhi = relative_interval(diff, se * se, rc, var_c, -var_c, alpha)
    return EffectEstimate(
        control_mean=rc,
        treatment_mean=rt,
        absolute=diff,
        se=se,
        ci_low_abs=lo,
        ci_high_abs=hi,
        relative=rel,
        ci_low_rel=rlo,
        ci_high_rel=rhi,
        p_value=p,
        df=math.inf,
        n_control=int(nc.size),
        n_treatment=int(nt.size),
        method="delta",
    )
