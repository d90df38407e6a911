"""Input checks shared by the statistics modules.

Every public function funnels its inputs through these helpers so that bad input fails early
with a :class:`StatsError` naming the argument, instead of surfacing later as a numpy
``RuntimeWarning`` (e.g. ``Mean of empty slice``) or a NaN buried in a result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np

from agentx.stats.errors import StatsError

#: Metric values beyond these magnitudes cannot be squared and summed safely in float64
#: (Welch's df squares variances, i.e. 4th powers of values: 1e50**4 is finite). Rescale instead.
MAX_ABS_VALUE: float = 1e50
MIN_SCALE: float = 1e-50


P = ParamSpec("P")
R = TypeVar("R")


def float_errors_as_stats_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with numpy (and Python float) overflow/divide/invalid errors as StatsError.

    A backstop behind the input checks: the package promises a StatsError, never a silent NaN
    or a ``RuntimeWarning``. Underflow stays silent (rounding tiny numbers to 0 is harmless).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
                return func(*args, **kwargs)
        except (FloatingPointError, ZeroDivisionError, OverflowError) as exc:
            raise StatsError(
                f"{func.__name__}: floating-point failure ({exc}); check the scale of the data"
            ) from exc

    return wrapper


def as_sample(values: Any, name: str, min_n: int = 2) -> np.ndarray:
    """Return ``values`` as a finite 1-D float64 array with at least ``min_n`` entries.

    ``min_n`` defaults to 2 because a sample variance (ddof=1) needs two observations.
    Booleans are accepted and become 0.0/1.0 (conversion metrics). Values whose largest
    magnitude is above ``MAX_ABS_VALUE`` or (if non-zero) below ``MIN_SCALE`` are refused,
    because their squares overflow or underflow.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise StatsError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size < min_n:
        raise StatsError(f"{name} needs at least {min_n} observations, got {arr.size}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise StatsError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index "
            f"{int(np.flatnonzero(bad)[0])}); drop or impute them before testing"
        )
    scale = float(np.max(np.abs(arr)))
    if scale > MAX_ABS_VALUE or 0.0 < scale < MIN_SCALE:
        raise StatsError(
            f"{name} has magnitude {scale:.3g}, outside [{MIN_SCALE:g}, {MAX_ABS_VALUE:g}]; "
            "rescale the metric (e.g. to other units) before testing"
        )
    return arr


def same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Per-user arrays that are paired (metric and its covariate/denominator) must align."""
    if a.shape != b.shape:
        raise StatsError(
            f"{name_a} and {name_b} must have the same length (one entry per user), "
            f"got {a.size} and {b.size}"
        )


def check_probability(value: float, name: str) -> float:
    """Check ``0 < value < 1`` (alpha, power, shares are never exactly 0 or 1 here)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name} must be a number, got {value!r}") from exc
    if not (math.isfinite(v) and 0.0 < v < 1.0):
        raise StatsError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return v


def check_finite_number(value: float, name: str, positive: bool = False) -> float:
    """Check a scalar is finite (and > 0 if ``positive``)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v):
        raise StatsError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0.0:
        raise StatsError(f"{name} must be > 0, got {value!r}")
    return v


#: Relative tolerance below which differences are treated as floating-point noise.
REL_TOL: float = 1e-12


def is_constant(arr: np.ndarray) -> bool:
    """True if all entries are equal up to ``REL_TOL`` relative to their magnitude.

    Used instead of ``var == 0``: the float mean of identical values can differ from them in
    the last bit (three 0.1s), and a metric computed two ways (``0.1 + 0.2`` vs ``0.3``) differs
    by rounding. Such noise would otherwise leave a ~1e-34 variance and an astronomically
    large t statistic, i.e. a "certain" effect made of rounding error.
    """
    if arr.size == 0:
        return False
    lo, hi = float(np.min(arr)), float(np.max(arr))
    return hi - lo <= REL_TOL * max(abs(lo), abs(hi))


def nearly_equal(a: float, b: float) -> bool:
    """``a == b`` up to ``REL_TOL`` (same rationale as :func:`is_constant`)."""
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))
