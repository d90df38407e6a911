"""The ceiling: the best configuration found by searching directly on ground truth.

Greedy forward selection on the judge's true effects: from the original baseline, each
round applies every candidate option (technique at one parameter setting, one per
technique, its recipe applying to the current state) and keeps the one whose state has
the highest true north-star lift against the original baseline, provided that state is not
harmful against the original baseline (no guardrail truly harmed beyond its tolerance) and
the lift rises. It stops when no option raises the lift, or after ``max_rounds``.

To stay affordable, a round after the first only re-tries the options that raised the lift
in the round before (an option that does not help on one state is assumed not to help on
the next). Greedy selection with that pruning is a *lower bound* on the true optimum:
interactions (two changes that only pay together) and the pruned options are not searched.
The strategies' shipped states, judged on the same truth, are candidates too: the ceiling
is the best non-harmful state of the greedy path and of every strategy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from agentx.research.catalog import Technique
from efficacylib.judge import Judge
from efficacylib.space import Option, applicable, recipe
from efficacylib.states import StateError, StateStore


@dataclass
class Ceiling:
    """The greedy path on ground truth and its best state."""

    state: str
    lift: float
    path: list[str] = field(default_factory=list)  # option labels, in order
    lifts: list[float] = field(default_factory=list)  # lift after each step
    evaluations: int = 0  # candidate states judged
    seconds: float = 0.0
    source: str = "greedy"  # or the strategy whose shipped state beat the greedy path


def greedy_ceiling(
    judge: Judge,
    catalog: dict[str, Technique],
    options: list[Option],
    states: StateStore,
    max_rounds: int | None = None,
    jobs: int = 2,
) -> Ceiling:
    """Greedy forward selection of ``options`` on the judge's ground truth; each round's
    states are judged ``jobs`` at a time (the choice does not depend on it)."""
    started = time.perf_counter()
    original = states.adopt(judge.original)
    result = Ceiling(state=str(original), lift=0.0)
    current, pool, used = original, list(options), set()
    rounds = 0
    while pool and (max_rounds is None or rounds < max_rounds):
        rounds += 1
        candidates: list[tuple[Option, Path]] = []
        for option in pool:
            if option.technique in used or not applicable(catalog, option, current):
                continue
            try:
                candidates.append((option, states.with_edits(current, recipe(catalog, option))))
            except StateError:
                continue
        judge.prefetch([state for _, state in candidates], jobs)
        scored: list[tuple[float, Option, Path]] = []
        for option, state in candidates:
            result.evaluations += 1
            lift = judge.lift(state)
            if lift is None or lift <= result.lift:
                continue
            if judge.classify(state)[0] == "harmful":
                continue
            scored.append((lift, option, state))
        if not scored:
            break
        lift, option, state = max(scored, key=lambda item: (item[0], item[1].label))
        current = state
        used.add(option.technique)
        result.state, result.lift = str(state), lift
        result.path.append(option.label)
        result.lifts.append(lift)
        pool = [o for _, o, _ in scored if o.technique not in used]
    result.seconds = time.perf_counter() - started
    return result
