"""SRM check: agrees with scipy's chi-square and flags broken splits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agentx.stats import StatsError, srm_check

pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize(
    ("counts", "shares"),
    [([5000, 5100], [0.5, 0.5]), ([1000, 2100, 2900], [0.2, 0.4, 0.4]), ([10, 30], [0.25, 0.75])],
)
def test_matches_scipy_chisquare(counts: list[int], shares: list[float]) -> None:
    res = srm_check(counts, shares)
    ref = stats.chisquare(counts, f_exp=np.sum(counts) * np.asarray(shares))
    assert res.chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_flags_mismatch_and_passes_balanced_split() -> None:
    assert srm_check([50_000, 50_300], [0.5, 0.5]).ok
    bad = srm_check([50_000, 51_500], [0.5, 0.5])
    assert not bad.ok and bad.p_value < 0.001


def test_threshold_decides_ok() -> None:
    res = srm_check([1000, 1100], [0.5, 0.5])  # p ~ 0.029
    assert res.ok
    assert not srm_check([1000, 1100], [0.5, 0.5], threshold=0.05).ok


def test_shares_are_normalised() -> None:
    assert srm_check([480, 520], [50, 50]) == srm_check([480, 520], [0.5, 0.5])


def test_false_alarm_rate_under_correct_split() -> None:
    rng = np.random.default_rng(7)
    n_sims = 5_000
    counts_a = rng.binomial(10_000, 0.3, size=n_sims)
    flags = [not srm_check([a, 10_000 - a], [0.3, 0.7], threshold=0.05).ok for a in counts_a]
    lo, hi = stats.binom.ppf(1e-5, n_sims, 0.05), stats.binom.isf(1e-5, n_sims, 0.05)
    assert lo <= sum(flags) <= hi


@pytest.mark.parametrize(
    ("counts", "shares", "message"),
    [
        ([100], [1.0], "at least two arms"),
        ([100, 100], [0.5, 0.3, 0.2], "must match"),
        ([100, -1], [0.5, 0.5], "non-negative integers"),
        ([100, 1.5], [0.5, 0.5], "non-negative integers"),
        ([0, 0], [0.5, 0.5], "sum to zero"),
        ([10, 10], [0.5, 0.0], "positive"),
        ([10, 10], [0.5, float("nan")], "positive"),
    ],
)
def test_bad_input_raises(counts: list[float], shares: list[float], message: str) -> None:
    with pytest.raises(StatsError, match=message):
        srm_check(counts, shares)  # type: ignore[arg-type]
