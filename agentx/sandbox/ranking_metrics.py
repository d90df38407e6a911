"""Offline ranking metrics with binary relevance: NDCG@K, Recall@K, coverage."""

from __future__ import annotations

import numpy as np


def _relevance(ranked: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    return np.array(
        [
            [1.0 if item in rel else 0.0 for item in row]
            for row, rel in zip(ranked, relevant, strict=True)
        ]
    ).reshape(ranked.shape)


def ndcg_at_k(ranked: np.ndarray, relevant: list[set[int]], k: int) -> float:
    """Mean NDCG@k over users with at least one relevant item (binary gains, log2 discount)."""
    ranked = np.asarray(ranked)[:, :k]
    gains = _relevance(ranked, relevant)
    discounts = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))
    dcg = gains @ discounts
    n_rel = np.array([min(len(rel), ranked.shape[1]) for rel in relevant])
    ideal = np.array([discounts[:n].sum() for n in n_rel])
    mask = n_rel > 0
    return float((dcg[mask] / ideal[mask]).mean()) if mask.any() else 0.0


def recall_at_k(ranked: np.ndarray, relevant: list[set[int]], k: int) -> float:
    """Mean share of each user's relevant items found in the top k."""
    ranked = np.asarray(ranked)[:, :k]
    hits = _relevance(ranked, relevant).sum(axis=1)
    n_rel = np.array([len(rel) for rel in relevant])
    mask = n_rel > 0
    return float((hits[mask] / n_rel[mask]).mean()) if mask.any() else 0.0


def catalogue_coverage(ranked: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in anyone's top list."""
    shown = np.unique(ranked[ranked >= 0])
    return float(shown.size / n_items) if n_items else 0.0
