"""Significance levels of decisions, intervals re-scaled to them, and numbers as printed.

Why intervals are re-scaled: the rollout records every interval at the run's ``alpha``
(95 % by default), but decisions use other levels (the north star against the alpha left
after early-stop looks, guardrails at their own alpha). The report shows each interval at
the level its decision used, so an interval that excludes zero agrees with the verdict.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from pydantic import BaseModel, Field

_NORMAL = NormalDist()


class DecisionLevels(BaseModel):
    """Significance levels that decisions used (two-sided alphas)."""

    recorded: float = Field(0.05, gt=0, lt=1, description="Alpha the intervals were stored at.")
    north_star: float = Field(0.04, gt=0, lt=1, description="Final alpha of the KEEP test.")
    guardrail: float = Field(0.05, gt=0, lt=1, description="Alpha of guardrail breaches.")
    secondary: float = Field(0.05, gt=0, lt=1, description="Family alpha of secondary metrics.")


def level_text(alpha: float) -> str:
    """``0.04`` → ``96%``: the confidence level of a two-sided test at ``alpha``."""
    return f"{100 * (1 - alpha):.4g}%"


def rescale(
    estimate: float, low: float, high: float, recorded: float, wanted: float
) -> tuple[float, float]:
    """The interval ``[low, high]`` (stored at ``recorded``) at level ``wanted``.

    Each side is stretched by ``z(1 - wanted/2) / z(1 - recorded/2)`` around the estimate:
    exact for the normal-approximation intervals the rollout stores (Welch's t with
    hundreds of users per arm is normal to well under 1 %), and it keeps an asymmetric
    interval asymmetric.
    """
    if not all(math.isfinite(v) for v in (estimate, low, high)) or recorded == wanted:
        return low, high
    factor = _NORMAL.inv_cdf(1 - wanted / 2) / _NORMAL.inv_cdf(1 - recorded / 2)
    return estimate - (estimate - low) * factor, estimate + (high - estimate) * factor


def fmt_p(p: float | None) -> str:
    """A p-value that never prints as ``0.000``: three decimals, or scientific below 0.001."""
    if p is None or not math.isfinite(p):
        return "–"
    if p == 0:
        return "<1e-300"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """``0.0137`` → ``+1.37%`` (a dash when unknown)."""
    return "–" if value is None or not math.isfinite(value) else f"{value:+.{digits}%}"
