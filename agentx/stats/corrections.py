"""Multiple-testing corrections for several metrics of one experiment.

Why: with ten metrics at alpha = 0.05 the chance that *some* metric is "significant" under no
effect at all is ~40 %. Holm controls the family-wise error rate (no false positive at all, for
decision metrics); Benjamini-Hochberg controls the false discovery rate (a share of false
positives, for exploratory/diagnostic metrics). Both are taken from statsmodels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from statsmodels.stats.multitest import multipletests

from agentx.stats._validation import as_sample
from agentx.stats.errors import StatsError

CorrectionMethod = Literal["holm", "fdr_bh"]


def adjust_p_values(
    p_values: Sequence[float] | np.ndarray, method: CorrectionMethod = "holm"
) -> np.ndarray:
    """Return adjusted p-values (same order as given); compare them to the unadjusted alpha.

    Raises StatsError for an empty input, values outside [0, 1] or NaN, or an unknown method.
    """
    if method not in get_args(CorrectionMethod):
        raise StatsError(f"method must be one of {get_args(CorrectionMethod)}, got {method!r}")
    p = as_sample(p_values, "p_values", min_n=1)
    if np.any((p < 0.0) | (p > 1.0)):
        raise StatsError(f"p_values must lie in [0, 1], got min {p.min()} and max {p.max()}")
    return np.asarray(multipletests(p, method=method)[1], dtype=np.float64)
