"""Power and sample size for a two-arm test of means (equal arms), via statsmodels.

Why: an underpowered experiment that "finds nothing" is not evidence of no effect. The Planning
Agent sizes experiments with :func:`required_n_per_arm`, and a reader judges a null result with
:func:`power_two_sample`. Both use the two-sided two-sample t-test power of
``statsmodels.stats.power.TTestIndPower`` with standardized effect ``effect_abs / sd``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from agentx.stats._validation import check_finite_number, check_probability
from agentx.stats.errors import StatsError

#: Larger designs are refused: the effect is negligible next to the noise.
MAX_N_PER_ARM: int = 10**12


def _power(d: float, n: int, alpha: float) -> float:
    power = float(TTestIndPower().power(effect_size=d, nobs1=n, alpha=alpha, ratio=1.0))
    if math.isnan(power):
        # The noncentral t's tail underflows to nan for designs far past certain detection
        # (noncentrality in the tens); there t is normal to many digits.
        return float(normal_power(d * math.sqrt(n / 2.0), alpha))
    return power


def normal_power(shift: float | np.ndarray, alpha: float) -> float | np.ndarray:
    """Power of the two-sided z test at ``alpha`` for a true effect ``shift`` standard
    errors from zero (element-wise for an array): the t test's power at large samples."""
    z = float(stats.norm.isf(alpha / 2.0))
    return stats.norm.sf(z - shift) + stats.norm.cdf(-z - shift)


def power_two_sample(effect_abs: float, sd: float, n_per_arm: int, alpha: float = 0.05) -> float:
    """Probability that a two-sided test at ``alpha`` detects a true difference ``effect_abs``
    with ``n_per_arm`` users per arm and per-user standard deviation ``sd`` (both arms).

    The sign of the effect does not matter; ``effect_abs = 0`` gives ``alpha``.
    Raises StatsError for ``sd <= 0``, ``n_per_arm`` not an integer >= 2, non-finite values
    or alpha outside (0, 1).
    """
    effect = check_finite_number(effect_abs, "effect_abs")
    sd = check_finite_number(sd, "sd", positive=True)
    alpha = check_probability(alpha, "alpha")
    if (
        isinstance(n_per_arm, bool)
        or not isinstance(n_per_arm, int | float | np.integer | np.floating)
        or not math.isfinite(n_per_arm)
        or int(n_per_arm) != n_per_arm
        or n_per_arm < 2
    ):
        raise StatsError(f"n_per_arm must be an integer >= 2, got {n_per_arm!r}")
    return _power(abs(effect) / sd, int(n_per_arm), alpha)


def required_n_per_arm(
    effect_abs: float, sd: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Smallest users-per-arm count whose power for ``effect_abs`` reaches ``power``.

    Found by bisection on ``TTestIndPower.power`` (power grows with n), bracketed by the normal
    approximation ``2 ((z_{1-alpha/2} + z_power) sd / effect)^2``. This is exact in whole users,
    unlike rounding up ``solve_power``, whose root finder has a tolerance and can fail to
    converge for extreme inputs.
    Raises StatsError for a zero effect, ``sd <= 0``, alpha or power outside (0, 1),
    ``power <= alpha``, or a design above ``MAX_N_PER_ARM`` users per arm.
    """
    effect = check_finite_number(effect_abs, "effect_abs")
    sd = check_finite_number(sd, "sd", positive=True)
    alpha = check_probability(alpha, "alpha")
    power = check_probability(power, "power")
    if effect == 0.0:
        raise StatsError("effect_abs must be non-zero: no sample size detects a zero effect")
    if power <= alpha:
        raise StatsError(f"power ({power}) must exceed alpha ({alpha})")
    d = abs(effect) / sd
    z = float(stats.norm.isf(alpha / 2.0) + stats.norm.ppf(power))
    n_normal = 2.0 * (z / d) ** 2 if d > 1e-50 else math.inf
    if not n_normal <= MAX_N_PER_ARM:
        raise StatsError(
            f"effect_abs/sd = {d:.3g} needs more than {MAX_N_PER_ARM:.0e} users per arm"
        )
    hi = max(2, math.ceil(n_normal))
    while _power(d, hi, alpha) < power:  # the t-test needs a little more than the normal n
        hi *= 2
    lo = 1  # invariant: lo is insufficient (n = 1 has no variance), hi is sufficient
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid >= 2 and _power(d, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi
