"""Shared check for tests that compare two simulated timelines number for number."""

from __future__ import annotations

import numpy as np

from agentx.sandbox.online import TimelineResult


def assert_same_timeline(got: TimelineResult, want: TimelineResult) -> None:
    """Every window (the pre-period and each phase) has identical per-user sums, per-item
    impressions and daily means."""
    windows = zip([got.pre, *got.phases], [want.pre, *want.phases], strict=True)
    for mine, theirs in windows:
        assert mine.sums.keys() == theirs.sums.keys()
        assert all(np.array_equal(mine.sums[name], theirs.sums[name]) for name in theirs.sums)
        assert np.array_equal(mine.items_shown, theirs.items_shown)
        assert mine.daily_watch == theirs.daily_watch
