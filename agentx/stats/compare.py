"""One call the Evaluation Agent makes per metric: optional CUPED, then Welch.

Why the relative effect is against the *unadjusted* control mean: CUPED shifts each arm's mean
by ``theta * (pooled_mean(x) - arm_mean(x))``, which is noise around 0, not signal; the number a
reader compares "+3 %" to is the plain control average. Its interval comes from the general
delta method in :func:`agentx.stats.effects.relative_interval`, which accounts for the
adjusted difference and the raw control mean being computed from the same control users.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from agentx.stats._validation import (
    as_sample,
    check_probability,
    float_errors_as_stats_errors,
    is_constant,
    same_length,
)
from agentx.stats.cuped import cuped_adjust
from agentx.stats.effects import EffectEstimate, relative_interval, welch_effect
from agentx.stats.errors import StatsError


@float_errors_as_stats_errors
def compare_metric(
    control: np.ndarray,
    treatment: np.ndarray,
    pre_control: np.ndarray | None = None,
    pre_treatment: np.ndarray | None = None,
    alpha: float = 0.05,
) -> EffectEstimate:
    """Estimate the treatment effect on a per-user metric.

    Without covariates this is :func:`welch_effect` (``method="welch"``). With both
    ``pre_control`` and ``pre_treatment`` the outcomes are CUPED-adjusted first
    (``method="cuped+welch"``): ``control_mean``/``treatment_mean``/``absolute``/``se``/``p_value``
    refer to the adjusted data (whose means are unbiased for the raw means), ``relative`` is
    ``absolute / mean(raw control)``, and ``variance_reduction`` is filled in.
    Raises StatsError if only one covariate array is given, on length mismatches, or on any
    input :func:`welch_effect` / :func:`cuped_adjust` reject.
    """
    if (pre_control is None) != (pre_treatment is None):
        raise StatsError("give both pre_control and pre_treatment for CUPED, or neither")
    if pre_control is None or pre_treatment is None:
        return welch_effect(control, treatment, alpha=alpha)
    alpha = check_probability(alpha, "alpha")
    yc = as_sample(control, "control")
    yt = as_sample(treatment, "treatment")
    xc = as_sample(pre_control, "pre_control")
    xt = as_sample(pre_treatment, "pre_treatment")
    same_length(yc, xc, "control", "pre_control")
    same_length(yt, xt, "treatment", "pre_treatment")
    cup = cuped_adjust(yc, xc, yt, xt)
    adj = welch_effect(cup.y_control_adj, cup.y_treatment_adj, alpha=alpha)
    base = float(np.mean(yc))
    if is_constant(yc):
        var_base = cov_adj_base = 0.0
    else:
        var_base = float(np.var(yc, ddof=1)) / yc.size
        cov_adj_base = float(np.cov(cup.y_control_adj, yc, ddof=1)[0, 1]) / yc.size
    # D = mean(adj_t) - mean(adj_c) shares control users with M = mean(raw_c):
    # Cov(D, M) = -cov(adj_c, raw_c) / n_c.
    rel, rlo, rhi = relative_interval(
        adj.absolute, adj.se * adj.se, base, var_base, -cov_adj_base, alpha
    )
    return dataclasses.replace(
        adj,
        relative=rel,
        ci_low_rel=rlo,
        ci_high_rel=rhi,
        method="cuped+welch",
        variance_reduction=cup.variance_reduction,
    )
