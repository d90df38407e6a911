"""Everything learned from the log that features, retrieval and re-ranking read.

A :class:`FeatureContext` is built once in ``train()`` and frozen afterwards: serving may
depend only on it plus the serving ``day``. Keeping all log statistics in one place makes the
train-time and serve-time feature values come from the very same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .config import Config
from .data import Dataset
from .mf import Factors

T = TypeVar("T")


@dataclass
class FeatureContext:
    """Trained state shared by every stage (read-only after training)."""

    dataset: Dataset
    config: Config
    factors: Factors
    item_clicks: np.ndarray  # float64 [n_items], logged clicks
    item_impressions: np.ndarray  # float64 [n_items], logged impressions
    user_clicks: np.ndarray  # float64 [n_users]
    user_impressions: np.ndarray  # float64 [n_users]
    global_ctr: float
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return self.dataset.meta.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.meta.n_items

    def released(self, day: int) -> np.ndarray:
        """Boolean [n_items]: items servable on ``day``."""
        return self.dataset.items.released(day)

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """Compute a derived statistic once and reuse it (train and serve share the cache).

        Extensions use this for per-user/per-item tables, e.g. a user x category click matrix,
        so a feature function stays a cheap lookup at serve time.
        """
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]


def build_context(dataset: Dataset, config: Config, factors: Factors) -> FeatureContext:
    """Aggregate the log into the per-user / per-item counts the baseline features use."""
    log, meta = dataset.log, dataset.meta
    click = log.click.astype(np.float64)
    impressions = len(log)
    return FeatureContext(
        dataset=dataset,
        config=config,
        factors=factors,
        item_clicks=np.bincount(log.item, weights=click, minlength=meta.n_items),
        item_impressions=np.bincount(log.item, minlength=meta.n_items).astype(np.float64),
        user_clicks=np.bincount(log.user, weights=click, minlength=meta.n_users),
        user_impressions=np.bincount(log.user, minlength=meta.n_users).astype(np.float64),
        global_ctr=float(click.sum() / impressions) if impressions else 0.0,
    )
