"""Synthetic logged data in the simulator's schema, with a planted, learnable click model.

Clicks follow a position-based model, P(click) = examination(position) x attractiveness,
where attractiveness mixes a latent taste match, a per-user category preference and an item
quality. The logging policy shows a Gumbel-top-k sample favouring high-quality items, so the
log is both position- and exposure-biased, like the real simulator's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_synthetic(
    path: str | Path,
    n_users: int = 300,
    n_items: int = 120,
    n_categories: int = 6,
    n_creators: int = 20,
    n_days: int = 5,
    slate_size: int = 10,
    first_day: int = 0,
    visit_prob: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write items.npz, interactions.npz and meta.json into ``path``; returns ``path``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    last_day = first_day + n_days - 1

    category = rng.integers(0, n_categories, n_items).astype(np.int32)
    creator = rng.integers(0, n_creators, n_items).astype(np.int32)
    release_day = rng.integers(first_day - 30, first_day, n_items)
    late = rng.random(n_items) < 0.15  # released during logging or after it
    release_day[late] = rng.integers(first_day + 1, last_day + 4, int(late.sum()))
    release_day = release_day.astype(np.int32)

    user_taste = rng.normal(size=(n_users, 4))
    item_taste = rng.normal(size=(n_items, 4))
    category_pref = rng.normal(0.0, 1.0, size=(n_users, n_categories))
    quality = rng.normal(0.0, 1.0, n_items)
    examination = 1.0 / (1.0 + np.arange(slate_size)) ** 0.7

    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "day", "position")}
    for day in range(first_day, last_day + 1):
        visitors = np.flatnonzero(rng.random(n_users) < visit_prob)
        released = np.flatnonzero(release_day <= day)
        size = min(slate_size, released.size)
        logits = 0.7 * quality[released] + rng.gumbel(size=(visitors.size, released.size))
        top = np.argpartition(-logits, size - 1, axis=1)[:, :size]
        order = np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1)
        slates = released[np.take_along_axis(top, order, axis=1)]
        columns["user"].append(np.repeat(visitors, size))
        columns["item"].append(slates.ravel())
        columns["day"].append(np.full(visitors.size * size, day))
        columns["position"].append(np.tile(np.arange(size), visitors.size))
    log = {k: np.concatenate(v) for k, v in columns.items()}
    u, i = log["user"], log["item"]
    match = np.einsum("nd,nd->n", user_taste[u], item_taste[i]) / 2.0
    logit = match + category_pref[u, category[i]] + 0.5 * quality[i] - 1.5
    attract = 1.0 / (1.0 + np.exp(-logit))
    click = rng.random(u.size) < examination[log["position"]] * attract
    watch = np.where(click, 30.0 * np.exp(0.5 * quality[i] + 0.3 * match), 0.0)

    np.savez(root / "items.npz", category=category, creator=creator, release_day=release_day)
    np.savez(
        root / "interactions.npz",
        user=u.astype(np.int32),
        item=i.astype(np.int32),
        day=log["day"].astype(np.int32),
        position=log["position"].astype(np.int16),
        click=click.astype(np.int8),
        watch_time=watch.astype(np.float32),
    )
    meta = {
        "n_users": n_users,
        "n_items": n_items,
        "n_categories": n_categories,
        "n_creators": n_creators,
        "first_day": first_day,
        "last_day": last_day,
        "slate_size": slate_size,
    }
    (root / "meta.json").write_text(json.dumps(meta))
    # Ground truth for tests only; the recommender never reads files outside the contract.
    np.savez(
        root / "truth.npz",
        user_taste=user_taste,
        item_taste=item_taste,
        category_pref=category_pref,
        quality=quality,
    )
    return root


def true_attractiveness(data_dir: str | Path, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The planted click probability at the top slot for aligned (user, item) arrays."""
    root = Path(data_dir)
    with np.load(root / "truth.npz") as truth, np.load(root / "items.npz") as item_table:
        match = np.einsum("nd,nd->n", truth["user_taste"][users], truth["item_taste"][items])
        category = item_table["category"][items]
        logit = match / 2.0 + truth["category_pref"][users, category]
        logit = logit + 0.5 * truth["quality"][items] - 1.5
    return 1.0 / (1.0 + np.exp(-logit))
