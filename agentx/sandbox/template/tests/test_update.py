"""Model.update(): one day of the model's own traffic folded in, as a nightly retrain would.

The reference for "correct" is ``train()`` on the concatenated log: a model trained on days
0..3 and updated with day 4 must count exactly what a model trained on days 0..4 counts.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from recsys import Config, DataError, Model, interactions_from_arrays, train
from recsys.data import Interactions, LogBuffer, load_dataset
from recsys.history import pair_matrix, pairs_in
from recsys.incremental import NEVER_SEEN, served_since
from recsys.mf import fold_in
from recsys.pipeline import split_log
from recsys.rerank import SlateState, seen_filter

LAST = 4  # the synthetic log covers days 0..4


def _day_arrays(data_dir: Path, day: int) -> dict[str, np.ndarray]:
    """The raw arrays (simulator dtypes) of one logged day."""
    with np.load(data_dir / "interactions.npz") as npz:
        rows = npz["day"] == day
        return {name: npz[name][rows] for name in npz.files}


@pytest.fixture(scope="module")
def head_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic data directory without its last day."""
    root = Path(shutil.copytree(data_dir, tmp_path_factory.mktemp("head") / "data"))
    with np.load(root / "interactions.npz") as npz:
        arrays = {name: npz[name][npz["day"] < LAST] for name in npz.files}
    np.savez(root / "interactions.npz", **arrays)
    meta = json.loads((root / "meta.json").read_text())
    (root / "meta.json").write_text(json.dumps({**meta, "last_day": LAST - 1}))
    return root


@pytest.fixture(scope="module")
def updated(head_dir: Path, data_dir: Path, config: Config) -> tuple[Model, Model]:
    """(trained on days 0..3, the same model after update(day 4))."""
    before = train(head_dir, config, seed=0)
    after = train(head_dir, config, seed=0)
    after.update(interactions_from_arrays(**_day_arrays(data_dir, LAST)))
    return before, after


def test_counts_equal_training_on_the_concatenated_log(updated, model: Model) -> None:
    _, after = updated
    ctx, full = after.ctx, model.ctx  # `model` is trained on days 0..4
    for name in ("item_clicks", "item_impressions", "user_clicks", "user_impressions"):
        np.testing.assert_array_equal(getattr(ctx, name), getattr(full, name), err_msg=name)
    assert ctx.global_ctr == full.global_ctr
    assert (ctx.clicks != full.clicks).nnz == 0
    assert ctx.dataset.meta == full.dataset.meta  # last_day moved to the new day
    for field in dataclasses.fields(Interactions):
        np.testing.assert_array_equal(
            getattr(ctx.dataset.log, field.name), getattr(full.dataset.log, field.name)
        )
    assert [r.day for r in ctx.recent] == [r.day for r in full.recent] == [LAST - 1, LAST]
    for mine, theirs in zip(ctx.recent, full.recent, strict=True):
        assert (mine.shown != theirs.shown).nnz == 0


def test_only_users_who_clicked_get_new_factors(updated, data_dir: Path) -> None:
    before, after = updated
    day = _day_arrays(data_dir, LAST)
    clicked = np.zeros(before.ctx.n_users, dtype=bool)
    clicked[day["user"][day["click"] == 1]] = True
    changed = np.any(before.ctx.factors.user != after.ctx.factors.user, axis=1)
    assert clicked.any() and np.all(changed[clicked])
    assert not np.any(changed[~clicked])


