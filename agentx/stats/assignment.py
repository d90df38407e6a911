"""Deterministic hash-based assignment of users to experiment arms.

Why hashing instead of a random draw: the same user must land in the same arm on every request,
in every process, on every machine, and after a restart, without storing an assignment table.
``hashlib.blake2b`` is specified byte-for-byte (unlike Python's salted ``hash()``), so a bucket
computed today in one worker equals the bucket computed tomorrow in another.

Layering: every experiment in one *layer* uses the same ``salt`` and takes its own contiguous
range of buckets (``bucket_offset``), so concurrent experiments in the layer never share a user.
Experiments with *different* salts are split independently of each other (orthogonal layers).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from agentx.stats.errors import StatsError

CONTROL: int = 0
TREATMENT: int = 1
NOT_ENROLLED: int = -1


def _check_n_buckets(n_buckets: int) -> int:
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int | np.integer):
        raise StatsError(f"n_buckets must be an int, got {n_buckets!r}")
    if n_buckets < 1:
        raise StatsError(f"n_buckets must be >= 1, got {n_buckets}")
    return int(n_buckets)


def _as_ids(user_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(user_ids)
    if ids.ndim != 1:
        raise StatsError(f"user_ids must be a 1-D array, got shape {ids.shape}")
    if ids.dtype.kind == "f":
        # str(1.0) is "1.0" but str(1) is "1": a float copy of integer ids would silently get
        # different buckets than the original ids, so refuse it instead of guessing.
        raise StatsError("user_ids must be integers or strings, not floats")
    return ids


def bucket_of(user_ids: np.ndarray, salt: str, n_buckets: int = 1000) -> np.ndarray:
    """Return the bucket in ``[0, n_buckets)`` of each user id (int64 array, same length).

    The bucket is ``blake2b(f"{salt}:{uid}") mod n_buckets`` over the first 8 digest bytes, read
    big-endian. Ids are hashed through ``str()``, so the int 42, ``np.int64(42)`` and the
    string ``"42"`` share a bucket. The modulo bias of 2**64 mod 1000 is below 1e-16.
    An empty ``user_ids`` gives an empty result (assigning nobody is well defined).
    Raises StatsError for a non-string salt, float or multi-dimensional ids, or n_buckets < 1.
    """
    if not isinstance(salt, str):
        raise StatsError(f"salt must be a str, got {type(salt).__name__}")
    n_buckets = _check_n_buckets(n_buckets)
    ids = _as_ids(user_ids)
    out = np.empty(ids.size, dtype=np.int64)
    for i, uid in enumerate(ids.tolist()):
        digest = hashlib.blake2b(f"{salt}:{uid}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") % n_buckets
    return out


def _n_buckets_for(share: float, name: str, n_buckets: int) -> int:
    try:
        s = float(share)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name} must be a number, got {share!r}") from exc
    if not (math.isfinite(s) and 0.0 < s <= 1.0):
        raise StatsError(f"{name} must be in (0, 1], got {share!r}")
    k = round(s * n_buckets)
    if k < 1:
        raise StatsError(f"{name}={s} is less than one bucket out of {n_buckets}")
    return k


def assign_arms(
    user_ids: np.ndarray,
    salt: str,
    treatment_share: float,
    control_share: float | None = None,
    bucket_offset: int = 0,
    n_buckets: int = 1000,
) -> np.ndarray:
    """Assign each user to control (0), treatment (1) or not enrolled (-1); int8 array.

    Control takes buckets ``[offset, offset + nc)`` and treatment ``[offset + nc, offset + nc +
    nt)`` where ``nc = round(control_share * n_buckets)`` and likewise ``nt``; shares are thus
    rounded to whole buckets (use more buckets for finer shares). ``control_share`` defaults to
    ``treatment_share`` (a balanced test). Raises StatsError if a share is outside (0, 1] or
    rounds to zero buckets, if the offset is negative, or if the ranges run past ``n_buckets``.
    """
    n_buckets = _check_n_buckets(n_buckets)
    nt = _n_buckets_for(treatment_share, "treatment_share", n_buckets)
    nc = _n_buckets_for(
        treatment_share if control_share is None else control_share, "control_share", n_buckets
    )
    if isinstance(bucket_offset, bool) or not isinstance(bucket_offset, int | np.integer):
        raise StatsError(f"bucket_offset must be an int, got {bucket_offset!r}")
    offset = int(bucket_offset)
    if offset < 0:
        raise StatsError(f"bucket_offset must be >= 0, got {offset}")
    end = offset + nc + nt
    if end > n_buckets:
        raise StatsError(
            f"buckets [{offset}, {end}) (control {nc} + treatment {nt}) exceed n_buckets="
            f"{n_buckets}; lower the shares or the offset"
        )
    buckets = bucket_of(user_ids, salt, n_buckets)
    arms = np.full(buckets.size, NOT_ENROLLED, dtype=np.int8)
    arms[(buckets >= offset) & (buckets < offset + nc)] = CONTROL
    arms[(buckets >= offset + nc) & (buckets < end)] = TREATMENT
    return arms
