"""Every registered feature: right shape, finite, same function for train rows and serve rows."""

from __future__ import annotations

import numpy as np
import pytest

from recsys import Model
from recsys.config import ConfigError
from recsys.features import FEATURES, check_feature_names, feature_matrix


def _serve_like_rows(model: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (user, item) pair of a few users, on a day after logging (unlogged items too)."""
    meta = model.ctx.dataset.meta
    users = np.repeat(np.arange(5), meta.n_items)
    items = np.tile(np.arange(meta.n_items), 5)
    return users, items, np.full(users.shape, meta.last_day + 3)


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_feature_shape_and_finite(model: Model, name: str) -> None:
    log = model.ctx.dataset.log
    train_values = FEATURES[name](model.ctx, log.user, log.item, log.day)
    assert np.shape(train_values) == (len(log),)
    assert np.all(np.isfinite(train_values))
    users, items, day = _serve_like_rows(model)
    serve_values = FEATURES[name](model.ctx, users, items, day)
    assert np.shape(serve_values) == users.shape
    assert np.all(np.isfinite(serve_values))


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_feature_is_a_pure_function_of_its_inputs(model: Model, name: str) -> None:
    users, items, day = _serve_like_rows(model)
    whole = FEATURES[name](model.ctx, users, items, day)
    part = FEATURES[name](model.ctx, users[7:40], items[7:40], day[7:40])
    np.testing.assert_array_equal(whole[7:40], part)


def test_feature_matrix_stacks_in_config_order(model: Model) -> None:
    users, items, day = _serve_like_rows(model)
    names = ["item_ctr", "mf_score"]
    matrix = feature_matrix(model.ctx, names, users, items, int(day[0]))  # scalar day broadcasts
    assert matrix.shape == (users.size, 2)
    np.testing.assert_allclose(matrix[:, 1], FEATURES["mf_score"](model.ctx, users, items, day))


def test_item_ctr_is_smoothed_towards_global_ctr(model: Model) -> None:
    ctx = model.ctx
    never_shown = np.flatnonzero(ctx.item_impressions == 0)
    assert never_shown.size > 0  # the synthetic data releases items after logging
    values = FEATURES["item_ctr"](ctx, np.zeros_like(never_shown), never_shown, never_shown)
    np.testing.assert_allclose(values, ctx.global_ctr)


def test_unknown_and_broken_features_fail_clearly(model: Model, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="unknown feature"):
        check_feature_names(["mf_score", "nope"])
    monkeypatch.setitem(FEATURES, "broken", lambda ctx, u, i, d: np.full(u.shape, np.nan))
    with pytest.raises(FloatingPointError, match="broken"):
        feature_matrix(model.ctx, ["broken"], np.array([0]), np.array([0]), 0)


def _affinity_by_hand(ctx, user: int, item: int, day: int, window: int) -> float:
    """The definition, one row at a time: clicks on days in [day - window, day) (all before
    ``day`` when window is 0), share in the item's category, two pseudo-clicks spread evenly."""
    log, meta, category = ctx.dataset.log, ctx.dataset.meta, ctx.dataset.items.category
    start = day - window if window > 0 else -(10**9)
    mine = (log.user == user) & (log.click == 1) & (log.day < day) & (log.day >= start)
    total = int(mine.sum())
    same = int((category[log.item[mine]] == category[item]).sum())
    return (same + 2.0 / meta.n_categories) / (total + 2.0)


def _by_hand_rows(ctx, users, items, days, window: int) -> list[float]:
    rows = zip(users.tolist(), items.tolist(), days.tolist(), strict=True)
    return [_affinity_by_hand(ctx, u, i, d, window) for u, i, d in rows]


def _by_hand_rows(ctx, users, items, days, window: int) -> list[float]:
    rows = zip(users.tolist(), items.tolist(), days.tolist(), strict=True)
    return [_affinity_by_hand(ctx, u, i, d, window) for u, i, d in rows]


@pytest.mark.parametrize("window", [0, 2])
def test_user_category_affinity_counts_only_earlier_clicks_in_the_window(
    model: Model, window: int
) -> None:
    ctx = model.ctx
    ctx = type(ctx)(**{**ctx.__dict__, "_memo": {}})  # own memo: the window changes the table
    ctx.config = ctx.config.with_overrides({"features.category_affinity_days": window})
    log = ctx.dataset.log
    rows = np.flatnonzero(log.click == 1)[:40]  # clicked rows: their own click must not count
    users, items, days = log.user[rows], log.item[rows], log.day[rows]
    got = FEATURES["user_category_affinity"](ctx, users, items, days)
    np.testing.assert_allclose(got, _by_hand_rows(ctx, users, items, days, window))
    after_log = np.full(users.shape, ctx.dataset.meta.last_day + 1)
    served = FEATURES["user_category_affinity"](ctx, users, items, after_log)
    np.testing.assert_allclose(served, _by_hand_rows(ctx, users, items, after_log, window))


@pytest.mark.parametrize("window", [0, 2])
def test_user_category_affinity_same_for_a_serving_day_and_for_mixed_days(
    model: Model, window: int
) -> None:
    ctx = model.ctx
    ctx = type(ctx)(**{**ctx.__dict__, "_memo": {}})
    ctx.config = ctx.config.with_overrides({"features.category_affinity_days": window})
    log = ctx.dataset.log
    rng = np.random.default_rng(3)
    rows = rng.choice(len(log), size=300, replace=False)
    users, items = log.user[rows], log.item[rows]
    days = rng.integers(ctx.dataset.meta.first_day, ctx.dataset.meta.last_day + 2, size=300)
    assert np.unique(days).size > 1
    mixed = FEATURES["user_category_affinity"](ctx, users, items, days)  # sorted-code counts
    for day in np.unique(days):  # one serving batch per day: the per-day count table
        same = days == day
        one_day = np.full(int(same.sum()), day)
        served = FEATURES["user_category_affinity"](ctx, users[same], items[same], one_day)
        assert np.array_equal(served, mixed[same])
