"""Online traffic in simulated time: arms serve day by day and learn from their own users.

An experiment is a timeline: a pre-period in which the control (today's production code)
serves everyone, then its stages one after another (canary, ramp, full) with each user
keeping their arm. Every day the simulator decides who visits, each visitor is served by
their arm's process, the sessions are played, and each arm receives the impressions of its
own users, as a production recommender retrains on its own logs. Ground truth is the same
timeline with one arm serving everyone for the whole horizon.

Users outside a stage's traffic are not simulated during that stage (they neither visit
nor change): only the enrolled users' days are played, which keeps a canary cheap. Their
state resumes when a later stage enrols them; the assignment is random, so both arms
see the same mix of such users and the comparison stays fair. Both arms then know all
that such a user did (the pre-period, which every arm learns from), as arms that read a
shared history store would. Letting a production model serve them instead (measured on
``default``, docs/sandbox.md) was worse: neither arm knew what production had shown them,
so the control, whose code is production's, re-served what they had just watched, and
every change that served something else read 2-4 points better than it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from agentx.sandbox.arms import ArmProcess
from agentx.sandbox.logs import InteractionLog, generate_logs, outcome_rows, tail_items_from_log
from agentx.sandbox.population import Population, draw_population
from agentx.sandbox.simulator import DayTraffic, Simulator, UserState, WindowTotals
from agentx.sandbox.world import WorldParams

#: Assignment value of users outside a stage's traffic.
NOT_ENROLLED = -1
#: The arm that serves the pre-period (today's production code).
CONTROL = 0

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
class Phase:
    """Consecutive days under one assignment: ``assignment[u]`` is -1 (not enrolled) or the
    key of the arm that serves user ``u``; ``seed`` keys the day draws."""

    assignment: np.ndarray
    days: int
    seed: int


@dataclass(frozen=True)
class PrePeriod:
    """What a pre-period leaves behind, so a rollout of the same control, world and draws can
    start where it ended instead of serving it again (:mod:`agentx.sandbox.pre_period`).

    The control's own model after the pre-period is not here: it lives in its arm process
    and is pickled by it. Read-only once recorded: every timeline that reuses it copies
    the state and only reads the totals.
    """

    state: UserState  # the users at the end of the pre-period
    totals: WindowTotals  # per-user totals of the pre-period (the readouts' covariates)
    days: tuple[dict[str, np.ndarray], ...]  # each day's impressions, for arms to learn


@dataclass
class TimelineResult:
    """Per-user totals of the pre-period (everyone) and of each phase (enrolled users)."""

    pre: WindowTotals
    phases: list[WindowTotals] = field(default_factory=list)
    arm_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    # Wall time of the parent waiting for the arms ("serve", "update", all arms at once; and
    # "ready": for their training, and for a treatment that trained through the pre-period
    # to learn the days it was held) and simulating ("simulate": visitors, sessions,
    # logging rows), summed over the days run.
    wall_seconds: dict[str, float] = field(
        default_factory=lambda: {"ready": 0.0, "serve": 0.0, "update": 0.0, "simulate": 0.0}
    )
    simulate_cpu_seconds: float = 0.0  # the parent's CPU time in "simulate"


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
        """First day after the logged period (the pre-period starts here)."""
        return self.params.log_days

    @cached_property
    def user_ids(self) -> np.ndarray:
        """All user ids."""
        return np.arange(self.population.n_users)

    def fresh_state(self) -> UserState:
        """A copy of the users' state at the end of logging."""
        return self.state_after_logs.copy()

    def released_items(self, day: int) -> int:
        """How many items are released by ``day``."""
        return int((self.population.item_release_day <= day).sum())

    def run_timeline(
        self,
        arms: dict[int, ArmProcess],
        phases: list[Phase],
        replicate: int = 0,
    ) -> TimelineResult:
        """Simulate the pre-period, then every phase in order; arms learn day by day.

        Raises:
            ArmFailure: an arm crashed, hung or answered with an invalid reply.
        """
        if not phases:
            raise ValueError("a timeline needs at least one phase")
        timeline = Timeline(self, arms, phases[0].seed, replicate)
        for phase in phases:
            timeline.run_phase(phase)
        return timeline.result


