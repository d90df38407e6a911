"""The composite exchange score (agentx.stats.exchange): exact point estimates, a Welch test
that matches scipy, covariance between metrics, and calibration by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agentx.stats import StatsError
from agentx.stats.exchange import exchange_score, linearize_per_user, linearize_ratio


def test_per_user_linearisation_gives_the_relative_effect_exactly() -> None:
    rng = np.random.default_rng(0)
    c, t = rng.gamma(2.0, 5.0, 300), rng.gamma(2.0, 5.5, 280)
    lc, lt = linearize_per_user(c, t)
    assert lt.mean() - lc.mean() == pytest.approx(t.mean() / c.mean() - 1, abs=1e-12)
    result = exchange_score({"m": (lc, lt)}, {"m": 1.0})
    assert result.score == pytest.approx(t.mean() / c.mean() - 1, abs=1e-12)
    ref = stats.ttest_ind(lt, lc, equal_var=False)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_ratio_linearisation_gives_the_relative_effect_exactly() -> None:
    rng = np.random.default_rng(1)
    dc, dt = rng.poisson(20, 400) + 1.0, rng.poisson(22, 380) + 1.0
    nc, nt = rng.binomial(dc.astype(int), 0.05) * 1.0, rng.binomial(dt.astype(int), 0.06) * 1.0
    lc, lt = linearize_ratio(nc, dc, nt, dt)
    truth = (nt.sum() / dt.sum()) / (nc.sum() / dc.sum()) - 1
    assert lt.mean() - lc.mean() == pytest.approx(truth, abs=1e-12)
    assert lc.mean() == pytest.approx(0.0, abs=1e-12)


def test_score_is_the_weighted_sum_and_the_interval_sees_covariance() -> None:
    rng = np.random.default_rng(2)
    base = rng.gamma(2.0, 1.0, (2, 2000))
    # Two metrics driven by the same users: strongly positively correlated.
    a = [base[0] * 10 + rng.normal(0, 1, 2000), base[1] * 10 * 1.02 + rng.normal(0, 1, 2000)]
    b = [base[0] * 3 + rng.normal(0, 0.3, 2000), base[1] * 3 * 0.99 + rng.normal(0, 0.3, 2000)]
    la, lb = linearize_per_user(*a), linearize_per_user(*b)
    weights = {"a": 1.0, "b": -2.0}
    result = exchange_score({"a": la, "b": lb}, weights)
    rel_a, rel_b = a[1].mean() / a[0].mean() - 1, b[1].mean() / b[0].mean() - 1
    assert result.score == pytest.approx(rel_a - 2 * rel_b, abs=1e-12)
    assert result.contributions == pytest.approx({"a": rel_a, "b": -2 * rel_b})
    # With opposite-signed weights on correlated metrics the variance shrinks: treating the
    # metrics as independent would overstate the standard error.
    se_independent = np.sqrt(
        sum(
            w**2 * (np.var(lin[0], ddof=1) / lin[0].size + np.var(lin[1], ddof=1) / lin[1].size)
            for w, lin in ((1.0, la), (-2.0, lb))
        )
    )
    assert result.se < 0.5 * se_independent


def test_cuped_on_the_composite_reduces_the_noise() -> None:
    rng = np.random.default_rng(3)
    user = rng.gamma(2.0, 1.0, 3000)
    pre = user + rng.normal(0, 0.2, 3000)
    post = user * 1.03 + rng.normal(0, 0.2, 3000)
    arm = rng.random(3000) < 0.5
    comp = {"m": linearize_per_user(post[~arm], post[arm])}
    pre_comp = {"m": linearize_per_user(pre[~arm], pre[arm])}
    plain = exchange_score(comp, {"m": 1.0})
    adjusted = exchange_score(comp, {"m": 1.0}, pre_comp)
    assert adjusted.method == "cuped+welch" and adjusted.variance_reduction > 0.5
    assert adjusted.se < 0.7 * plain.se


def test_aa_false_positive_rate_and_coverage_by_simulation() -> None:
    """Over 400 seeded A/A runs the test rejects about alpha; with a known effect of +5 % on
    one metric the interval covers it about 95 % of the time (binomial 3-sigma bands)."""
    rng = np.random.default_rng(4)
    rejects = covers = 0
    runs = 400
    for _ in range(runs):
        n = 400
        w = rng.gamma(1.5, 20.0, (2, n))
        d = rng.poisson(15, (2, n)) + 1.0
        clicks = rng.binomial(d.astype(int), 0.08) * 1.0
        aa = {
            "w": linearize_per_user(w[0], w[1]),
            "ctr": linearize_ratio(clicks[0], d[0], clicks[1], d[1]),
        }
        rejects += exchange_score(aa, {"w": 1.0, "ctr": 0.5}).p_value < 0.05
        ab = {"w": linearize_per_user(w[0], w[1] * 1.05), "ctr": aa["ctr"]}
        res = exchange_score(ab, {"w": 1.0, "ctr": 0.5})
        true_score = 0.05  # the ctr arms share their distribution: only w moves
        covers += res.ci_low <= true_score <= res.ci_high
    band = 3 * np.sqrt(0.05 * 0.95 / runs)
    assert abs(rejects / runs - 0.05) < band
    assert abs(covers / runs - 0.95) < band


def test_bad_input_is_a_clear_error() -> None:
    ok = (np.ones(5) + np.arange(5), np.ones(5))
    with pytest.raises(StatsError, match="control mean is 0"):
        linearize_per_user(np.zeros(5), np.ones(5))
    with pytest.raises(StatsError, match="NaN"):
        linearize_per_user(np.array([1.0, np.nan, 2.0]), np.ones(3))
    with pytest.raises(StatsError, match="denominator sums to 0"):
        linearize_ratio(np.ones(3), np.zeros(3), np.ones(3), np.ones(3))
    with pytest.raises(StatsError, match="non-zero weight"):
        exchange_score({"a": ok}, {"a": 0.0})
    with pytest.raises(StatsError, match=r"no values for weighted metric\(s\) \['b'\]"):
        exchange_score({"a": ok}, {"a": 1.0, "b": 1.0})
    with pytest.raises(StatsError, match="different number of users"):
        exchange_score({"a": ok, "b": (np.arange(4.0), np.ones(5))}, {"a": 1.0, "b": 1.0})
