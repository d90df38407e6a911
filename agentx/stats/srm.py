"""Sample-ratio-mismatch (SRM) check.

Why: if the observed arm sizes disagree with the configured split, assignment or logging is
broken (bots filtered in one arm, a crash path that drops users, ...), and every effect estimate
from that experiment is suspect. The conventional guard is a chi-square goodness-of-fit test with
a strict threshold (0.001), strict because it is run on every experiment and a false alarm
discards an otherwise good test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from agentx.stats._validation import check_probability, float_errors_as_stats_errors
from agentx.stats.errors import StatsError


@dataclass(frozen=True)
class SRMResult:
    """Chi-square statistic, its p-value, and ``ok`` = ``p_value >= threshold``."""

    chi2: float
    p_value: float
    ok: bool


@float_errors_as_stats_errors
def srm_check(
    counts: Sequence[int], expected_shares: Sequence[float], threshold: float = 0.001
) -> SRMResult:
    """Test observed arm ``counts`` against ``expected_shares`` with ``scipy.stats.chisquare``.

    ``expected_shares`` are normalised to sum to 1, so ``[50, 50]`` and ``[0.5, 0.5]`` are the
    same. Raises StatsError for fewer than two arms, mismatched lengths, negative or non-integer
    counts, a zero total, or non-positive/non-finite shares.
    """
    c = np.asarray(counts, dtype=np.float64)
    s = np.asarray(expected_shares, dtype=np.float64)
    if c.ndim != 1 or s.ndim != 1:
        raise StatsError("counts and expected_shares must be 1-D sequences")
    if c.size < 2:
        raise StatsError(f"SRM needs at least two arms, got {c.size}")
    if c.size != s.size:
        raise StatsError(
            f"counts has {c.size} arms but expected_shares has {s.size}; they must match"
        )
    if not np.all(np.isfinite(c)) or np.any(c < 0) or np.any(c != np.round(c)):
        raise StatsError(f"counts must be non-negative integers, got {list(counts)}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise StatsError(
            f"expected_shares must be positive and finite, got {list(expected_shares)}"
        )
    total = c.sum()
    if total <= 0:
        raise StatsError("counts sum to zero: no users to check")
    threshold = check_probability(threshold, "threshold")
    expected = total * s / s.sum()
    res = stats.chisquare(c, f_exp=expected)
    p = float(res.pvalue)
    return SRMResult(chi2=float(res.statistic), p_value=p, ok=p >= threshold)
