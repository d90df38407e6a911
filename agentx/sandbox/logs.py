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
from agentx.sandbox.simulator import DayTraffic, Simulator, UserState
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
    world: WorldParams, population: Population, day: int, rng: np.random.Generator
) -> np.ndarray:
    """Slates of the logging policy for every user on ``day`` (Gumbel top-k sampling)."""
    n_u, k = population.n_users, world.slate_size
    released = population.item_release_day <= day
    # Weighted sampling without replacement (Efraimidis-Spirakis): the k largest keys
    # log(u) / w. Exploring users weigh every released item equally.
    weight = np.exp(population.item_appeal / world.logging_temperature).astype(np.float32)
    inv_weight = np.where(released, 1.0 / weight, np.inf).astype(np.float32)
    explore = rng.random(n_u) < world.logging_epsilon
    inv = np.where(explore[:, None], np.where(released, 1.0, np.inf).astype(np.float32), inv_weight)
    uniform = 1.0 - rng.random((n_u, population.n_items), dtype=np.float32)  # in (0, 1]
    with np.errstate(invalid="ignore"):
        noisy = np.where(np.isinf(inv), -np.inf, np.log(uniform) * inv)
    top = np.argpartition(-noisy, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(noisy, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


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
    latency = np.full(population.n_users, world.latency_base_ms, dtype=np.float32)
    errors = np.zeros(population.n_users, dtype=np.float32)
    for day in range(world.log_days):
        slates = logging_policy_slates(world, population, day, rng)
        draws = simulator.streams(world.seed, replicate=-1, day=day)
        outcome = simulator.step(state, DayTraffic(slates, latency, errors), day, draws, None)
        users, positions = np.nonzero(outcome["shown"])
        parts.append(
            {
                "user": users.astype(np.int32),
                "item": slates[users, positions].astype(np.int32),
                "day": np.full(users.size, day, dtype=np.int32),
                "position": positions.astype(np.int16),
                "click": outcome["clicks"][users, positions].astype(np.int8),
                "watch_time": outcome["watch"][users, positions].astype(np.float32),
            }
        )
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
