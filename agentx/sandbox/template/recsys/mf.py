"""Implicit-feedback matrix factorisation (ALS, Hu, Koren & Volinsky 2008) of logged clicks.

Why ALS: it treats every unclicked (user, item) pair as a weak negative, which suits
click logs, and each half-step is a batch of small d x d solves that numpy does quickly.
The factors serve both the MF retrieval channel and the ``mf_score`` ranking feature.

Note: impressions without a click are *not* used here (they are treated like items never
shown), so the factorisation ignores the position bias of the log entirely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import Dataset


@dataclass(frozen=True)
class Factors:
    """Latent vectors; ``user @ item.T`` is the MF affinity score."""

    user: np.ndarray  # float32 [n_users, dim]
    item: np.ndarray  # float32 [n_items, dim]


def click_counts(dataset: Dataset) -> sp.csr_matrix:
    """User x item matrix of logged click counts (repeat clicks across days add up)."""
    log = dataset.log
    clicked = log.click == 1
    shape = (dataset.meta.n_users, dataset.meta.n_items)
    data = np.ones(int(clicked.sum()), dtype=np.float64)
    counts = sp.coo_matrix((data, (log.user[clicked], log.item[clicked])), shape=shape)
    return counts.tocsr()  # duplicates are summed


def _half_step(
    confidence: sp.csr_matrix, weighted_pref: sp.csr_matrix, fixed: np.ndarray, reg: float
) -> np.ndarray:
    """Solve all rows of one side given the other side's factors ``fixed``.

    For row u: (F^T F + F^T (C_u - I) F + reg I) x_u = F^T C_u p_u. The sparse part
    F^T (C_u - I) F is a sparse matrix times the row-wise outer products of F.
    """
    dim = fixed.shape[1]
    gram = fixed.T @ fixed + reg * np.eye(dim)
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(fixed.shape[0], dim * dim)
    lhs = np.asarray(confidence @ outer).reshape(-1, dim, dim) + gram
    rhs = np.asarray(weighted_pref @ fixed)
    return np.linalg.solve(lhs, rhs[..., None])[..., 0]


def fit_als(
    counts: sp.csr_matrix, dim: int, reg: float, alpha: float, iters: int, seed: int
) -> Factors:
    """Alternating least squares with confidence ``1 + alpha * clicks``; seeded init."""
    rng = np.random.default_rng([seed, 0x3F])
    n_users, n_items = counts.shape
    extra_conf = (counts * alpha).tocsr()  # C - I on observed entries
    weighted_pref = counts.copy().tocsr()
    weighted_pref.data = 1.0 + alpha * weighted_pref.data  # C * P (P = 1 where clicked)
    extra_conf_t = extra_conf.T.tocsr()
    weighted_pref_t = weighted_pref.T.tocsr()
    item = rng.normal(0.0, 0.1, size=(n_items, dim))
    user = np.zeros((n_users, dim))
    for _ in range(iters):
        user = _half_step(extra_conf, weighted_pref, item, reg)
        item = _half_step(extra_conf_t, weighted_pref_t, user, reg)
    return Factors(user=user.astype(np.float32), item=item.astype(np.float32))
