"""train() + Model.serve(): the contract the experiment harness relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pinned import only_pools
from synthetic import true_attractiveness

from recsys import Config, ConfigError, Model, train
from recsys.history import pairs_in


@pytest.mark.parametrize("day", [0, 2, 4, 9])
def test_serve_contract(model: Model, day: int) -> None:
    users = np.arange(model.ctx.n_users)
    result = model.serve(users, 10, day)
    items = result.items
    assert items.shape == (users.size, 10) and items.dtype == np.int64
    assert result.candidates_scored.shape == (users.size,)
    assert result.candidates_scored.dtype == np.int64
    assert np.all(items >= 0)  # the catalogue is large enough for full slates
    assert items.max() < model.ctx.n_items
    assert np.all(model.ctx.dataset.items.release_day[items] <= day)
    sorted_rows = np.sort(items, axis=1)
    assert not np.any(sorted_rows[:, 1:] == sorted_rows[:, :-1])


def test_candidates_scored_follows_pool_sizes(data_dir: Path, config: Config) -> None:
    mf_only = train(data_dir, only_pools(config, mf_pool=60), seed=0)
    assert np.all(mf_only.serve(np.arange(30), 10, 4).candidates_scored == 60)
    both = train(data_dir, only_pools(config, mf_pool=60, popular_pool=20), seed=0)
    scored = both.serve(np.arange(30), 10, 4).candidates_scored
    assert np.all(scored >= 60) and np.all(scored <= 80) and np.any(scored > 60)


def test_train_and_serve_are_deterministic(data_dir: Path, config: Config, model: Model) -> None:
    again = train(data_dir, config, seed=0)
    users = np.arange(0, 300, 3)
    for day in (4, 6):
        a, b = model.serve(users, 10, day), again.serve(users, 10, day)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.candidates_scored, b.candidates_scored)
    np.testing.assert_array_equal(model.ranker.weights, again.ranker.weights)


def test_serving_is_independent_of_the_batch(data_dir: Path, config: Config) -> None:
    explorer = train(data_dir, config.with_overrides({"rerank.exploration_slots": 2}), seed=3)
    users = np.arange(120)
    whole = explorer.serve(users, 10, 5).items
    part = explorer.serve(users[[17, 4, 90]], 10, 5).items
    np.testing.assert_array_equal(part, whole[[17, 4, 90]])


def test_short_slates_only_when_candidates_run_out(data_dir: Path, config: Config) -> None:
    tiny_config = only_pools(config, mf_pool=3).with_overrides({"rerank.category_cap": 0})
    tiny = train(data_dir, tiny_config, seed=0)
    result = tiny.serve(np.arange(10), 5, 4)
    assert np.all(result.candidates_scored == 3)
    assert np.all((result.items >= 0).sum(axis=1) == 3) and np.all(result.items[:, 3:] == -1)


def test_invalid_requests(model: Model) -> None:
    with pytest.raises(ValueError, match="user_ids"):
        model.serve(np.array([0, model.ctx.n_users]), 10, 4)
    with pytest.raises(ValueError, match="user_ids"):
        model.serve(np.array([[0]]), 10, 4)
    with pytest.raises(ValueError, match="k must"):
        model.serve(np.array([0]), 0, 4)
    assert model.serve(np.array([], dtype=np.int64), 10, 4).items.shape == (0, 10)


def test_unregistered_names_fail_before_training(data_dir: Path, config: Config) -> None:
    for key, value in [("ranker.loss", "listwise"), ("ranker.debias", "magic")]:
        with pytest.raises(ConfigError, match=key):
            train(data_dir, config.with_overrides({key: value}))
    with pytest.raises(ConfigError, match="unknown feature"):
        train(data_dir, config.with_overrides({"ranker.features": ["mf_score", "nope"]}))


def test_slates_beat_random_on_planted_appeal(data_dir: Path, model: Model) -> None:
    """Served items must be clearly more attractive than random unwatched released items.

    The comparison set is what the baseline may serve: its seen filter keeps items the user
    already clicked out of the slates, and the planted click model (no re-watch aversion)
    rates those highly, so random draws over *all* items would credit random with them.
    """
    users = np.arange(model.ctx.n_users)
    day = 4
    items = model.serve(users, 10, day).items
    served = true_attractiveness(data_dir, np.repeat(users, 10), items.ravel())
    released = np.flatnonzero(model.ctx.released(day))
    grid = np.broadcast_to(released, (users.size, released.size))
    unwatched = ~pairs_in(model.ctx.clicks, users, grid)
    appeal = true_attractiveness(data_dir, np.repeat(users, released.size), grid.ravel())
    baseline = appeal.reshape(grid.shape)[unwatched]
    assert served.mean() > baseline.mean() + 0.05
