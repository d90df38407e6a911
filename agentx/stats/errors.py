"""The single exception type of the statistics package."""

from __future__ import annotations


class StatsError(ValueError):
    """Raised for input that no test can be computed on.

    It subclasses ``ValueError`` so callers that already guard against bad values keep working,
    while the Evaluation Agent can catch exactly this type and report the message instead of a
    traceback. Examples: empty or 2-D arrays, NaN/inf values, mismatched per-user arrays,
    out-of-range shares or alpha, unknown correction methods.
    """
