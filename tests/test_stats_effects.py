"""Welch and delta-method effect estimates: agreement with scipy, coverage, degenerate data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from agentx.stats import StatsError, ratio_effect, welch_effect

pytestmark = pytest.mark.filterwarnings("error")


def _coverage_bounds(n_sims: int, level: float = 0.95) -> tuple[float, float]:
    """Band a correct interval's empirical coverage falls in except with probability 1e-4."""
    sd = math.sqrt(level * (1 - level) / n_sims)
    return level - 3.9 * sd, level + 3.9 * sd


# --- Welch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_matches_scipy(seed: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    c = rng.normal(10.0, 2.0, size=40 + 13 * seed)
    t = rng.normal(10.8, 3.5, size=55)
    est = welch_effect(c, t, alpha=alpha)
    ref = stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert est.df == pytest.approx(ref.df, rel=1e-12)
    assert (est.ci_low_abs, est.ci_high_abs) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert est.absolute == pytest.approx(t.mean() - c.mean(), rel=1e-12)
    assert est.se == pytest.approx(math.sqrt(c.var(ddof=1) / c.size + t.var(ddof=1) / t.size))
    assert est.relative == pytest.approx(t.mean() / c.mean() - 1, rel=1e-12)
    assert (est.n_control, est.n_treatment, est.method) == (c.size, t.size, "welch")
    assert est.variance_reduction == 0.0


def test_welch_relative_interval_is_delta_method() -> None:
    rng = np.random.default_rng(3)
    c, t = rng.exponential(2.0, 300), rng.exponential(2.3, 250)
    est = welch_effect(c, t)
    mc, mt = c.mean(), t.mean()
    se_ratio = math.sqrt(t.var(ddof=1) / t.size / mc**2 + mt**2 * c.var(ddof=1) / c.size / mc**4)
    z = stats.norm.ppf(0.975)
    assert est.ci_low_rel == pytest.approx(mt / mc - 1 - z * se_ratio, rel=1e-10)
    assert est.ci_high_rel == pytest.approx(mt / mc - 1 + z * se_ratio, rel=1e-10)


def test_welch_ci_and_relative_ci_cover_truth() -> None:
    """Skewed (lognormal) revenue-like data, true lift +5 %."""
    rng = np.random.default_rng(11)
    n_sims, n = 2000, 400
    mean_c = math.exp(0.5)  # E[lognormal(0, 1)]
    c = rng.lognormal(0.0, 1.0, size=(n_sims, n))
    t = 1.05 * rng.lognormal(0.0, 1.0, size=(n_sims, n))
    abs_hits = rel_hits = 0
    for i in range(n_sims):
        e = welch_effect(c[i], t[i])
        abs_hits += e.ci_low_abs <= 0.05 * mean_c <= e.ci_high_abs
        rel_hits += e.ci_low_rel <= 0.05 <= e.ci_high_rel
    lo, hi = _coverage_bounds(n_sims)
    assert lo <= abs_hits / n_sims <= hi
    assert lo <= rel_hits / n_sims <= hi


def test_zero_variance_equal_means_is_no_effect() -> None:
    # The float means of 50 and 60 copies of 0.1 differ in the last bit; that is not an effect.
    est = welch_effect(np.full(50, 0.1), np.full(60, 0.1))
    assert est.p_value == 1.0 and est.se == 0.0
    assert est.absolute == pytest.approx(0.0, abs=1e-15)
    assert (est.ci_low_abs, est.ci_high_abs) == pytest.approx((0.0, 0.0), abs=1e-15)
    assert est.ci_low_abs <= 0.0 <= est.ci_high_abs
    assert (est.relative, est.ci_low_rel, est.ci_high_rel) == pytest.approx((0, 0, 0), abs=1e-14)
    assert est.df == 108
    # Same value computed two ways (rounding differs): still no effect.
    assert welch_effect(np.full(5, 0.1 + 0.2), np.full(5, 0.3)).p_value == 1.0
    # An arm whose spread is only rounding noise counts as constant too.
    noisy = welch_effect(np.array([0.3, 0.1 + 0.2, 0.3, 0.3]), np.full(4, 0.3))
    assert noisy.p_value == 1.0 and noisy.se == 0.0