def test_new_items_get_factors_and_known_items_keep_theirs(updated, data_dir: Path) -> None:
    before, after = updated
    day = _day_arrays(data_dir, LAST)
    first_clicks = np.unique(day["item"][day["click"] == 1])
    first_clicks = first_clicks[before.ctx.item_clicks[first_clicks] == 0]
    assert first_clicks.size > 0  # the synthetic data releases items during the log
    assert np.all(np.abs(before.ctx.factors.item[first_clicks]).sum(axis=1) == 0)
    assert np.all(np.abs(after.ctx.factors.item[first_clicks]).sum(axis=1) > 0)
    assert before.online is not None
    fitted = before.online.fitted_items  # items with clicks at the full ALS fit
    assert fitted.any()
    np.testing.assert_array_equal(before.ctx.factors.item[fitted], after.ctx.factors.item[fitted])
    refreshed = np.flatnonzero(np.any(before.ctx.factors.item != after.ctx.factors.item, axis=1))
    assert np.all(np.isin(refreshed, day["item"][day["click"] == 1]))  # only clicked ones move


def test_a_new_items_negatives_are_the_users_served_since_its_release(
    updated, data_dir: Path
) -> None:
    """Users the model did not serve since an item's release never had the chance to click
    it, so they do not count against it: a model serving a small arm of an A/B would
    otherwise see every new item as passed over by most users and shrink its factors."""
    before, _ = updated
    model = pickle.loads(pickle.dumps(before))  # a model that served only half the users
    assert model.online is not None
    half = np.arange(model.ctx.n_users) % 2 == 0
    model.online.last_seen[~half] = NEVER_SEEN
    day = _day_arrays(data_dir, LAST)
    mine = {name: values[half[day["user"]]] for name, values in day.items()}
    model.update(interactions_from_arrays(**mine))
    clicked = np.unique(mine["item"][mine["click"] == 1])
    new_items = clicked[~model.online.fitted_items[clicked]]
    assert new_items.size > 0
    item = int(new_items[0])
    exposed = model.online.last_seen >= model.ctx.dataset.items.release_day[item]
    assert np.array_equal(exposed, half)
    rc = model.config.retrieval
    clickers = model.ctx.clicks[:, [item]].T.tocsr()
    user_factors = model.ctx.factors.user
    served = user_factors[exposed].astype(np.float64)
    expected = fold_in(clickers, user_factors, rc.mf_reg, rc.mf_alpha, served.T @ served)
    everyone = fold_in(clickers, user_factors, rc.mf_reg, rc.mf_alpha)
    np.testing.assert_allclose(model.ctx.factors.item[item], expected[0], rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(expected) > np.linalg.norm(everyone)  # fewer negatives


def test_grams_of_the_users_served_since_each_day_match_a_direct_sum() -> None:
    rng = np.random.default_rng(3)
    factors = rng.normal(size=(50, 4)).astype(np.float32)
    last_seen = rng.integers(0, 10, size=50)
    last_seen[:3] = NEVER_SEEN
    days = np.array([2, 5, 9])
    for day, gram in zip(days, served_since(factors, last_seen, days), strict=True):
        rows = factors[last_seen >= day].astype(np.float64)
        np.testing.assert_allclose(gram, rows.T @ rows, rtol=1e-10)


def test_empty_day_is_a_no_op(head_dir: Path, data_dir: Path, config: Config) -> None:
    model = train(head_dir, config, seed=0)
    users = np.arange(model.ctx.n_users)
    expected = model.serve(users, 10, LAST).items
    state = dict(model.ctx.__dict__)
    empty = {name: values[:0] for name, values in _day_arrays(data_dir, LAST).items()}
    model.update(interactions_from_arrays(**empty))
    assert all(model.ctx.__dict__[key] is value for key, value in state.items())
    np.testing.assert_array_equal(model.serve(users, 10, LAST).items, expected)


def test_a_watched_item_is_not_served_again(updated, data_dir: Path) -> None:
    _, after = updated
    users = np.arange(after.ctx.n_users)
    items = after.serve(users, 10, LAST + 1).items
    assert not pairs_in(after.ctx.clicks, users, items).any()  # neither logged nor new clicks
    day = _day_arrays(data_dir, LAST)
    new_clicks = day["click"] == 1
    new_users, new_items = day["user"][new_clicks], day["item"][new_clicks]
    assert new_users.size > 0
    assert not np.any(np.any(items[new_users] == new_items[:, None], axis=1))


def test_without_the_seen_filter_watched_items_return(head_dir: Path, config: Config) -> None:
    """The filter is what keeps them out: ALS reconstructs past clicks."""
    plain = train(head_dir, config.with_overrides({"rerank.seen_penalty": 0.0}), seed=0)
    users = np.arange(plain.ctx.n_users)
    items = plain.serve(users, 10, LAST).items
    assert pairs_in(plain.ctx.clicks, users, items).mean() > 0.05


def test_recent_impressions_are_demoted_for_the_window_only(updated, data_dir: Path) -> None:
    _, after = updated
    day = _day_arrays(data_dir, LAST)
    ignored = day["click"] == 0
    users = day["user"][ignored][:50].astype(np.int64)
    candidates = day["item"][ignored][:50, None].astype(np.int64)
    clicked = pairs_in(after.ctx.clicks, users, candidates)[:, 0]
    window = after.config.rerank.recent_impression_days

    def penalty(serve_day: int) -> np.ndarray:
        state = SlateState(
            ctx=after.ctx,
            users=users,
            day=serve_day,
            candidates=candidates,
            scores=np.zeros(candidates.shape),
            selected=np.full((users.size, 1), -1, dtype=np.int64),
        )
        rule = seen_filter(state)
        assert rule is not None
        return rule.adjust(state)[:, 0]

    rerank = after.config.rerank
    np.testing.assert_array_equal(penalty(LAST + 1)[~clicked], -rerank.recent_impression_penalty)
    np.testing.assert_array_equal(
        penalty(LAST + window)[~clicked], -rerank.recent_impression_penalty
    )
    np.testing.assert_array_equal(penalty(LAST + window + 1)[~clicked], 0.0)
    np.testing.assert_array_equal(penalty(LAST + 1)[clicked], -rerank.seen_penalty)


def test_update_is_deterministic_and_batch_independent(updated, head_dir, data_dir, config):
    _, after = updated
    again = train(head_dir, config, seed=0)
    again.update(interactions_from_arrays(**_day_arrays(data_dir, LAST)))
    np.testing.assert_array_equal(again.ctx.factors.user, after.ctx.factors.user)
    np.testing.assert_array_equal(again.ctx.factors.item, after.ctx.factors.item)
    users = np.arange(after.ctx.n_users)
    whole = after.serve(users, 10, LAST + 1).items
    np.testing.assert_array_equal(again.serve(users, 10, LAST + 1).items, whole)
    part = after.serve(users[[250, 3, 77]], 10, LAST + 1).items
    np.testing.assert_array_equal(part, whole[[250, 3, 77]])


def test_memo_is_rebuilt_after_update(head_dir: Path, data_dir: Path, config: Config) -> None:
    model = train(head_dir, config, seed=0)

    def rows() -> int:
        return len(model.ctx.dataset.log)

    first = model.ctx.memo("rows", rows)
    model.update(interactions_from_arrays(**_day_arrays(data_dir, LAST)))
    assert model.ctx.memo("rows", rows) > first


def test_bad_feedback_is_rejected_and_leaves_the_model_unchanged(updated, data_dir: Path) -> None:
    _, after = updated
    state = dict(after.ctx.__dict__)
    day = _day_arrays(data_dir, LAST)
    with pytest.raises(DataError, match="not after the last day"):
        after.update(interactions_from_arrays(**day))  # day 4 is already in the model
    later = {**day, "day": np.full(day["day"].shape, LAST + 1)}
    mixed = {**later, "day": later["day"] + (np.arange(later["day"].size) % 2)}
    with pytest.raises(DataError, match="one day"):
        after.update(interactions_from_arrays(**mixed))
    with pytest.raises(DataError, match="feedback.user out of range"):
        after.update(interactions_from_arrays(**{**later, "user": later["user"] + 10_000}))
    unreleased = int(np.argmax(after.ctx.dataset.items.release_day))
    with pytest.raises(DataError, match="before its release_day"):
        after.update(
            interactions_from_arrays(**{**later, "item": np.full_like(later["item"], unreleased)})
        )
    with pytest.raises(DataError, match="Interactions"):
        after.update(later)  # type: ignore[arg-type]
    assert all(after.ctx.__dict__[key] is value for key, value in state.items())


def test_interactions_from_arrays_normalises_and_validates(data_dir: Path) -> None:
    day = _day_arrays(data_dir, LAST)
    log = interactions_from_arrays(**day)
    assert log.user.dtype == log.item.dtype == log.day.dtype == log.position.dtype == np.int64
    assert log.click.dtype == np.int8 and log.watch_time.dtype == np.float64
    assert len(log) == day["user"].size
    with pytest.raises(DataError, match="missing"):
        interactions_from_arrays(**{k: v for k, v in day.items() if k != "click"})
    with pytest.raises(DataError, match="click out of range"):
        interactions_from_arrays(**{**day, "click": day["click"] * 2})
    with pytest.raises(DataError, match="integer"):
        interactions_from_arrays(**{**day, "item": day["item"].astype(np.float64)})
    with pytest.raises(DataError, match="length"):
        interactions_from_arrays(**{**day, "day": day["day"][:-1]})
    watched = {**day, "watch_time": np.where(day["click"] == 1, 0.0, 3.0)}
    with pytest.raises(DataError, match="watch_time must be 0"):
        interactions_from_arrays(**watched)


def test_log_buffer_grows_and_keeps_earlier_views(data_dir: Path) -> None:
    log = load_dataset(data_dir).log
    buffer = LogBuffer(log, spare_rows=10)
    first = buffer.log
    snapshot = first.user.copy()
    for _ in range(3):  # beyond the spare capacity: regrows
        buffer.append(log)
    assert len(buffer) == 4 * len(log) and buffer.capacity >= len(buffer)
    np.testing.assert_array_equal(first.user, snapshot)
    np.testing.assert_array_equal(buffer.log.item[-len(log) :], log.item)


def test_an_updated_model_pickles_without_its_spare_capacity(updated) -> None:
    _, after = updated
    copy = pickle.loads(pickle.dumps(after))
    assert copy.online is not None and copy.online.buffer.capacity == len(after.ctx.dataset.log)
    users = np.arange(after.ctx.n_users)
    np.testing.assert_array_equal(
        copy.serve(users, 10, LAST + 1).items, after.serve(users, 10, LAST + 1).items
    )


def test_pairs_in_matches_a_dense_lookup() -> None:
    rng = np.random.default_rng(1)
    matrix = pair_matrix(rng.integers(0, 300, 3000), rng.integers(0, 120, 3000), 300, 120)
    users = rng.permutation(300)[:100]
    candidates = rng.integers(-1, 120, (100, 30))
    dense = matrix.toarray() > 0
    expected = dense[users[:, None], np.maximum(candidates, 0)] & (candidates >= 0)
    np.testing.assert_array_equal(pairs_in(matrix, users, candidates), expected)


def test_ranker_learns_from_a_time_split(data_dir: Path, config: Config, model: Model) -> None:
    dataset = load_dataset(data_dir)
    split = split_log(dataset, config)
    assert split is not None
    earlier, rows = split
    first_label_day = LAST - config.ranker.train_days + 1
    assert rows.day.min() == first_label_day and earlier.log.day.max() == first_label_day - 1
    assert earlier.meta.last_day == first_label_day - 1  # features never see the label days
    assert len(earlier.log) + len(rows) == len(dataset.log)
    assert split_log(dataset, config.with_overrides({"ranker.train_days": 0})) is None
    # The label days then enter the model through update(): it knows the whole log.
    assert model.ctx.dataset.meta == dataset.meta and len(model.ctx.dataset.log) == len(dataset.log)
