"""Everything learned from the log that features, retrieval and re-ranking read.

A :class:`FeatureContext` is built in ``train()`` and then changes only through
``Model.update()``, which folds one day of the model's own traffic into it (new counts, new
history, re-solved factors, a longer ``dataset.log``) and clears the ``memo`` cache. Serving
may depend only on it plus the serving ``day``. Keeping all log statistics in one place makes
the train-time and serve-time feature values come from the very same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from .config import Config
from .data import Dataset
from .history import DayImpressions, click_matrix, recent_days
from .mf import Factors

T = TypeVar("T")


@dataclass
class FeatureContext:
    """Trained state shared by every stage (read-only while serving; ``update()`` renews it).

    ``dataset.log`` is everything the model has seen: the historical log, then every day
    passed to ``Model.update`` (``dataset.meta.last_day`` is the last such day).
    """

    dataset: Dataset
    config: Config
    factors: Factors
    item_clicks: np.ndarray  # float64 [n_items], logged clicks
    item_impressions: np.ndarray  # float64 [n_items], logged impressions
    user_clicks: np.ndarray  # float64 [n_users]
    user_impressions: np.ndarray  # float64 [n_users]
    global_ctr: float
    clicks: sp.csr_matrix  # float64 [n_users, n_items] click counts (ALS input, seen filter)
    recent: tuple[DayImpressions, ...]  # last days' shown-without-click pairs, oldest first
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

    def clear_memo(self) -> None:
        """Forget every memoised table (``Model.update`` calls it: the log has grown)."""
        self._memo.clear()


def build_context(
    dataset: Dataset, config: Config, factors: Factors, clicks: sp.csr_matrix | None = None
) -> FeatureContext:
    """Aggregate the log into the per-user / per-item counts and the per-user history.

    ``clicks`` is the user x item click-count matrix if the caller already has it (ALS does).
    """
    log, meta = dataset.log, dataset.meta
    click = log.click.astype(np.float64)
    impressions = len(log)
    window = config.rerank.recent_impression_days
    return FeatureContext(
        dataset=dataset,
        config=config,
        factors=factors,
        item_clicks=np.bincount(log.item, weights=click, minlength=meta.n_items),
        item_impressions=np.bincount(log.item, minlength=meta.n_items).astype(np.float64),
        user_clicks=np.bincount(log.user, weights=click, minlength=meta.n_users),
        user_impressions=np.bincount(log.user, minlength=meta.n_users).astype(np.float64),
        global_ctr=float(click.sum() / impressions) if impressions else 0.0,
        clicks=clicks if clicks is not None else click_matrix(log, meta.n_users, meta.n_items),
        recent=recent_days(
            log, range(meta.last_day - window + 1, meta.last_day + 1), meta.n_users, meta.n_items
        ),
    )