def test_constant_arm_of_non_representable_value_gives_no_warning() -> None:
    """scipy warns ("catastrophic cancellation") here; welch_effect must not."""
    t = np.random.default_rng(5).normal(0.3, 0.05, size=40)
    est = welch_effect(np.full(30, 0.1), t)
    assert est.df == pytest.approx(t.size - 1)
    assert est.se == pytest.approx(t.std(ddof=1) / math.sqrt(t.size))
    assert est.p_value < 1e-10


def test_zero_variance_different_means_is_certain() -> None:
    est = welch_effect(np.zeros(20), np.ones(20))
    assert est.p_value == 0.0
    assert (est.ci_low_abs, est.absolute, est.ci_high_abs) == (1.0, 1.0, 1.0)
    assert math.isnan(est.relative)  # control mean 0: relative lift undefined


def test_one_constant_arm_still_matches_scipy() -> None:
    c = np.zeros(30)
    t = np.random.default_rng(5).binomial(1, 0.2, size=30).astype(float)
    est = welch_effect(c, t)
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert est.df == pytest.approx(t.size - 1)


def test_zero_control_mean_gives_nan_relative_but_valid_absolute() -> None:
    est = welch_effect(np.array([-1.0, 1.0, -2.0, 2.0]), np.array([0.5, 1.5, 1.0, 2.0]))
    assert math.isnan(est.relative) and math.isnan(est.ci_low_rel)
    assert est.absolute == pytest.approx(1.25)
    assert 0.0 < est.p_value < 1.0


# --- ratio metrics -----------------------------------------------------------------------------


