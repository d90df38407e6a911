"""End-to-end: ``train()`` fits every stage from a data directory; ``Model.serve()`` builds slates.

Data flow (see docs/ARCHITECTURE.md):
train: load+validate log -> ALS factors -> log statistics (FeatureContext) -> features of every
logged impression -> sample weights -> ranker fit.
serve: retrieval channels -> union of candidates -> features -> ranker scores -> greedy
re-ranking rules -> exploration slots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Config, ConfigError, load_config
from .context import FeatureContext, build_context
from .data import Dataset, load_dataset
from .debias import WEIGHTING, sample_weights
from .features import check_feature_names, feature_matrix
from .mf import click_counts, fit_als
from .ranker import LOSSES, LinearRanker, LossInput, fit_ranker
from .rerank import rerank
from .retrieval import retrieve

SERVE_CHUNK = 4096  # users per internal batch: bounds memory of the [users x items] MF scores


@dataclass(frozen=True)
class ServeResult:
    """Slates for a batch of users."""

    items: np.ndarray  # int64 [n, k]: unique per row, released by the day, -1 = too few items
    candidates_scored: np.ndarray  # int64 [n]: candidates the ranker scored (drives latency)


@dataclass
class Model:
    """A trained recommender. Serving reads only this object and the serving ``day``."""

    ctx: FeatureContext
    ranker: LinearRanker
    seed: int
    train_seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time

    @property
    def config(self) -> Config:
        return self.ctx.config

    def score(self, users: np.ndarray, items: np.ndarray, day: np.ndarray | int) -> np.ndarray:
        """Ranker scores for aligned (user, item) pairs on ``day`` (for offline analysis)."""
        names = self.config.ranker.features
        return self.ranker.score(feature_matrix(self.ctx, names, users, items, day))

    def update(self, feedback: object) -> None:
        """Learn from one day of this model's own traffic (the static baseline ignores it)."""

    def serve(self, user_ids: np.ndarray, k: int, day: int) -> ServeResult:
        """Top-``k`` slates for ``user_ids`` on ``day``; vectorised over users."""
        users = _check_users(user_ids, self.ctx.n_users)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(day, bool) or not isinstance(day, int | np.integer):
            raise ValueError(f"day must be an integer, got {day!r}")
        k, day = int(k), int(day)
        items = np.full((users.shape[0], k), -1, dtype=np.int64)
        scored = np.zeros(users.shape[0], dtype=np.int64)
        for start in range(0, users.shape[0], SERVE_CHUNK):
            chunk = slice(start, start + SERVE_CHUNK)
            items[chunk], scored[chunk] = self._serve_chunk(users[chunk], k, day)
        return ServeResult(items=items, candidates_scored=scored)

    def _serve_chunk(self, users: np.ndarray, k: int, day: int) -> tuple[np.ndarray, np.ndarray]:
        candidates = retrieve(self.ctx, users, day)
        n, width = candidates.shape
        scored = (candidates >= 0).sum(axis=1).astype(np.int64)
        scores = self.score(np.repeat(users, width), np.maximum(candidates, 0).ravel(), day)
        slates = rerank(self.ctx, users, day, candidates, scores.reshape(n, width), k, self.seed)
        return slates, scored


def _check_users(user_ids: np.ndarray, n_users: int) -> np.ndarray:
    users = np.asarray(user_ids)
    if users.ndim != 1 or not (np.issubdtype(users.dtype, np.integer) or users.size == 0):
        raise ValueError(f"user_ids must be a 1-D integer array, got {users.dtype} {users.shape}")
    users = users.astype(np.int64)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user_ids must lie in [0, {n_users})")
    return users


def slate_groups(dataset: Dataset) -> np.ndarray:
    """Dense id per logged (user, day): the slate a pairwise loss compares items within."""
    log, meta = dataset.log, dataset.meta
    key = log.user * (meta.last_day - meta.first_day + 1) + (log.day - meta.first_day)
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


def check_registry_names(config: Config) -> None:
    """Fail before any expensive work if the config names an unregistered component."""
    check_feature_names(config.ranker.features)
    if config.ranker.loss not in LOSSES:
        raise ConfigError(f"ranker.loss: unknown {config.ranker.loss!r}; have {sorted(LOSSES)}")
    if config.ranker.debias not in WEIGHTING:
        raise ConfigError(
            f"ranker.debias: unknown {config.ranker.debias!r}; have {sorted(WEIGHTING)}"
        )


def train(data_dir: str | Path, config: Config | None = None, seed: int = 0) -> Model:
    """Fit the whole recommender on a data directory. Same data + config + seed -> same model."""
    config = config if config is not None else load_config()
    check_registry_names(config)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    dataset = load_dataset(data_dir)
    lap("load")
    rc = config.retrieval
    factors = fit_als(click_counts(dataset), rc.mf_dim, rc.mf_reg, rc.mf_alpha, rc.mf_iters, seed)
    lap("mf")
    ctx = build_context(dataset, config, factors)
    log = dataset.log
    features = feature_matrix(ctx, config.ranker.features, log.user, log.item, log.day)
    lap("features")
    data = LossInput(
        labels=log.click.astype(np.float64),
        weights=sample_weights(log, config),
        groups=slate_groups(dataset),
        seed=seed,
    )
    ranker = fit_ranker(features, data, config.ranker, config.ranker.features)
    lap("ranker")
    return Model(ctx=ctx, ranker=ranker, seed=seed, train_seconds=seconds)
