"""Counter-based randomness keyed on (seed, day, user, stream).

Serving must be reproducible per user regardless of how users are batched, and vectorised
over users. A per-user ``numpy.random.Generator`` would cost a Python loop; hashing the key
with SplitMix64 gives each (seed, day, user, stream) its own uniform draw in pure numpy.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (wrap-around arithmetic is intended)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _as_u64(values: np.ndarray | int) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=np.int64)).view(np.uint64)


def keyed_uniform(seed: int, day: int, users: np.ndarray, stream: int) -> np.ndarray:
    """One float64 in [0, 1) per user, a pure function of (seed, day, user, stream)."""
    with np.errstate(over="ignore"):
        h = _splitmix64(_as_u64(seed))
        h = _splitmix64(h ^ _as_u64(day))
        h = _splitmix64(h ^ _as_u64(stream))
        h = _splitmix64(h ^ _as_u64(users))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