def _ctr_data(
    rng: np.random.Generator, n_sims: int, n: int, ctr_mean: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user impressions and clicks with strongly user-dependent CTR (clustered clicks)."""
    impressions = 1 + rng.poisson(rng.gamma(2.0, 10.0, size=(n_sims, n)))
    a = 0.5
    p_user = rng.beta(a, a * (1 - ctr_mean) / ctr_mean, size=(n_sims, n))
    clicks = rng.binomial(impressions, p_user)
    return clicks.astype(float), impressions.astype(float)


def test_ratio_delta_method_coverage_near_nominal() -> None:
    rng = np.random.default_rng(2024)
    n_sims, n = 2000, 1000
    ctr_c, ctr_t = 0.05, 0.055  # true CTRs: E[p_user], since p_user is independent of volume
    clk_c, imp_c = _ctr_data(rng, n_sims, n, ctr_c)
    clk_t, imp_t = _ctr_data(rng, n_sims, n, ctr_t)
    abs_hits = rel_hits = naive_hits = 0
    z = stats.norm.ppf(0.975)
    for i in range(n_sims):
        e = ratio_effect(clk_c[i], imp_c[i], clk_t[i], imp_t[i])
        abs_hits += e.ci_low_abs <= ctr_t - ctr_c <= e.ci_high_abs
        rel_hits += e.ci_low_rel <= ctr_t / ctr_c - 1 <= e.ci_high_rel
        # What treating impressions as independent Bernoulli trials would claim:
        n_c, n_t = imp_c[i].sum(), imp_t[i].sum()
        se_naive = math.sqrt(
            e.control_mean * (1 - e.control_mean) / n_c
            + e.treatment_mean * (1 - e.treatment_mean) / n_t
        )
        naive_hits += abs(e.absolute - (ctr_t - ctr_c)) <= z * se_naive
    lo, hi = _coverage_bounds(n_sims)
    assert lo <= abs_hits / n_sims <= hi
    assert lo <= rel_hits / n_sims <= hi
    # The coverage check has teeth: the clustering-blind binomial interval fails it badly.
    assert naive_hits / n_sims < 0.85


def test_ratio_variance_is_textbook_delta_formula() -> None:
    """Var(sum(num)/sum(den)) ~= (s_nn/m_d^2 - 2 m_n s_nd/m_d^3 + m_n^2 s_dd/m_d^4) / n."""
    rng = np.random.default_rng(12)
    clk, imp = _ctr_data(rng, 2, 500, 0.3)

    def var_ratio(num: np.ndarray, den: np.ndarray) -> float:
        m_n, m_d = num.mean(), den.mean()
        cov = np.cov(num, den, ddof=1)
        return (
            cov[0, 0] / m_d**2 - 2 * m_n * cov[0, 1] / m_d**3 + m_n**2 * cov[1, 1] / m_d**4
        ) / num.size

    est = ratio_effect(clk[0], imp[0], clk[1], imp[1])
    expected = math.sqrt(var_ratio(clk[0], imp[0]) + var_ratio(clk[1], imp[1]))
    assert est.se == pytest.approx(expected, rel=1e-10)
    assert est.control_mean == pytest.approx(clk[0].sum() / imp[0].sum(), rel=1e-12)


def test_ratio_with_unit_denominator_equals_mean_comparison() -> None:
    rng = np.random.default_rng(9)
    c, t = rng.normal(3.0, 1.0, 500), rng.normal(3.2, 1.5, 400)
    r = ratio_effect(c, np.ones_like(c), t, np.ones_like(t))
    w = welch_effect(c, t)
    assert r.absolute == pytest.approx(w.absolute, rel=1e-12)
    assert r.se == pytest.approx(w.se, rel=1e-12)
    assert r.relative == pytest.approx(w.relative, rel=1e-12)
    assert (r.ci_low_rel, r.ci_high_rel) == pytest.approx((w.ci_low_rel, w.ci_high_rel))
    assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(w.absolute) / w.se), rel=1e-10)
    assert r.method == "delta" and math.isinf(r.df)


def test_ratio_zero_variance() -> None:
    den = np.array([10.0, 20.0, 30.0])
    same = ratio_effect(0.1 * den, den, 0.1 * den, den)
    assert same.p_value == 1.0 and same.absolute == pytest.approx(0.0)
    diff = ratio_effect(0.1 * den, den, 0.2 * den, den)
    assert diff.p_value == 0.0 and diff.absolute == pytest.approx(0.1)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "treatment", "message"),
    [
        ([], [1.0, 2.0], "control needs at least 2"),
        ([1.0], [1.0, 2.0], "control needs at least 2"),
        ([1.0, 2.0], [1.0, float("nan")], "treatment contains 1 NaN/inf"),
        ([1.0, float("inf")], [1.0, 2.0], "control contains 1 NaN/inf"),
        ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], "1-D"),
        (["a", "b"], [1.0, 2.0], "numeric"),
    ],
)
def test_welch_bad_input(control: list, treatment: list, message: str) -> None:
    with pytest.raises(StatsError, match=message):
        welch_effect(control, treatment)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [1e60, 1e-60])
def test_values_whose_squares_overflow_or_underflow_are_refused(scale: float) -> None:
    with pytest.raises(StatsError, match="rescale"):
        welch_effect(scale * np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0]))


def test_large_but_safe_scale_is_scale_invariant() -> None:
    rng = np.random.default_rng(10)
    c, t = rng.normal(size=50), rng.normal(0.3, size=50)
    base = welch_effect(c, t)
    for scale in (1e40, 1e-40):
        scaled = welch_effect(scale * c, scale * t)
        assert scaled.p_value == pytest.approx(base.p_value, rel=1e-9)
        assert scaled.relative == pytest.approx(base.relative, rel=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, float("nan"), "x"])
def test_welch_bad_alpha(alpha: float) -> None:
    with pytest.raises(StatsError, match="alpha"):
        welch_effect([1.0, 2.0], [2.0, 3.0], alpha=alpha)


def test_ratio_bad_input() -> None:
    ok = np.array([1.0, 2.0, 3.0])
    with pytest.raises(StatsError, match="same length"):
        ratio_effect(ok, ok[:2], ok, ok)
    with pytest.raises(StatsError, match="control denominator sums to 0"):
        ratio_effect(ok, np.zeros(3), ok, ok)
    with pytest.raises(StatsError, match="NaN"):
        ratio_effect(ok, ok, np.array([1.0, np.nan, 2.0]), ok)
    assert issubclass(StatsError, ValueError)
