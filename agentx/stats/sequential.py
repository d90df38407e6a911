"""Always-valid inference: the mixture sequential probability ratio test (mSPRT).

Why: a fixed-horizon t-test is only valid if it is looked at once. Checking it after every batch
and stopping at the first ``p < 0.05`` inflates the false-positive rate several-fold. The mSPRT
(Robbins 1970; Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests") turns the data into
a likelihood ratio ``Lambda_n`` that is a martingale under H0, so by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``: the running minimum of ``1/Lambda_n`` is a p-value
that stays valid however often, and whenever, it is looked at.

Model: users arrive in pairs (the n-th control and the n-th treatment user). With
``Delta_n = mean(t[:n]) - mean(c[:n])``, ``V_n = (s_c^2 + s_t^2) / n`` and a normal mixing
distribution ``N(0, tau2)`` over the true difference,

    Lambda_n = sqrt(V_n / (V_n + tau2)) * exp(tau2 * Delta_n^2 / (2 V_n (V_n + tau2))).

The variances ``s^2`` are plug-in estimates from the data seen so far (Johari et al. show this
keeps the guarantee asymptotically). Because a plug-in variance from a handful of users is
unreliable, looks before ``min_n`` users per arm carry no evidence (p = 1); without this burn-in
the A/A false-positive rate in simulation rose from ~0.02 to ~0.055, above alpha.

Default ``tau2``: ``(z_{0.975} + z_{0.80})^2 * (s_c^2 + s_t^2) / N`` with the variances and
``N`` (users per arm) of the whole series passed in: the mixing sd equals the effect a
fixed-horizon test of that size would detect with 80 % power. That is where the mixture puts
its power, and it keeps the boundary at early looks far out where plug-in variances are shaky.
It uses the final sample size and variance (a mild look-ahead); for strictly online use pass
``tau2`` from a planned sample size and a pre-experiment variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from agentx.stats._validation import (
    REL_TOL,
    as_sample,
    check_finite_number,
    check_probability,
    float_errors_as_stats_errors,
    is_constant,
)
from agentx.stats.errors import StatsError

DEFAULT_MIN_N: int = 20
_MDE_MULTIPLIER: float = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.80))


@dataclass(frozen=True)
class SequentialResult:
    """Always-valid p-value after all data, whether it is <= alpha, and the first number of
    users per arm at which it was (None if never)."""

    p_value: float
    reject: bool
    n_at_stop: int | None


@float_errors_as_stats_errors
def default_tau2(control: np.ndarray, treatment: np.ndarray) -> float:
    """Mixing variance tuned to the series' own size; see the module docstring.

    Returns 1.0 if both arms are constant (any positive value then gives the same answer).
    """
    c, t, n = _paired(control, treatment)
    if is_constant(c) and is_constant(t):
        return 1.0
    var_sum = float(np.var(c, ddof=1) + np.var(t, ddof=1))
    return _MDE_MULTIPLIER**2 * var_sum / n


def _paired(control: np.ndarray, treatment: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    c = as_sample(control, "control")
    t = as_sample(treatment, "treatment")
    n = min(c.size, t.size)
    return c[:n], t[:n], n


def _running_var(x: np.ndarray, ns: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """Sample variance (ddof=1) of every prefix; exactly 0 where ``constant`` is set."""
    s = np.cumsum(x)
    q = np.cumsum(x * x)
    var = np.zeros(x.size)
    k = ns >= 2
    var[k] = (q[k] - s[k] * s[k] / ns[k]) / (ns[k] - 1)
    var = np.maximum(var, 0.0)
    # Rounding leaves ~1e-17 instead of 0 on constant prefixes, which would look like
    # near-infinite evidence; force those to exactly 0.
    var[constant] = 0.0
    return var


def _constant_prefixes(x: np.ndarray) -> np.ndarray:
    """Whether each prefix is constant up to ``REL_TOL`` (see ``_validation.is_constant``)."""
    hi = np.maximum.accumulate(x)
    lo = np.minimum.accumulate(x)
    return hi - lo <= REL_TOL * np.maximum(np.abs(hi), np.abs(lo))


def log_mixture_lr(delta: np.ndarray, var_delta: np.ndarray, tau2: float) -> np.ndarray:
    """``log Lambda`` for observed differences ``delta`` with variances ``var_delta``.

    Closed form of ``integral N(delta; theta, V) / N(delta; 0, V) dN(theta; 0, tau2)``.
    Zero variance: identical constants (``delta == 0``) are no evidence (``-inf``, since
    ``Lambda -> 0`` as ``V -> 0``); different constants are conclusive (``+inf``).
    """
    delta = np.asarray(delta, dtype=np.float64)
    v = np.asarray(var_delta, dtype=np.float64)
    out = np.where(delta != 0.0, np.inf, -np.inf)
    pos = v > 0.0
    # Written with r = tau2 / V and z^2 = delta^2 / V so no product of two tiny variances
    # appears: log Lambda = -log(1 + r) / 2 + z^2 r / (2 (1 + r)).
    with np.errstate(over="ignore"):
        r = tau2 / v[pos]
        z2 = np.minimum(delta[pos] * (delta[pos] / v[pos]), 1e300)
    # An infinitely diffuse mixture (r = inf) gives Lambda -> 0: no evidence.
    finite = np.isfinite(r)
    vals = np.full(r.shape, -np.inf)
    rf = r[finite]
    vals[finite] = -0.5 * np.log1p(rf) + 0.5 * z2[finite] * (rf / (1.0 + rf))
    out[pos] = vals
    return out


def _p_series(c: np.ndarray, t: np.ndarray, tau2: float, min_n: int) -> np.ndarray:
    """Always-valid p-value after each n = 1..N users per arm."""
    n = c.size
    ns = np.arange(1, n + 1, dtype=np.float64)
    const_c, const_t = _constant_prefixes(c), _constant_prefixes(t)
    # Constant prefixes whose values agree up to rounding are "no difference", not evidence.
    mean_c, mean_t = np.cumsum(c) / ns, np.cumsum(t) / ns
    same = np.abs(mean_t - mean_c) <= REL_TOL * np.maximum(np.abs(mean_c), np.abs(mean_t))
    # Shifting both arms by one constant changes neither differences nor variances, and keeps
    # the cumulative sums small (less cancellation).
    shift = float(np.mean(np.concatenate([c, t])))
    c = c - shift
    t = t - shift
    delta = (np.cumsum(t) - np.cumsum(c)) / ns
    v = (_running_var(c, ns, const_c) + _running_var(t, ns, const_t)) / ns
    delta[(v == 0.0) & same] = 0.0
    log_lr = np.full(n, -np.inf)
    active = ns >= max(min_n, 2)
    log_lr[active] = log_mixture_lr(delta[active], v[active], tau2)
    # exp(-max(log_lr, 0)) == min(1, 1/Lambda) without overflow for very negative log_lr.
    p = np.exp(-np.maximum(log_lr, 0.0))
    return np.minimum.accumulate(p)


def _check_min_n(min_n: int) -> int:
    if isinstance(min_n, bool) or not isinstance(min_n, int | np.integer) or min_n < 2:
        raise StatsError(f"min_n must be an int >= 2, got {min_n!r}")
    return int(min_n)


def _resolve_tau2(c: np.ndarray, t: np.ndarray, tau2: float | None) -> float:
    if tau2 is None:
        return default_tau2(c, t)
    return check_finite_number(tau2, "tau2", positive=True)


@float_errors_as_stats_errors
def msprt_p_values(
    control: np.ndarray,
    treatment: np.ndarray,
    tau2: float | None = None,
    looks: Sequence[int] | None = None,
    *,
    min_n: int = DEFAULT_MIN_N,
) -> np.ndarray:
    """Always-valid p-values at each look (a look = users per arm seen so far, arrival order).

    The p-value is the running minimum of ``1/Lambda_n`` over *every* n up to the look, so the
    result is non-increasing in the look and valid no matter which looks are taken.
    ``looks`` defaults to every n from 1 to N = min(len(control), len(treatment)); when the arms
    differ in length only the first N users of each are used (users enter in pairs).
    Raises StatsError for arms with < 2 values or NaN/inf, non-positive ``tau2``, or looks that
    are not strictly increasing integers in [1, N].
    """
    c, t, n = _paired(control, treatment)
    tau2_v = _resolve_tau2(c, t, tau2)
    min_n = _check_min_n(min_n)
    p = _p_series(c, t, tau2_v, min_n)
    if looks is None:
        return p
    lk = np.asarray(looks)
    if lk.ndim != 1 or lk.size == 0 or lk.dtype.kind not in "iu":
        raise StatsError("looks must be a non-empty 1-D sequence of integers")
    if lk[0] < 1 or lk[-1] > n or np.any(np.diff(lk) <= 0):
        raise StatsError(f"looks must be strictly increasing integers in [1, {n}]")
    return p[lk - 1]


@float_errors_as_stats_errors
def msprt_test(
    control: np.ndarray,
    treatment: np.ndarray,
    alpha: float = 0.05,
    tau2: float | None = None,
    *,
    min_n: int = DEFAULT_MIN_N,
) -> SequentialResult:
    """Run the mSPRT over the whole series, looking after every pair of users.

    ``reject`` is ``p_value <= alpha`` (equivalently ``Lambda_n >= 1/alpha`` at some n) and
    ``n_at_stop`` the first n where that happened. Raises StatsError like
    :func:`msprt_p_values` and for alpha outside (0, 1).
    """
    alpha = check_probability(alpha, "alpha")
    c, t, _ = _paired(control, treatment)
    p = _p_series(c, t, _resolve_tau2(c, t, tau2), _check_min_n(min_n))
    hits = np.flatnonzero(p <= alpha)
    p_final = float(p[-1])
    return SequentialResult(
        p_value=p_final,
        reject=p_final <= alpha,
        n_at_stop=int(hits[0]) + 1 if hits.size else None,
    )


__all__ = [
    "DEFAULT_MIN_N",
    "SequentialResult",
    "default_tau2",
    "log_mixture_lr",
    "msprt_p_values",
    "msprt_test",
]
