"""Per-user interaction history: what each user clicked, and what they were shown lately.

Why sparse user x item matrices instead of scanning the log: serving asks "did this user
click this candidate before?" and "was it shown to them in the last days without a click?"
for every (user, candidate) pair, ~10^7 pairs a day in the default world. A CSR matrix with
sorted column indices answers that for a chunk of users by gathering only those users' rows
(see :func:`pairs_in`), so the cost grows with the chunk's history, never with the whole log
or with users x items. The click-count matrix is also the input of the ALS factorisation,
so one structure serves retrieval training and the seen-item filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import Interactions


@dataclass(frozen=True)
class DayImpressions:
    """The (user, item) pairs shown on ``day`` that the user did not click."""

    day: int
    shown: sp.csr_matrix  # int8 [n_users, n_items], 1 = shown without a click that day


def pair_matrix(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, dtype: type = np.float64
) -> sp.csr_matrix:
    """Count matrix of (user, item) pairs: canonical CSR (sorted indices, duplicates summed)."""
    data = np.ones(users.shape[0], dtype=dtype)
    matrix = sp.csr_matrix((data, (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()  # also sorts the column indices of every row
    return matrix


def click_matrix(log: Interactions, n_users: int, n_items: int) -> sp.csr_matrix:
    """float64 [n_users, n_items] click counts (repeat clicks on later days add up)."""
    clicked = log.click == 1
    return pair_matrix(log.user[clicked], log.item[clicked], n_users, n_items)


def shown_without_click(log: Interactions, n_users: int, n_items: int) -> sp.csr_matrix:
    """int8 [n_users, n_items]: 1 where an impression of ``log`` got no click (0/1, not counts)."""
    unclicked = log.click == 0
    matrix = pair_matrix(log.user[unclicked], log.item[unclicked], n_users, n_items, np.int8)
    matrix.data[:] = 1  # an item shown twice the same day is still "shown"
    return matrix


def recent_days(
    log: Interactions, days: Iterable[int], n_users: int, n_items: int
) -> tuple[DayImpressions, ...]:
    """One :class:`DayImpressions` per requested day (oldest first), from the rows of ``log``."""
    out = []
    for day in sorted(set(days)):
        rows = log.day == day
        day_log = Interactions(
            user=log.user[rows],
            item=log.item[rows],
            day=log.day[rows],
            position=log.position[rows],
            click=log.click[rows],
            watch_time=log.watch_time[rows],
        )
        out.append(DayImpressions(day=day, shown=shown_without_click(day_log, n_users, n_items)))
    return tuple(out)


_TABLE_CELLS = 1 << 26  # up to 64 MB of bool table per call; beyond that, binary search


def _rows_of(matrix: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stored entries of the given rows: (position in ``users``, column), row by row."""
    start = matrix.indptr[users]
    lengths = matrix.indptr[users + 1] - start
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    offsets = np.arange(total) - np.repeat(first, lengths)
    columns = matrix.indices[np.repeat(start, lengths) + offsets].astype(np.int64)
    return np.repeat(np.arange(users.shape[0], dtype=np.int64), lengths), columns


def pairs_in(matrix: sp.csr_matrix, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """bool [n, C]: is ``(users[r], candidates[r, c])`` a stored entry of ``matrix``?

    Padding (``candidates < 0``) is never a member. Vectorised over users: only the given
    users' rows are read. For a serving chunk the rows are scattered into a [n, n_items] bool
    table and the candidates gathered from it (a few ms per 4096 users); when that table would
    be large (huge catalogues) the sorted keys ``row * n_items + item`` are binary-searched
    instead, which needs sorted column indices (every matrix built here has them).
    """
    n = users.shape[0]
    out = np.zeros(candidates.shape, dtype=bool)
    if n == 0 or candidates.size == 0 or matrix.nnz == 0:
        return out
    rows, columns = _rows_of(matrix, users)
    if rows.size == 0:
        return out
    n_items = matrix.shape[1]
    keys = rows * n_items + columns
    query = np.arange(n, dtype=np.int64)[:, None] * n_items + np.maximum(candidates, 0)
    if n * n_items <= _TABLE_CELLS:
        table = np.zeros(n * n_items, dtype=bool)
        table[keys] = True
        found = table[query]
    else:
        at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        found = keys[at] == query
    return found & (candidates >= 0)
