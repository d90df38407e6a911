"""The rubric evaluator: a natural-language loss and a semantic gradient from trajectories.

Each criterion of ``prompts/<agent>/rubric.yaml`` is measured here on the recorded
experiments; a criterion that flags tasks becomes a gradient item pointing at the harness
field it names. The model-backed evaluator (``agentx.evolution.llm``) returns the same
shape, so the refiner does not care which produced it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentx.agents.evaluation.exchange import was_traded
from agentx.evolution.models import GradientItem, SemanticGradient
from agentx.evolution.outcomes import (
    cause_of,
    effect_of,
    harmed_a_guardrail,
    pick_value,
    true_effect,
    true_harm,
)
from agentx.evolution.rubric import Criterion, Rubric
from agentx.evolution.store import RunTrajectory
from agentx.models import Decision, ExperimentRecord, ExperimentStatus, RootCause, StageResult
from agentx.settings import Settings

Flagged = tuple[list[str], int, dict[str, Any]]  # flagged ids, denominator, extra fields


def _ids(records: list[ExperimentRecord]) -> list[str]:
    return [r.id for r in records]


# ---------------------------------------------------------------- brainstorm criteria
def _guardrail_harm(runs: list[RunTrajectory]) -> Flagged:
    picks = [r for run in runs for r in run.records]
    flagged = [r for r in picks if harmed_a_guardrail(r)]
    return _ids(flagged), len(picks), {}


def _repeated_harm(runs: list[RunTrajectory]) -> Flagged:
    harmed: dict[tuple[str, str], int] = {}
    flagged, total = [], 0
    for run in runs:
        for record in sorted(run.records, key=lambda r: r.iteration):
            total += 1
            if (run.world, record.proposal.technique) in harmed:
                flagged.append(record)
            if harmed_a_guardrail(record):
                harmed[(run.world, record.proposal.technique)] = 1
    return _ids(flagged), total, {}


def _implementation_waste(runs: list[RunTrajectory]) -> Flagged:
    picks = [r for run in runs for r in run.records]
    flagged = [
        r
        for r in picks
        if r.status == ExperimentStatus.ABANDONED and cause_of(r) == RootCause.IMPLEMENTATION_DEFECT
    ]
    return _ids(flagged), len(picks), {}


def _optimism(runs: list[RunTrajectory], tolerance: float) -> Flagged:
    gaps: list[tuple[ExperimentRecord, float]] = []
    for run in runs:
        sign = 1.0 if run.direction == "increase" else -1.0
        for record in run.records:
            effect = effect_of(record, run.north_star, run.direction)
            if effect is not None:
                gaps.append((record, sign * record.proposal.expected_size - effect))
    if not gaps:
        return [], 0, {"gap": 0.0}
    mean_gap = sum(g for _, g in gaps) / len(gaps)
    flagged = [r for r, g in gaps if g > tolerance] if mean_gap > tolerance else []
    return _ids(flagged), len(gaps), {"gap": mean_gap}


def _regret(runs: list[RunTrajectory], rubric: Rubric, tolerance: float) -> Flagged:
    harm, abandon = rubric.replay.get("harm_cost", 0.02), rubric.replay.get("abandon_cost", 0.01)
    flagged, total, gaps = [], 0, []
    for run in runs:
        ordered = sorted(run.records, key=lambda r: r.iteration)
        values = [pick_value(r, run.north_star, run.direction, harm, abandon) for r in ordered]
        for index in range(len(ordered) - 1):
            total += 1
            gap = max(values[index:]) - values[index]
            if gap > tolerance:
                flagged.append(ordered[index])
                gaps.append(gap)
    return _ids(flagged), total, {"gap": sum(gaps) / len(gaps) if gaps else 0.0}


# ---------------------------------------------------------------- evaluation criteria
def _with_truth(runs: list[RunTrajectory]) -> list[tuple[RunTrajectory, ExperimentRecord]]:
    return [
        (run, r)
        for run in runs
        for r in run.records
        if r.verdict is not None and true_effect(r, run.north_star, run.direction) is not None
    ]


def _kept(runs: list[RunTrajectory]) -> list[tuple[RunTrajectory, ExperimentRecord]]:
    return [(run, r) for run, r in _with_truth(runs) if r.verdict.decision == Decision.KEEP]


def _vetoed(runs: list[RunTrajectory]) -> list[tuple[RunTrajectory, ExperimentRecord]]:
    return [(run, r) for run, r in _with_truth(runs) if harmed_a_guardrail(r)]


def _stages(record: ExperimentRecord) -> list[StageResult]:
    return record.rollout.stages if record.rollout else []


def _stopped_early(record: ExperimentRecord) -> bool:
    return any(s.decision == "stop_early" for s in _stages(record))


def _false_keep_early(runs: list[RunTrajectory], settings: Settings) -> Flagged:
    early = [(run, r) for run, r in _kept(runs) if _stopped_early(r)]
    flagged = [
        r
        for run, r in early
        if (true_effect(r, run.north_star, run.direction) or 0.0) <= 0.0
        or true_harm(r, settings.guardrails)
    ]
    return _ids(flagged), len(early), {}


def _kept_guardrail_harm(runs: list[RunTrajectory], settings: Settings) -> Flagged:
    kept = _kept(runs)
    flagged = [r for _, r in kept if true_harm(r, settings.guardrails)]
    return _ids(flagged), len(kept), {}


def _traded_harm(runs: list[RunTrajectory], settings: Settings) -> Flagged:
    kept = _kept(runs)
    flagged = []
    for _, record in kept:
        harm = true_harm(record, settings.guardrails)
        traded = {g.metric for s in _stages(record) for g in s.guardrails if was_traded(g)}
        if traded & set(harm):
            flagged.append(record)
    return _ids(flagged), len(kept), {}


def _false_veto(runs: list[RunTrajectory], settings: Settings) -> Flagged:
    vetoed = _vetoed(runs)
    flagged = [
        r
        for run, r in vetoed
        if not true_harm(r, settings.guardrails)
        and (true_effect(r, run.north_star, run.direction) or 0.0) > 0.0
    ]
    return _ids(flagged), len(vetoed), {}


def _missed_trade(runs: list[RunTrajectory], settings: Settings) -> Flagged:
    severe = {g.metric for g in settings.guardrails if g.tier == "severe"}
    flagged = []
    vetoed = _vetoed(runs)
    for run, record in vetoed:
        breached = {g.metric for s in _stages(record) for g in s.guardrails if g.breached}
        harm = true_harm(record, settings.guardrails)
        effect = true_effect(record, run.north_star, run.direction) or 0.0
        if breached and not breached & severe and not set(harm) & severe and effect > 0.0:
            flagged.append(record)
    return _ids(flagged), len(vetoed), {}


Measure = Callable[[list[RunTrajectory], Criterion, Rubric, Settings], Flagged]

# The rubric names criteria; these are their measurements, per agent.
MEASURES: dict[str, dict[str, Measure]] = {
    "brainstorm": {
        "guardrail_harm": lambda runs, c, rubric, s: _guardrail_harm(runs),
        "repeated_harm": lambda runs, c, rubric, s: _repeated_harm(runs),
        "implementation_waste": lambda runs, c, rubric, s: _implementation_waste(runs),
        "optimism": lambda runs, c, rubric, s: _optimism(runs, c.tolerance),
        "regret": lambda runs, c, rubric, s: _regret(runs, rubric, c.tolerance),
    },
    "evaluation": {
        "false_keep_early": lambda runs, c, rubric, s: _false_keep_early(runs, s),
        "kept_guardrail_harm": lambda runs, c, rubric, s: _kept_guardrail_harm(runs, s),
        "traded_harm": lambda runs, c, rubric, s: _traded_harm(runs, s),
        "false_veto": lambda runs, c, rubric, s: _false_veto(runs, s),
        "missed_trade": lambda runs, c, rubric, s: _missed_trade(runs, s),
    },
}


def _measure(
    agent: str,
    name: str,
    criterion: Criterion,
    runs: list[RunTrajectory],
    rubric: Rubric,
    settings: Settings,
) -> Flagged:
    measures = MEASURES.get(agent, {})
    if name not in measures:
        known = ", ".join(measures) or "none"
        raise ValueError(f"rubric of {agent} names unknown criterion {name!r} (known: {known})")
    return measures[name](runs, criterion, rubric, settings)


def diagnose(
    agent: str, runs: list[RunTrajectory], rubric: Rubric, settings: Settings
) -> SemanticGradient:
    """Measure every rubric criterion on ``runs``; the flagged ones become the gradient."""
    items: list[GradientItem] = []
    for name, criterion in rubric.criteria.items():
        flagged, total, extra = _measure(agent, name, criterion, runs, rubric, settings)
        if not flagged or total == 0:
            continue
        shown = ", ".join(flagged[:5]) + (" ..." if len(flagged) > 5 else "")
        finding = criterion.finding.format(n=len(flagged), total=total, ids=shown, **extra)
        items.append(
            GradientItem(
                criterion=name,
                category=criterion.category,
                finding=" ".join(finding.split()),
                field=criterion.field,
                direction=criterion.direction,
                magnitude=round(criterion.weight * len(flagged) / total, 6),
                evidence=flagged,
            )
        )
    items.sort(key=lambda item: (-item.magnitude, item.criterion))
    loss = round(sum(item.magnitude for item in items), 6)
    text = (
        " ".join(f"({i + 1}) {item.finding}" for i, item in enumerate(items))
        if items
        else "No rubric criterion flagged the recorded trajectories."
    )
    return SemanticGradient(agent=agent, loss=loss, loss_text=text, items=items)


def attribute_regret(
    gradient: SemanticGradient, advantage: dict[str, float], rubric: Rubric
) -> SemanticGradient:
    """Point the regret item at the score weights the evidence implicates.

    ``advantage`` is, per score part, how much it favoured the better option over the pick
    at the regretted decisions (see ``replay.regret_attribution``). The part that favoured
    the better options most is weighted up; the one that favoured the worse picks most gets
    a second, weaker item weighting it down. Parts whose weight is not evolvable are skipped.
    """
    items = []
    for item in gradient.items:
        if item.criterion != "regret" or not advantage:
            items.append(item)
            continue
        usable = {
            name: value
            for name, value in advantage.items()
            if f"score_weights.{name}" in rubric.evolvable
        }
        if not usable:
            items.append(item)
            continue
        up = max(usable, key=lambda name: (usable[name], name))
        down = min(usable, key=lambda name: (usable[name], name))
        shown = ", ".join(f"{name} {value:+.2f}" for name, value in sorted(usable.items()))
        if usable[up] > 0:
            items.append(
                item.model_copy(
                    update={
                        "field": f"score_weights.{up}",
                        "direction": "increase",
                        "finding": f"{item.finding} The better options led on {up} "
                        f"(mean part advantage: {shown}).",
                    }
                )
            )
        else:
            items.append(item)
        if usable[down] < 0 and down != up:
            items.append(
                item.model_copy(
                    update={
                        "field": f"score_weights.{down}",
                        "direction": "decrease",
                        "magnitude": round(item.magnitude / 2, 6),
                        "finding": f"The worse picks led on {down} ({usable[down]:+.2f}): "
                        "it is over-weighted.",
                    }
                )
            )
    items.sort(key=lambda i: (-i.magnitude, i.criterion))
    return gradient.model_copy(update={"items": items})
