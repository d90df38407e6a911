"""CUPED: variance reduction with a pre-experiment covariate (Deng et al., 2013).

Why: most of a user's metric is explained by who they already were (heavy users stay heavy).
Subtracting ``theta * (x - mean(x))``, with ``x`` the same user's pre-period value, removes that
predictable part. Because ``x`` was measured before assignment it is independent of the arm, so
the adjustment cannot create or hide an effect; it only shrinks the noise, by ``rho^2`` where
``rho`` is the correlation of ``x`` and ``y``.

Choices: ``theta = cov(x, y) / var(x)`` is estimated on both arms pooled (one theta for both, as
in the paper; per-arm thetas would let the adjustment differ between arms), and the *pooled*
mean of ``x`` is subtracted so the adjusted arm means stay unbiased for the raw arm means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agentx.stats._validation import (
    as_sample,
    float_errors_as_stats_errors,
    is_constant,
    same_length,
)


@dataclass(frozen=True)
class CupedResult:
    """Adjusted metric per arm, the shared ``theta``, and ``variance_reduction`` in [0, 1]:
    ``1 - var(adjusted) / var(raw)`` over both arms pooled."""

    y_control_adj: np.ndarray
    y_treatment_adj: np.ndarray
    theta: float
    variance_reduction: float


@float_errors_as_stats_errors
def cuped_adjust(
    y_control: np.ndarray,
    x_control: np.ndarray,
    y_treatment: np.ndarray,
    x_treatment: np.ndarray,
) -> CupedResult:
    """Return CUPED-adjusted outcomes ``y - theta * (x - pooled_mean(x))`` for both arms.

    A constant covariate carries no information: ``theta = 0`` and the data come back
    unchanged (reduction 0). A constant outcome likewise gives ``theta = 0``.
    Raises StatsError if an arm has fewer than 2 users, values are NaN/inf, or ``y`` and ``x``
    of an arm differ in length.
    """
    yc = as_sample(y_control, "y_control")
    xc = as_sample(x_control, "x_control")
    yt = as_sample(y_treatment, "y_treatment")
    xt = as_sample(x_treatment, "x_treatment")
    same_length(yc, xc, "y_control", "x_control")
    same_length(yt, xt, "y_treatment", "x_treatment")
    y = np.concatenate([yc, yt])
    x = np.concatenate([xc, xt])
    if is_constant(x) or is_constant(y):
        return CupedResult(yc.copy(), yt.copy(), 0.0, 0.0)
    x_mean = float(np.mean(x))
    xd = x - x_mean
    var_x = float(np.mean(xd * xd))
    theta = float(np.mean(xd * (y - np.mean(y)))) / var_x
    y_adj = y - theta * xd
    reduction = 1.0 - float(np.var(y_adj)) / float(np.var(y))
    # OLS theta minimises the pooled variance, so reduction >= 0 up to rounding.
    reduction = min(max(reduction, 0.0), 1.0)
    n_c = yc.size
    return CupedResult(y_adj[:n_c], y_adj[n_c:], theta, reduction)
