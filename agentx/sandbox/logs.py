"""The logging policy and the interaction logs the recommender trains on.

The logging policy is a non-personalised, popularity-leaning sampler with ε-uniform
exploration, like a legacy production system: it leaves position bias and popularity
skew in the logs, which is exactly what debiasing and personalisation levers can fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agentx.sandbox.population import Population
from agentx.sandbox.simulator import DayOutcome, DayTraffic, Simulator, UserState
from agentx.sandbox.world import WorldParams


@dataclass(frozen=True)
class InteractionLog:
    """Impressions of the logging policy (one row per shown item)."""

    user: np.ndarray
    item: np.ndarray
    day: np.ndarray
    position: np.ndarray
    click: np.ndarray
    watch_time: np.ndarray

    def select(self, mask: np.ndarray) -> InteractionLog:
        """The rows where ``mask`` is true."""
        return InteractionLog(*(getattr(self, name)[mask] for name in _LOG_FIELDS))


_LOG_FIELDS = ("user", "item", "day", "position", "click", "watch_time")


def logging_policy_slates(
    world: WorldParams,
    population: Population,
    users: np.ndarray,
    day: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Slates of the logging policy for ``users`` on ``day``.

    Each slate is k distinct released items drawn in order with probability proportional
    to ``exp(appeal / temperature)`` (uniformly for an exploring user): inverse-CDF draws
    with replacement, the first k distinct ones kept. Sampling costs users x k, never
    users x items.
    """
    n_u, k = users.size, world.slate_size
    ids = np.flatnonzero(population.item_release_day <= day)
    weight = np.exp(population.item_appeal[ids] / world.logging_temperature).astype(np.float64)
    popular_cdf = np.cumsum(weight) / weight.sum()
    explore = rng.random(n_u) < world.logging_epsilon
    width = 3 * k
    uniform = rng.random((n_u, width))
    drawn = np.where(
        explore[:, None],
        np.minimum((uniform * ids.size).astype(np.int64), ids.size - 1),
        np.minimum(np.searchsorted(popular_cdf, uniform), ids.size - 1),
    )
    return _first_distinct(ids[drawn], k)


def _first_distinct(draws: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` distinct values of each row, in draw order (-1 if too few)."""
    repeated = np.zeros(draws.shape, dtype=bool)
    for j in range(1, draws.shape[1]):
        repeated[:, j] = (draws[:, :j] == draws[:, j : j + 1]).any(axis=1)
    order = np.argsort(repeated, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(draws, order, axis=1)
    return np.where(np.take_along_axis(repeated, order, axis=1), -1, picked).astype(np.int64)


def outcome_rows(outcome: DayOutcome, day: int) -> dict[str, np.ndarray]:
    """The impression-log rows of one simulated day (one row per shown item)."""
    rows, positions = np.nonzero(outcome.shown)
    return {
        "user": outcome.users[rows].astype(np.int32),
        "item": outcome.slates[rows, positions].astype(np.int32),
        "day": np.full(rows.size, day, dtype=np.int32),
        "position": positions.astype(np.int16),
        "click": outcome.clicks[rows, positions].astype(np.int8),
        "watch_time": outcome.watch[rows, positions].astype(np.float32),
    }


def generate_logs(
    world: WorldParams, population: Population, simulator: Simulator
) -> tuple[InteractionLog, UserState]:
    """Run the logging policy for ``world.log_days`` days.

    Returns the impression log and the users' state at the end of logging, from which
    every online experiment starts.
    """
    state = UserState.initial(world, population)
    rng = np.random.default_rng([world.seed, 2])
    parts: list[dict[str, np.ndarray]] = []
    for day in range(world.log_days):
        draws = simulator.streams(world.seed, replicate=-1, day=day)
        users = simulator.visitors(state, day, draws)
        slates = logging_policy_slates(world, population, users, day, rng)
        traffic = DayTraffic(
            users=users,
            slates=slates,
            latency_ms=np.full(users.size, world.latency_base_ms, dtype=np.float32),
            errors=np.zeros(users.size, dtype=np.float32),
        )
        outcome = simulator.sessions(state, traffic, day, draws, None)
        parts.append(outcome_rows(outcome, day))
    log = InteractionLog(*(np.concatenate([p[name] for p in parts]) for name in _LOG_FIELDS))
    return log, state


def tail_items_from_log(log: InteractionLog, n_items: int, head_share: float = 0.2) -> np.ndarray:
    """Items outside the most-clicked ``head_share`` of the catalogue."""
    clicks = np.bincount(log.item[log.click > 0], minlength=n_items)
    order = np.argsort(-clicks, kind="stable")
    tail = np.ones(n_items, dtype=bool)
    tail[order[: int(round(head_share * n_items))]] = False
    return tail


def write_data_dir(
    path: Path, world: WorldParams, population: Population, log: InteractionLog
) -> Path:
    """Write the logged data in the schema the recommender repository reads."""
    path.mkdir(parents=True, exist_ok=True)
    np.savez(
        path / "items.npz",
        category=population.item_category,
        creator=population.item_creator,
        release_day=population.item_release_day,
    )
    np.savez(path / "interactions.npz", **{name: getattr(log, name) for name in _LOG_FIELDS})
    last_day = int(log.day.max()) if log.day.size else 0
    meta = {
        "n_users": population.n_users,
        "n_items": population.n_items,
        "n_categories": world.n_categories,
        "n_creators": world.n_creators,
        "first_day": int(log.day.min()) if log.day.size else 0,
        "last_day": last_day,
        "slate_size": world.slate_size,
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=2))
    return path
