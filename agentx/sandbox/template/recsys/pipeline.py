"""End-to-end: ``train()`` fits every stage from a data directory; ``Model.serve()`` builds slates.

Data flow (see docs/ARCHITECTURE.md):
train: load+validate log -> split off the last ranker.train_days days -> ALS factors and log
statistics (FeatureContext) of the days before -> features of the label days' impressions ->
sample weights -> ranker fit -> the label days folded in like update() does.
serve: retrieval channels -> union of candidates -> features -> ranker scores -> greedy
re-ranking rules (seen filter, category cap, ...) -> exploration slots.
update (one day of the model's own traffic): counts, history and log extended, ALS fold-in of
the users (and new items) with new clicks; see recsys/incremental.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .config import Config, ConfigError, load_config
from .context import FeatureContext, build_context
from .data import Dataset, Interactions, load_dataset
from .debias import WEIGHTING, sample_weights
from .features import check_feature_names, feature_matrix
from .incremental import OnlineState, apply_day, check_feedback
from .mf import click_counts, fit_als
from .ranker import LOSSES, LinearRanker, LossInput, fit_ranker
from .rerank import rerank
from .retrieval import retrieve
from .timing import Laps

SERVE_CHUNK = 4096  # users per internal batch: bounds memory of the [users x items] MF scores


@dataclass(frozen=True)
class ServeResult:
    """Slates for a batch of users."""

    items: np.ndarray  # int64 [n, k]: unique per row, released by the day, -1 = too few items
    candidates_scored: np.ndarray  # int64 [n]: candidates the ranker scored (drives latency)


@dataclass
class Model:
    """A trained recommender. Serving reads only this object and the serving ``day``.

    Daily loop of a deployment: ``serve(users, k, day)`` for the day's visitors, then
    ``update(feedback)`` with that day's impressions and clicks, then the next day.
    """

    ctx: FeatureContext
    ranker: LinearRanker
    seed: int
    train_seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time
    update_seconds: dict[str, float] = field(default_factory=dict)  # last update, per stage
    online: OnlineState | None = field(default=None, repr=False)  # update() state

    @property
    def config(self) -> Config:
        return self.ctx.config

    def score(self, users: np.ndarray, items: np.ndarray, day: np.ndarray | int) -> np.ndarray:
        """Ranker scores for aligned (user, item) pairs on ``day`` (for offline analysis)."""
        names = self.config.ranker.features
        return self.ranker.score(feature_matrix(self.ctx, names, users, items, day))

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

    def update(self, feedback: Interactions) -> None:
        """Fold one day of this model's own traffic into it, as a nightly retrain would.

        ``feedback`` holds every impression the model served on one day (one row per shown
        item; build it with ``recsys.data.interactions_from_arrays``), for a day later than
        any day already seen. Counts, the click history (seen filter), the recent-impression
        window and the log in ``ctx.dataset`` are extended; users with new clicks, and new
        items with their first clicks, get re-solved ALS factors. An empty day is a no-op.
        Raises :class:`~recsys.data.DataError` on malformed feedback, leaving the model as it
        was. Costs O(one day of traffic), not O(history).
        """
        start = time.perf_counter()
        day_log = check_feedback(feedback, self.ctx.dataset)
        if len(day_log) == 0:
            self.update_seconds = {}
            return
        if self.online is None:
            self.online = OnlineState.start(self.ctx)
        checked = time.perf_counter() - start
        self.update_seconds = {"check": checked, **apply_day(self.ctx, self.online, day_log)}

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


def slate_groups(log: Interactions) -> np.ndarray:
    """Dense id per logged (user, day): the slate a pairwise loss compares items within."""
    if len(log) == 0:
        return np.zeros(0, dtype=np.int64)
    first, last = int(log.day.min()), int(log.day.max())
    key = log.user * (last - first + 1) + (log.day - first)
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


def _rows(log: Interactions, mask: np.ndarray) -> Interactions:
    return Interactions(**{f.name: getattr(log, f.name)[mask] for f in fields(Interactions)})


def split_log(dataset: Dataset, config: Config) -> tuple[Dataset, Interactions] | None:
    """(the data before the ranker's label days, the rows of the label days), or None.

    Time split (``ranker.train_days = N > 0``): the ranker learns from the impressions of the
    last N logged days, with features from a model fitted on the days before them only,
    exactly as those impressions looked when they were served. Features from the whole log
    would include each row's own click (the ALS factors reconstruct it, the counts contain
    it); a ranker trained on them learns "items this user already clicked" and, once the seen
    filter removes those, ranks the remaining items no better than chance. None (train on
    the whole log, leaky features) when ``train_days`` is 0 or no logged day precedes the split.
    """
    meta, log = dataset.meta, dataset.log
    split = meta.last_day - config.ranker.train_days + 1
    if config.ranker.train_days == 0 or not np.any(log.day < split):
        return None
    earlier = Dataset(
        meta=replace(meta, last_day=split - 1), items=dataset.items, log=_rows(log, log.day < split)
    )
    return earlier, _rows(log, log.day >= split)


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
    """Fit the whole recommender on a data directory. Same data + config + seed -> same model.

    With the time split (``ranker.train_days``): ALS and counts on the days before the label
    days, ranker on the label days with those features, then the label days are folded in
    day by day exactly as ``Model.update`` folds in serving days, so the returned model knows
    the whole log and the full ALS fit runs once. Without it: everything on the whole log.
    """
    config = config if config is not None else load_config()
    check_registry_names(config)
    lap = Laps()

    dataset = load_dataset(data_dir)
    lap("load")
    split = split_log(dataset, config)
    earlier, rows = split if split is not None else (dataset, dataset.log)
    del dataset  # the split holds the rows; do not keep a third copy of the log alive
    rc = config.retrieval
    clicks = click_counts(earlier)
    factors = fit_als(clicks, rc.mf_dim, rc.mf_reg, rc.mf_alpha, rc.mf_iters, seed)
    ctx = build_context(earlier, config, factors, clicks)
    lap("mf")
    names = config.ranker.features
    features = feature_matrix(ctx, names, rows.user, rows.item, rows.day)
    lap("features")
    data = LossInput(
        labels=rows.click.astype(np.float64),
        weights=sample_weights(rows, config),
        groups=slate_groups(rows),
        seed=seed,
    )
    ranker = fit_ranker(features, data, config.ranker, names)
    lap("ranker")
    online = OnlineState.start(ctx)  # moves the log into a growable buffer for update()
    if split is not None:  # the label days enter the model like any later day: update()
        for day in np.unique(rows.day):
            apply_day(ctx, online, _rows(rows, rows.day == day))
    lap("replay")
    return Model(ctx=ctx, ranker=ranker, seed=seed, train_seconds=lap.seconds, online=online)
