"""Candidate channels, their union, and the MF factors behind the personalised channel."""

from __future__ import annotations

import numpy as np
import pytest
from pinned import only_pools

from recsys import Model
from recsys.context import FeatureContext
from recsys.retrieval import CHANNELS, pool_size, retrieve, union_candidates


def _ctx(model: Model, **pools: int) -> FeatureContext:
    """The trained context with only the given channels on (no retraining needed)."""
    config = only_pools(model.config, **pools)
    return FeatureContext(**{**model.ctx.__dict__, "config": config, "_memo": {}})


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_channel_returns_released_unique_items(model: Model, name: str) -> None:
    users = np.arange(50)
    day = 2  # some synthetic items are released later than this
    out = np.asarray(CHANNELS[name](model.ctx, users, day, 15))
    assert out.shape[0] == users.size and out.shape[1] <= 15
    valid = out[out >= 0]
    assert valid.max() < model.ctx.n_items
    assert np.all(model.ctx.dataset.items.release_day[valid] <= day)
    for row in out:
        row = row[row >= 0]
        assert np.unique(row).size == row.size


def test_fresh_channel_takes_the_newest(model: Model) -> None:
    day = 6
    out = CHANNELS["fresh"](model.ctx, np.arange(3), day, 5)
    release = model.ctx.dataset.items.release_day
    newest = np.sort(release[release <= day])[::-1][:5]
    np.testing.assert_array_equal(np.sort(release[out[0]])[::-1], newest)


def test_popular_channel_takes_the_most_clicked(model: Model) -> None:
    out = CHANNELS["popular"](model.ctx, np.arange(2), 4, 5)
    clicks = model.ctx.item_clicks
    released = model.ctx.released(4)
    assert clicks[out[0]].min() >= np.sort(clicks[released])[-5]


def test_union_deduplicates_and_pads() -> None:
    parts = [np.array([[3, 1, 2], [5, 5, -1]]), np.array([[2, 4], [-1, -1]])]
    out = union_candidates(parts, n_items=10, n_users=2)
    np.testing.assert_array_equal(out, [[1, 2, 3, 4], [5, -1, -1, -1]])


def test_candidate_count_matches_pool_sizes(model: Model) -> None:
    users = np.arange(40)
    mf_only = retrieve(_ctx(model, mf_pool=25), users, 4)
    assert np.all((mf_only >= 0).sum(axis=1) == 25)
    ctx = _ctx(model, mf_pool=25, popular_pool=10, fresh_pool=5)
    merged = retrieve(ctx, users, 4)
    counts = (merged >= 0).sum(axis=1)
    channels = [CHANNELS[n](ctx, users, 4, pool_size(ctx, n)) for n in ("mf", "popular", "fresh")]
    for i in range(users.size):
        union = set(np.concatenate([c[i] for c in channels]).tolist()) - {-1}
        assert counts[i] == len(union)
    assert np.all(counts >= 25) and np.all(counts <= 40)


def test_als_scores_clicked_items_higher(model: Model) -> None:
    log = model.ctx.dataset.log
    factors = model.ctx.factors
    scores = np.einsum("nd,nd->n", factors.user[log.user], factors.item[log.item])
    clicked = log.click == 1
    assert scores[clicked].mean() > scores[~clicked].mean() + 0.1
