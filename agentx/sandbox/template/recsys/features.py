"""Ranking features: a registry of functions over aligned (user, item, day) arrays.

Every feature has the same signature, ``fn(ctx, users, items, day) -> float array``, where the
three inputs are 1-D int64 arrays of equal length. The same function produces the training
rows (one per logged impression, with the impression's own day) and the serving rows (one per
candidate, with the serving day), so there is no train/serve skew by construction.

Features must read only ``ctx`` (changed only by ``Model.update``, which also clears the
``ctx.memo`` cache) and ``day``; they must be finite and vectorised (serving calls them on
~10^6 rows). Training rows come from the ranker's label days with a context fitted on the
days before them (see ``pipeline.split_log``). Standardisation happens in the ranker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .config import ConfigError
from .context import FeatureContext

FeatureFn = Callable[[FeatureContext, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def mf_score(
    ctx: FeatureContext, users: np.ndarray, items: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """ALS affinity ``<user, item>``: personal taste match learned from co-clicks."""
    user_vectors = np.take(ctx.factors.user, users, axis=0)  # take: faster than fancy indexing
    item_vectors = np.take(ctx.factors.item, items, axis=0)
    return np.einsum("nd,nd->n", user_vectors, item_vectors).astype(np.float64)


def item_popularity(
    ctx: FeatureContext, users: np.ndarray, items: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """log(1 + logged clicks): global appeal, but also the logging policy's exposure."""
    return np.log1p(ctx.item_clicks)[items]  # per-item table, then gather: cheap at serve


def item_ctr(
    ctx: FeatureContext, users: np.ndarray, items: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """Click-through rate shrunk towards the global CTR (``features.ctr_smoothing``).

    Not position-debiased: items the logging policy placed high get an inflated CTR.
    """
    prior = ctx.config.features.ctr_smoothing
    clicks = ctx.item_clicks + prior * ctx.global_ctr
    return (clicks / (ctx.item_impressions + prior + 1e-12))[items]


def user_activity(
    ctx: FeatureContext, users: np.ndarray, items: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """log(1 + the user's logged clicks): calibrates overall click propensity per user."""
    return np.log1p(ctx.user_clicks)[users]


def user_category_affinity(
    ctx: FeatureContext, users: np.ndarray, items: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """Smoothed share of the user's clicks on days *before* ``day`` in the item's category.

    Users have category tastes that the low-rank MF score only blurs; this states them
    directly. Counting only earlier days keeps a training row's own click out of its value
    (no target leakage), and a serving day after the log sees the full history. With
    ``features.category_affinity_days`` = N > 0 only the last N days count (tastes drift);
    0 counts the whole history. Two pseudo-clicks spread evenly over categories keep users
    with few clicks near the uniform share instead of 0 or 1. Rows with different days
    (training) are counted by ``searchsorted`` on two sorted code arrays; a batch that shares
    one day (serving) reads a per-(user, category) count table of that day's window. Both
    are built once per context (``ctx.memo``) and give the same counts.
    """
    meta, category = ctx.dataset.meta, ctx.dataset.items.category
    n_days = meta.last_day - meta.first_day + 2  # code space: logged days + "after the log"

    def build() -> tuple[np.ndarray, np.ndarray]:
        log = ctx.dataset.log
        clicked = log.click == 1
        when = log.day[clicked] - meta.first_day
        key = log.user[clicked] * meta.n_categories + category[log.item[clicked]]
        return np.sort(key * n_days + when), np.sort(log.user[clicked] * n_days + when)

    before = np.clip(day - meta.first_day, 0, n_days - 1)
    window = ctx.config.features.category_affinity_days
    since = np.maximum(before - window, 0) if window > 0 else np.zeros_like(before)
    key = users * meta.n_categories + category[items]
    if before.size and before.min() == before.max():  # one day for every row: serving
        window_days = (int(since[0]) + meta.first_day, int(before[0]) + meta.first_day)
        tables = ctx.memo("user_category_affinity:serving", dict)  # the latest window only
        if window_days not in tables:
            tables.clear()
            tables[window_days] = _user_category_clicks(ctx, *window_days)
        counts, totals = tables[window_days]
        in_category, total = counts[key], totals[users]
    else:  # training rows, each with its own day: ranges of sorted codes
        pair_codes, user_codes = ctx.memo("user_category_affinity", build)
        in_category = np.searchsorted(pair_codes, key * n_days + before) - np.searchsorted(
            pair_codes, key * n_days + since
        )
        total = np.searchsorted(user_codes, users * n_days + before) - np.searchsorted(
            user_codes, users * n_days + since
        )
    prior = 2.0
    return ((in_category + prior / meta.n_categories) / (total + prior)).astype(np.float64)


def _user_category_clicks(
    ctx: FeatureContext, first_day: int, end_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks on days ``first_day <= d < end_day`` per (user, category) and per user.

    The table of a serving day: every candidate row of every visitor is a lookup in it, which
    is what the sorted-code searches count row by row (a flat int64 [n_users * n_categories]
    array, O(users x categories), never users x items).
    """
    meta, log = ctx.dataset.meta, ctx.dataset.log
    rows = np.flatnonzero((log.click == 1) & (log.day >= first_day) & (log.day < end_day))
    users = np.take(log.user, rows)  # take: several times faster than a boolean mask here
    key = users * meta.n_categories + np.take(ctx.dataset.items.category, np.take(log.item, rows))
    per_pair = np.bincount(key, minlength=meta.n_users * meta.n_categories)
    return per_pair, np.bincount(users, minlength=meta.n_users)


# <extension:features>  (recipes insert new feature functions above this line)


FEATURES: dict[str, FeatureFn] = {
    "mf_score": mf_score,
    "item_popularity": item_popularity,
    "item_ctr": item_ctr,
    "user_activity": user_activity,
    "user_category_affinity": user_category_affinity,
    # <registry:features>  (recipes insert new entries above this line)
}


def check_feature_names(names: Sequence[str]) -> None:
    """Fail early, with the list of choices, when the config names an unknown feature."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(
            f"ranker.features: unknown feature(s) {unknown}; registered: {sorted(FEATURES)}"
        )


def feature_matrix(
    ctx: FeatureContext,
    names: Sequence[str],
    users: np.ndarray,
    items: np.ndarray,
    day: np.ndarray | int,
) -> np.ndarray:
    """Stack the named features into a float64 [n, len(names)] matrix (unstandardised)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    day = np.broadcast_to(np.asarray(day, dtype=np.int64), users.shape)
    out = np.empty((users.shape[0], len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        values = np.asarray(FEATURES[name](ctx, users, items, day), dtype=np.float64)
        if values.shape != users.shape:
            raise ValueError(f"feature {name!r} returned shape {values.shape}, want {users.shape}")
        out[:, j] = values
    if not np.all(np.isfinite(out)):
        bad = [n for j, n in enumerate(names) if not np.all(np.isfinite(out[:, j]))]
        raise FloatingPointError(f"feature(s) {bad} produced NaN or inf")
    return out
