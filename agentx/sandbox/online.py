"""Online traffic over serving arms, per-user metrics, and noise-free ground truth."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from agentx.sandbox.logs import InteractionLog, generate_logs, tail_items_from_log
from agentx.sandbox.population import Population, draw_population
from agentx.sandbox.simulator import DayTraffic, Simulator, UserState, WindowTotals
from agentx.sandbox.world import WorldParams

# name -> (numerator, denominator); per-user metrics have denominator None.
METRIC_DEFINITIONS: dict[str, tuple[str, str | None]] = {
    "watch_time": ("watch_time", None),
    "clicks": ("clicks", None),
    "active_days": ("active_days", None),
    "errors": ("errors", None),
    "ctr": ("clicks", "impressions"),
    "diversity": ("distinct_categories", "active_days"),
    "latency_ms": ("latency_ms", "active_days"),
    "tail_share": ("tail_impressions", "impressions"),
}


@dataclass(frozen=True)
class ArmServing:
    """What an arm serves each day of the online period, for every user."""

    slates: np.ndarray  # [H, U, k] int, -1 for empty
    latency_ms: np.ndarray  # [H, U]
    errors: np.ndarray  # [H, U]

    @property
    def horizon(self) -> int:
        """Number of online days this arm can serve."""
        return int(self.slates.shape[0])


@dataclass
class WindowResult:
    """Totals of the pre-period and of the experiment window."""

    pre: WindowTotals
    window: WindowTotals


class SandboxWorld:
    """A world with its population, logs and the users' state after logging.

    Built deterministically from the world parameters, so every process that needs
    the world rebuilds the same one.
    """

    def __init__(self, params: WorldParams):
        self.params = params
        self.population: Population = draw_population(params)
        zero_tail = np.zeros(self.population.n_items, dtype=bool)
        logging_sim = Simulator(params, self.population, zero_tail)
        self.log, self.state_after_logs = generate_logs(params, self.population, logging_sim)
        self.tail_items = tail_items_from_log(self.log, self.population.n_items)
        self.simulator = Simulator(params, self.population, self.tail_items)

    @property
    def online_start_day(self) -> int:
        """First day after the logged period."""
        return self.params.log_days

    @cached_property
    def user_ids(self) -> np.ndarray:
        """All user ids."""
        return np.arange(self.population.n_users)

    def fresh_state(self) -> UserState:
        """A copy of the users' state at the end of logging."""
        return copy.deepcopy(self.state_after_logs)

    def run_window(
        self,
        arms: list[ArmServing],
        assignment: np.ndarray,
        days: int,
        seed: int,
        replicate: int = 0,
    ) -> WindowResult:
        """Simulate a pre-period on arm 0 for everyone, then ``days`` under ``assignment``.

        ``assignment[u]`` indexes ``arms``; -1 means not enrolled (served by arm 0, not
        counted). Draws depend only on (seed, replicate, day), so runs with the same seed
        share random numbers across arms and assignments.
        """
        params = self.params
        pre_days = params.pre_days
        if days + pre_days > min(arm.horizon for arm in arms):
            raise ValueError(f"arms serve {arms[0].horizon} days; {pre_days}+{days} requested")
        state = self.fresh_state()
        n_u, n_i = self.population.n_users, self.population.n_items
        enrolled = assignment >= 0
        served_by = np.where(enrolled, assignment, 0)
        pre = WindowTotals.zeros(n_u, n_i)
        window = WindowTotals.zeros(n_u, n_i)
        all_rows = np.arange(n_u)
        for t in range(pre_days + days):
            day = self.online_start_day + t
            if t < pre_days:
                arm = arms[0]
                traffic = DayTraffic(arm.slates[t], arm.latency_ms[t], arm.errors[t])
                totals, counted = pre, None
            else:
                traffic = _mix(arms, served_by, t, all_rows)
                totals, counted = window, enrolled
            draws = self.simulator.streams(seed, replicate, day)
            self.simulator.step(state, traffic, day, draws, totals, counted)
        return WindowResult(pre=pre, window=window)

    def released_items(self, day: int) -> int:
        """How many items are released by ``day``."""
        return int((self.population.item_release_day <= day).sum())


def _mix(arms: list[ArmServing], served_by: np.ndarray, t: int, rows: np.ndarray) -> DayTraffic:
    if len(arms) == 1:
        arm = arms[0]
        return DayTraffic(arm.slates[t], arm.latency_ms[t], arm.errors[t])
    slates = np.stack([arm.slates[t] for arm in arms])[served_by, rows]
    latency = np.stack([arm.latency_ms[t] for arm in arms])[served_by, rows]
    errors = np.stack([arm.errors[t] for arm in arms])[served_by, rows]
    return DayTraffic(slates, latency, errors)


def per_user_metrics(totals: dict[str, np.ndarray], users: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user metric arrays (and ratio numerators/denominators) for ``users``."""
    out: dict[str, np.ndarray] = {}
    for name, (numerator, denominator) in METRIC_DEFINITIONS.items():
        if denominator is None:
            out[name] = totals[numerator][users].astype(np.float64)
        else:
            out[f"{name}.num"] = totals[numerator][users].astype(np.float64)
            out[f"{name}.den"] = totals[denominator][users].astype(np.float64)
    return out


def population_metrics(totals: WindowTotals, released: int, expected: bool) -> dict[str, float]:
    """Population-level metric values (means per user; ratios of sums)."""
    source = totals.expected if expected else totals.sampled
    values: dict[str, float] = {}
    for name, (numerator, denominator) in METRIC_DEFINITIONS.items():
        num = float(source[numerator].sum())
        if denominator is None:
            values[name] = num / source[numerator].size
        else:
            den = float(source[denominator].sum())
            values[name] = num / den if den > 0 else 0.0
    shown = totals.items_shown if totals.items_shown is not None else np.zeros(1)
    values["coverage"] = float((shown > 0).sum()) / max(released, 1)
    return values


def load_world_bundle(params: WorldParams) -> SandboxWorld:
    """Build (or reuse, within this process) the world for ``params``."""
    key = params.model_dump_json()
    bundle = _WORLD_CACHE.get(key)
    if bundle is None:
        bundle = SandboxWorld(params)
        _WORLD_CACHE.clear()  # worlds are large; keep one per process
        _WORLD_CACHE[key] = bundle
    return bundle


_WORLD_CACHE: dict[str, SandboxWorld] = {}


__all__ = [
    "ArmServing",
    "InteractionLog",
    "METRIC_DEFINITIONS",
    "SandboxWorld",
    "load_world_bundle",
    "per_user_metrics",
    "population_metrics",
]
