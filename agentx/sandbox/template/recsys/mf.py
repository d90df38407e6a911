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
from .history import click_matrix

_BLOCK = 8192  # rows solved together: bounds the [rows, dim^2] temporaries (cache, memory)


@dataclass(frozen=True)
class Factors:
    """Latent vectors; ``user @ item.T`` is the MF affinity score."""

    user: np.ndarray  # float32 [n_users, dim]
    item: np.ndarray  # float32 [n_items, dim]


def click_counts(dataset: Dataset) -> sp.csr_matrix:
    """User x item matrix of logged click counts (repeat clicks across days add up)."""
    meta = dataset.meta
    return click_matrix(dataset.log, meta.n_users, meta.n_items)


def _half_step(
    confidence: sp.csr_matrix,
    weighted_pref: sp.csr_matrix,
    fixed: np.ndarray,
    reg: float,
    gram: np.ndarray | None = None,
    work: np.ndarray | None = None,
) -> np.ndarray:
    """Solve all rows of one side given the other side's factors ``fixed``.

    For row u: (F^T F + F^T (C_u - I) F + reg I) x_u = F^T C_u p_u. The sparse part
    F^T (C_u - I) F is a sparse matrix times the row-wise outer products of F. Rows are
    solved in blocks, and rows without clicks are skipped (their solution is 0). ``gram``
    (F^T F + reg I over *all* rows of the other side) may be passed when ``fixed`` holds only
    the rows the sparse matrices' columns refer to (see :func:`fold_in`). ``work`` (float64,
    at least rows of ``fixed`` x dim^2) holds the outer products when given: a table of
    200 MB at 100k users is then allocated once per fit, not once per sweep.
    """
    dim = fixed.shape[1]
    if gram is None:
        gram = fixed.T @ fixed + reg * np.eye(dim)
    n_fixed = fixed.shape[0]
    outer = (
        np.empty((n_fixed, dim * dim)) if work is None else work[: n_fixed * dim * dim]
    ).reshape(n_fixed, dim * dim)
    np.multiply(fixed[:, :, None], fixed[:, None, :], out=outer.reshape(n_fixed, dim, dim))
    out = np.zeros((confidence.shape[0], dim))
    rows = np.flatnonzero(np.diff(confidence.indptr))  # a row without clicks solves to 0
    for start in range(0, rows.size, _BLOCK):
        block = rows[start : start + _BLOCK]
        lhs = np.asarray(confidence[block] @ outer).reshape(-1, dim, dim)
        lhs += gram
        rhs = np.asarray(weighted_pref[block] @ fixed)
        out[block] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return out


def fit_als(
    counts: sp.csr_matrix, dim: int, reg: float, alpha: float, iters: int, seed: int
) -> Factors:
    """Alternating least squares with confidence ``1 + alpha * clicks``; seeded init."""
    rng = np.random.default_rng([seed, 0x3F])
    n_users, n_items = counts.shape
    extra_conf = (counts * alpha).tocsr()  # C - I on observed entries
    weighted_pref = counts.copy().tocsr()
    weighted_pref.data = 1.0 + alpha * weighted_pref.data  # C * P (P = 1 where clicked)
    # Users without clicks have zero factors and appear in no item's row: the item half-step
    # reads only the clickers' factors (columns renumbered once; same entries, same order).
    clickers = np.flatnonzero(np.diff(extra_conf.indptr))
    transposed = extra_conf.T.tocsr()
    shape = (n_items, clickers.size)
    columns = np.searchsorted(clickers, transposed.indices)
    extra_conf_t = sp.csr_matrix((transposed.data, columns, transposed.indptr), shape=shape)
    pref_t = weighted_pref.T.tocsr()
    columns = np.searchsorted(clickers, pref_t.indices)
    weighted_pref_t = sp.csr_matrix((pref_t.data, columns, pref_t.indptr), shape=shape)
    work = np.empty(max(clickers.size, n_items) * dim * dim)
    item = rng.normal(0.0, 0.1, size=(n_items, dim))
    user = np.zeros((n_users, dim))
    for _ in range(iters):
        user = _half_step(extra_conf, weighted_pref, item, reg, work=work)
        gram = user.T @ user + reg * np.eye(dim)  # over every user, as without the compaction
        item = _half_step(extra_conf_t, weighted_pref_t, user[clickers], reg, gram, work)
    return Factors(user=user.astype(np.float32), item=item.astype(np.float32))


def fold_in(
    counts: sp.csr_matrix,
    fixed: np.ndarray,
    reg: float,
    alpha: float,
    negatives_gram: np.ndarray | None = None,
) -> np.ndarray:
    """One ALS half-step for some rows only: ``counts`` [rows, n_other] against ``fixed``.

    This is how the model absorbs a day of feedback without a full refit: the rows of users
    with new clicks (their whole accumulated click rows) are re-solved against the fixed item
    factors, and likewise new items against the user factors. Each solve is exactly the one
    :func:`fit_als` would make for that row given ``fixed``, except that ``negatives_gram``
    (``F^T F`` over the rows of ``fixed`` that count as implicit negatives, which must include
    every row ``counts`` touches; all rows when None) can leave out rows that never had the
    chance to interact (see recsys/incremental.py). Only the columns the rows touch enter the
    sparse products, so the cost grows with the rows' clicks, not with the size of the other
    side (200k users would otherwise mean a 200k x dim^2 table per item solve).
    Returns float64 [rows, dim].
    """
    fixed = np.asarray(fixed, dtype=np.float64)
    dim = fixed.shape[1]
    negatives = fixed.T @ fixed if negatives_gram is None else negatives_gram
    gram = negatives + reg * np.eye(dim)
    if counts.shape[0] == 0:
        return np.zeros((0, dim))
    if fixed.shape[0] > counts.nnz:  # e.g. new items vs 200k users: keep the touched columns
        columns, indices = np.unique(counts.indices, return_inverse=True)
        fixed = fixed[columns]
    else:  # e.g. users vs 5k items: the full outer-product table is cheaper than compacting
        indices = counts.indices
    shape = (counts.shape[0], fixed.shape[0])
    extra_conf = sp.csr_matrix((alpha * counts.data, indices, counts.indptr), shape=shape)
    weighted = sp.csr_matrix((1.0 + alpha * counts.data, indices, counts.indptr), shape=shape)
    return _half_step(extra_conf, weighted, fixed, reg, gram)