class Timeline:
    """A rollout in progress: the users' state and the arms, advanced one phase at a time.

    ``arms[CONTROL]`` serves everyone in the pre-period, which runs on construction (keyed
    by ``pre_seed``). Every arm learns from the whole pre-period (all models enter the
    experiment having seen the same logs), then only from its own users. Running the phases
    one call at a time gives exactly what one call with all of them gives, so a target can
    keep a timeline alive between the stages of a rollout instead of replaying the earlier
    ones.

    Given ``pre_period``, a pre-period recorded by an earlier timeline of the same control,
    world, ``pre_seed`` and ``replicate``, nobody serves it again: the users start from its
    end state and every arm not in ``learned`` (arms restored to their state after it) learns
    its days, in order, exactly as it would have while the control served them. With
    ``record_pre_period`` the timeline keeps what it ran as :attr:`pre_period`.
    """

    def __init__(
        self,
        world: SandboxWorld,
        arms: dict[int, ArmProcess],
        pre_seed: int,
        replicate: int = 0,
        *,
        pre_period: PrePeriod | None = None,
        learned: frozenset[int] = frozenset(),
        record_pre_period: bool = False,
    ) -> None:
        if CONTROL not in arms:
            raise ValueError("the control arm (key 0) serves the pre-period and must be given")
        self.world, self.arms, self.replicate = world, arms, replicate
        self.params, self.simulator, self.population = (
            world.params,
            world.simulator,
            world.population,
        )
        n_u, n_i = self.population.n_users, self.population.n_items
        self.day = world.online_start_day
        self.days_run = 0
        self.pre_period: PrePeriod | None = None
        if pre_period is not None:
            self._resume_pre_period(pre_period, learned)
        else:
            self.state = world.fresh_state()
            self.result = TimelineResult(pre=WindowTotals.zeros(n_u, n_i))
            everyone = np.full(n_u, CONTROL, dtype=np.int64)
            days: list[dict[str, np.ndarray]] | None = [] if record_pre_period else None
            for _ in range(self.params.pre_days):
                draws = self.simulator.streams(pre_seed, replicate, self.day)
                self._day(everyone, draws, self.result.pre, None, learn_all=True, keep=days)
                self.day += 1
            if days is not None:
                self.pre_period = PrePeriod(self.state.copy(), self.result.pre, tuple(days))
        self._record_seconds()

    def _resume_pre_period(self, pre_period: PrePeriod, learned: frozenset[int]) -> None:
        """Start after a recorded pre-period: its users' end state, its totals, and its days
        learned by every arm that is not already past it."""
        if len(pre_period.days) != self.params.pre_days:
            raise ValueError("a recorded pre-period of another length cannot be resumed")
        self.state = pre_period.state.copy()
        self.result = TimelineResult(pre=pre_period.totals)
        self.pre_period = pre_period
        learners = [arm for key, arm in self.arms.items() if key not in learned]
        tick = time.perf_counter()
        for rows in pre_period.days:
            for arm in learners:
                arm.begin_update(rows)
            for arm in learners:
                arm.finish_update()
            self.day += 1
        self.result.wall_seconds["update"] += time.perf_counter() - tick

    def run_phase(self, phase: Phase) -> WindowTotals:
        """Simulate one phase's days after everything run so far; its per-user totals."""
        params = self.params
        n_u, n_i = self.population.n_users, self.population.n_items
        if params.pre_days + self.days_run + phase.days > params.online_days:
            asked = self.days_run + phase.days
            raise ValueError(
                f"the world simulates {params.horizon_days} days after the "
                f"pre-period; {asked} requested"
            )
        assignment = np.asarray(phase.assignment, dtype=np.int64)
        if assignment.shape != (n_u,) or not np.isin(assignment, [NOT_ENROLLED, *self.arms]).all():
            raise ValueError("an assignment names a user count or an arm that does not exist")
        enrolled = assignment != NOT_ENROLLED
        tick = time.perf_counter()
        for arm in self.arms.values():  # an arm that trained through the pre-period
            arm.catch_up()
        self.result.wall_seconds["ready"] += time.perf_counter() - tick
        totals = WindowTotals.zeros(n_u, n_i)
        for _ in range(phase.days):
            draws = self.simulator.streams(phase.seed, self.replicate, self.day)
            self._day(assignment, draws, totals, enrolled, learn_all=False)
            self.day += 1
        self.days_run += phase.days
        self.result.phases.append(totals)
        self._record_seconds()
        return totals

    def _record_seconds(self) -> None:
        self.result.arm_seconds = {
            arm.name: {
                "train": arm.train_seconds,
                "serve": arm.serve_seconds,
                "update": arm.update_seconds,
                "train_cpu": arm.train_cpu_seconds,
                "serve_cpu": arm.serve_cpu_seconds,
                "update_cpu": arm.update_cpu_seconds,
            }
            for arm in self.arms.values()
        }

    def _day(
        self,
        assignment: np.ndarray,
        draws: dict[str, np.ndarray],
        totals: WindowTotals,
        counted: np.ndarray | None,
        learn_all: bool,
        keep: list[dict[str, np.ndarray]] | None = None,
    ) -> None:
        params, sim, state, arms, day = (
            self.params,
            self.simulator,
            self.state,
            self.arms,
            self.day,
        )
        wall = self.result.wall_seconds
        tick, cpu_tick = time.perf_counter(), time.process_time()
        users = sim.visitors(state, day, draws)
        users = users[assignment[users] != NOT_ENROLLED]
        served_by = assignment[users]
        k = params.slate_size
        slates = np.full((users.size, k), -1, dtype=np.int64)
        candidates = np.zeros(users.size, dtype=np.int64)
        asked = {key: np.flatnonzero(served_by == key) for key in arms}
        asked = {key: rows for key, rows in asked.items() if rows.size}
        tock = time.perf_counter()
        wall["simulate"] += tock - tick
        self.result.simulate_cpu_seconds += time.process_time() - cpu_tick
        for key, rows in asked.items():  # every arm works at once, one process per core
            arms[key].begin_serve(day, users[rows])
        for key, rows in asked.items():
            slates[rows], candidates[rows] = arms[key].finish_serve()
        tick, cpu_tick = time.perf_counter(), time.process_time()
        wall["serve"] += tick - tock
        clean, errors = clean_slates(slates, day, self.population)
        latency = params.latency_base_ms + params.latency_per_candidate_ms * candidates
        traffic = DayTraffic(users, clean, latency.astype(np.float32), errors)
        outcome = sim.sessions(state, traffic, day, draws, totals, counted)
        rows_of_day = outcome_rows(outcome, day)
        if keep is not None:
            keep.append(rows_of_day)
        owner = served_by[np.searchsorted(users, rows_of_day["user"])]
        for key, arm in arms.items():
            mine = (
                rows_of_day
                if learn_all
                else {name: values[owner == key] for name, values in rows_of_day.items()}
            )
            arm.begin_update(mine)
        tock = time.perf_counter()
        wall["simulate"] += tock - tick
        self.result.simulate_cpu_seconds += time.process_time() - cpu_tick
        for arm in arms.values():
            arm.finish_update()
        wall["update"] += time.perf_counter() - tock


