"""Power/sample size (checked analytically and by simulation) and multiple-testing corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from agentx.stats import (
    StatsError,
    adjust_p_values,
    power_two_sample,
    required_n_per_arm,
    welch_effect,
)

pytestmark = pytest.mark.filterwarnings("error")


def _noncentral_t_power(d: float, n: int, alpha: float) -> float:
    """Two-sided equal-n two-sample t-test power from the noncentral t, independently of
    statsmodels."""
    df = 2 * n - 2
    nc = d * math.sqrt(n / 2)
    crit = stats.t.isf(alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


@pytest.mark.parametrize(
    ("effect", "sd", "n"), [(0.2, 1.0, 200), (-3.0, 10.0, 150), (1.0, 2.0, 30)]
)
def test_power_matches_noncentral_t(effect: float, sd: float, n: int) -> None:
    expected = _noncentral_t_power(abs(effect) / sd, n, 0.05)
    assert power_two_sample(effect, sd, n) == pytest.approx(expected, abs=1e-6)


def test_power_far_past_certain_detection_is_one_not_nan() -> None:
    """The noncentral t's tail underflows to nan for some designs with a noncentrality near
    ten (statsmodels returns nan there); such a design detects its effect for sure."""
    assert power_two_sample(0.049, 0.8, 51_200) == pytest.approx(1.0, abs=1e-9)
    assert power_two_sample(0.01, 0.8, 12_800) == pytest.approx(
        _noncentral_t_power(0.01 / 0.8, 12_800, 0.05), abs=1e-6
    )


def test_power_of_zero_effect_is_alpha() -> None:
    assert power_two_sample(0.0, 1.0, 100, alpha=0.1) == pytest.approx(0.1, abs=1e-9)


def test_required_n_is_the_smallest_sufficient() -> None:
    n = required_n_per_arm(0.2, 1.0)
    assert n == 394  # textbook: 393.4 per arm for d = 0.2, alpha 0.05, power 0.8
    assert power_two_sample(0.2, 1.0, n) >= 0.8 > power_two_sample(0.2, 1.0, n - 1)
    n90 = required_n_per_arm(-5.0, 20.0, alpha=0.01, power=0.9)
    assert (
        power_two_sample(5.0, 20.0, n90, 0.01) >= 0.9 > power_two_sample(5.0, 20.0, n90 - 1, 0.01)
    )


def test_empirical_power_matches_analytic() -> None:
    rng = np.random.default_rng(77)
    n_sims, n, effect, sd = 3000, 200, 0.25, 1.0
    c = rng.normal(0.0, sd, size=(n_sims, n))
    t = rng.normal(effect, sd, size=(n_sims, n))
    hits = sum(welch_effect(c[i], t[i]).p_value < 0.05 for i in range(n_sims))
    analytic = power_two_sample(effect, sd, n)  # ~0.71
    lo = stats.binom.ppf(1e-4, n_sims, analytic) / n_sims
    hi = stats.binom.isf(1e-4, n_sims, analytic) / n_sims
    assert lo <= hits / n_sims <= hi


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effect_abs": 0.1, "sd": 0.0, "n_per_arm": 10}, "sd"),
        ({"effect_abs": 0.1, "sd": 1.0, "n_per_arm": 1}, "n_per_arm"),
        ({"effect_abs": 0.1, "sd": 1.0, "n_per_arm": 10.5}, "n_per_arm"),
        ({"effect_abs": float("nan"), "sd": 1.0, "n_per_arm": 10}, "effect_abs"),
        ({"effect_abs": 0.1, "sd": 1.0, "n_per_arm": 10, "alpha": 1.2}, "alpha"),
    ],
)
def test_power_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(StatsError, match=message):
        power_two_sample(**kwargs)


def test_required_n_extremes() -> None:
    assert required_n_per_arm(50.0, 1.0) == 2  # a huge effect needs the minimum design
    assert required_n_per_arm(1.0, 1.0) == 17  # G*Power: d = 1, 80 %, two-sided 5 %
    with pytest.raises(StatsError, match="needs more than"):
        required_n_per_arm(1e-9, 1.0)
    assert power_two_sample(0.1, 1.0, np.int64(100)) == power_two_sample(0.1, 1.0, 100)


def test_required_n_bad_input() -> None:
    with pytest.raises(StatsError, match="non-zero"):
        required_n_per_arm(0.0, 1.0)
    with pytest.raises(StatsError, match="must exceed alpha"):
        required_n_per_arm(0.1, 1.0, alpha=0.1, power=0.05)
    with pytest.raises(StatsError, match="sd"):
        required_n_per_arm(0.1, -1.0)


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_corrections_match_statsmodels(method: str) -> None:
    p = np.random.default_rng(3).uniform(0, 0.2, size=12)
    expected = multipletests(p, method=method)[1]
    assert np.array_equal(adjust_p_values(p, method=method), expected)  # type: ignore[arg-type]


def test_corrections_known_values() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    # Holm: sorted 0.01*4, max(0.03*3, .04), max(0.04*2, .09), 0.5
    assert adjust_p_values(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    # BH: 0.5, min(0.04*4/3, .5)=.0533, min(0.03*4/2, .0533)=.0533, .04
    assert adjust_p_values(p, "fdr_bh") == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])


@pytest.mark.parametrize(
    ("p", "method", "message"),
    [
        ([], "holm", "at least 1"),
        ([0.1, float("nan")], "holm", "NaN"),
        ([0.1, 1.2], "holm", r"\[0, 1\]"),
        ([0.1, -0.01], "fdr_bh", r"\[0, 1\]"),
        ([0.1, 0.2], "bonferroni", "method must be one of"),
    ],
)
def test_corrections_bad_input(p: list[float], method: str, message: str) -> None:
    with pytest.raises(StatsError, match=message):
        adjust_p_values(p, method=method)  # type: ignore[arg-type]
