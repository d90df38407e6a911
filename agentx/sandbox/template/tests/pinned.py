"""Pinned baseline values for the unit tests, and config helpers that survive extensions."""

from __future__ import annotations

from typing import Any

from recsys import Config
from recsys.config import to_dict

# The baseline values the unit tests are written against. The tests check *code*, so they pin
# these instead of reading them from config.toml, which is the agents' lever and may hold any
# tuned value. Keys added later (by an extension) still come from config.toml.
BASELINE: dict[str, Any] = {
    "retrieval.mf_dim": 16,
    "retrieval.mf_reg": 1.0,
    "retrieval.mf_alpha": 3.0,
    "retrieval.mf_iters": 8,
    "retrieval.mf_pool": 60,
    "retrieval.popular_pool": 20,
    "retrieval.fresh_pool": 0,
    "features.ctr_smoothing": 20.0,
    "features.category_affinity_days": 0,
    "ranker.features": [
        "mf_score",
        "item_popularity",
        "item_ctr",
        "user_activity",
        "user_category_affinity",
    ],
    "ranker.loss": "pointwise",
    "ranker.debias": "none",
    "ranker.l2": 1e-4,
    "ranker.epochs": 40,
    "ranker.learning_rate": 1.0,
    "ranker.momentum": 0.8,
    "ranker.train_days": 2,
    "rerank.category_cap": 4,
    "rerank.exploration_slots": 0,
    "rerank.seen_penalty": 5.0,
    "rerank.recent_impression_penalty": 0.5,
    "rerank.recent_impression_days": 2,
}


def only_pools(config: Config, **pools: int) -> Config:
    """``config`` with every retrieval channel off except the given ``<channel>_pool`` sizes."""
    keys = [k for k in to_dict(config)["retrieval"] if k.endswith("_pool")]
    off = {f"retrieval.{k}": 0 for k in keys}
    return config.with_overrides({**off, **{f"retrieval.{k}": v for k, v in pools.items()}})