def clean_slates(
    slates: np.ndarray, day: int, population: Population
) -> tuple[np.ndarray, np.ndarray]:
    """Blank out invalid slots (out of range, unreleased, repeated); count them as errors."""
    slates = slates.astype(np.int64)
    in_range = (slates >= 0) & (slates < population.n_items)
    safe = np.where(in_range, slates, 0)
    valid = in_range & (population.item_release_day[safe] <= day)
    clean = np.where(valid, slates, -1)
    k = clean.shape[1]
    for j in range(1, k):
        repeated = (clean[:, j : j + 1] == clean[:, :j]).any(axis=1) & (clean[:, j] >= 0)
        clean[:, j] = np.where(repeated, -1, clean[:, j])
    errors = (slates >= 0).sum(axis=1) - (clean >= 0).sum(axis=1)
    return clean, errors.astype(np.float32)


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


def population_metrics(totals: WindowTotals, released: int) -> dict[str, float]:
    """Population-level metric values (means per user; ratios of sums)."""
    source = totals.sums
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
    "CONTROL",
    "NOT_ENROLLED",
    "InteractionLog",
    "METRIC_DEFINITIONS",
    "Phase",
    "PrePeriod",
    "SandboxWorld",
    "Timeline",
    "TimelineResult",
    "clean_slates",
    "load_world_bundle",
    "per_user_metrics",
    "population_metrics",
]
