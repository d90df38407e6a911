"""From traces to the report: true lift, launches against the original baseline, false
keeps, missed wins, experiments to a share of the ceiling, time per experiment.

Definitions (all on the judge's ground truth, with the Evaluation Agent's own truth rule,
:func:`agentx.agents.evaluation.truth.classify_truth`, at the policy's least interesting
effect):

* **true lift**: the relative true north-star effect of the state a strategy ships at the
  end against the original baseline.
* **harmful launch**: a launch (a KEEP merged into the shipped state; for TPE its single
  final ship) after which the shipped state is truly *harmful against the original
  baseline*: the north star below it by more than the least interesting effect, or a
  severe or moderate guardrail harmed beyond its tolerance (and not traded by the exchange
  policy). Cumulative harm counts even when each step looked harmless against its own
  control.
* **false keep**: a launch whose change is not a true win against the state it was tested
  against (its control): truly neutral or harmful.
* **missed win**: a change that was A/B-tested, was truly a win against its control, and
  that the strategy's evaluation rejected (DISCARD or EXTEND for the loop and random
  search; for TPE a trial halted by a guardrail or measured at no gain).
* **experiments to X% of the ceiling**: the first experiment count after which the shipped
  state's true lift reaches X% of the ceiling's; per world the median over seeds (the lower
  median), null when fewer than half the seeds get there (or the ceiling is not positive).
* **seconds per experiment**: a run's wall time over its experiments, the median over seeds
  (for the loop everything it does: brainstorm, develop, verification, rollout, verdict with
  its ground truth, memory and SGPO steps; for random and TPE the staged A/Bs). Not the time
  between two records: experiments of a wave run side by side and finish together.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from efficacylib.ceiling import Ceiling
from efficacylib.judge import Judge
from efficacylib.trace import RunTrace


@dataclass
class RunScore:
    """One trace scored on ground truth."""

    lift: float
    harmful: int
    false_keeps: int
    missed_wins: int
    trajectory: list[float] = field(default_factory=list)  # lift after each experiment
    experiment_seconds: list[float] = field(default_factory=list)
    launches: int = 0


def judged_states(trace: RunTrace) -> list[Path]:
    """Every state :func:`score_run` asks the judge about (to compute their truths first,
    side by side)."""
    states = [trace.original, *trace.shipped, trace.final]
    for trial in trace.trials:
        if trial.evaluated:
            states += [trial.treatment, trial.control]
    return [Path(state) for state in dict.fromkeys(str(s) for s in states)]


def score_run(trace: RunTrace, judge: Judge) -> RunScore:
    """Judge every state of ``trace``."""
    original = Path(trace.original)
    trajectory = [judge.lift(Path(state)) or 0.0 for state in trace.shipped]
    harmful = false_keeps = missed = launches = 0
    for trial in trace.trials:
        if not trial.evaluated:
            continue
        truth, _ = judge.classify(Path(trial.treatment), Path(trial.control))
        if trial.launched:
            launches += 1
            harmful += judge.classify(Path(trial.treatment), original)[0] == "harmful"
            false_keeps += truth != "good"
        elif not trial.accepted and truth == "good":
            missed += 1
    return RunScore(
        lift=judge.lift(Path(trace.final)) or 0.0,
        harmful=harmful,
        false_keeps=false_keeps,
        missed_wins=missed,
        trajectory=trajectory,
        experiment_seconds=[trace.wall_s / len(trace.trials)] if trace.trials else [],
        launches=launches,
    )


def experiments_to(trajectories: list[list[float]], target: float) -> int | None:
    """Median over seeds (lower median) of the first experiment count reaching ``target``;
    None when fewer than half the seeds reach it."""
    if target <= 0 or not trajectories:
        return None
    firsts = [
        next((k for k, lift in enumerate(t, start=1) if lift >= target), math.inf)
        for t in trajectories
    ]
    value = statistics.median_low(firsts)
    return None if value == math.inf else int(value)


def row(scores: list[RunScore], ceiling: float) -> dict:
    """The JSON row of one world × strategy."""
    lifts = [s.lift for s in scores]
    mean = statistics.fmean(lifts)
    seconds = [x for s in scores for x in s.experiment_seconds]
    return {
        "lift_mean": mean,
        "lift_min": min(lifts),
        "lift_max": max(lifts),
        "pct_of_ceiling": mean / ceiling if ceiling > 0 else None,
        "harmful": sum(s.harmful for s in scores),
        "false_keeps": sum(s.false_keeps for s in scores),
        "missed_wins": sum(s.missed_wins for s in scores),
        "to_50pct": experiments_to([s.trajectory for s in scores], 0.5 * ceiling),
        "to_90pct": experiments_to([s.trajectory for s in scores], 0.9 * ceiling),
        "s_per_experiment": statistics.median(seconds) if seconds else None,
    }


def ceiling_row(ceiling: Ceiling) -> dict:
    """The ceiling's JSON row: its steps count as experiments (each one truth search)."""
    trajectory = [ceiling.lifts]
    return {
        "lift_mean": ceiling.lift,
        "lift_min": ceiling.lift,
        "lift_max": ceiling.lift,
        "pct_of_ceiling": 1.0 if ceiling.lift > 0 else None,
        "harmful": 0,
        "false_keeps": 0,
        "missed_wins": 0,
        "to_50pct": experiments_to(trajectory, 0.5 * ceiling.lift),
        "to_90pct": experiments_to(trajectory, 0.9 * ceiling.lift),
        "s_per_experiment": ceiling.seconds / ceiling.evaluations if ceiling.evaluations else None,
    }
