"""Training-sample weights, the place to correct the biases of the logging policy.

The log is position-biased (lower slots are examined less, so their non-clicks say little)
and exposure-biased (the logging policy chose what was shown). A weighting function returns
one positive weight per logged impression; the pipeline rescales weights to mean 1 before the
loss sees them, so a weighting only has to get the *relative* weights right.

Signature: ``fn(log, config) -> float64 [len(log)]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .config import Config, ConfigError
from .data import Interactions

WeightFn = Callable[[Interactions, Config], np.ndarray]


def no_weighting(log: Interactions, config: Config) -> np.ndarray:
    """Every impression counts the same: the baseline ignores position bias."""
    return np.ones(len(log), dtype=np.float64)


# <extension:weighting>  (recipes insert new weighting functions above this line)


WEIGHTING: dict[str, WeightFn] = {
    "none": no_weighting,
    # <registry:weighting>  (recipes insert new entries above this line)
}


def sample_weights(log: Interactions, config: Config) -> np.ndarray:
    """Weights from ``ranker.debias``, validated and normalised to mean 1."""
    name = config.ranker.debias
    if name not in WEIGHTING:
        raise ConfigError(
            f"ranker.debias: unknown weighting {name!r}; registered: {sorted(WEIGHTING)}"
        )
    weights = np.asarray(WEIGHTING[name](log, config), dtype=np.float64)
    if weights.shape != (len(log),):
        raise ValueError(f"weighting {name!r} returned shape {weights.shape}, want ({len(log)},)")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weighting {name!r} must return finite, non-negative, non-zero weights")
    return weights / weights.mean()
