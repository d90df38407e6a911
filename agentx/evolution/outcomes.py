"""What a recorded experiment turned out to be worth, in the terms both the evaluator and
the replay use (one definition, so the loss and the replay score agree)."""

from __future__ import annotations

from agentx.models import Decision, ExperimentRecord, ExperimentStatus, RootCause
from agentx.settings import GuardrailSpec


def effect_of(record: ExperimentRecord, north_star: str, direction: str) -> float | None:
    """The north-star effect, signed so that good is positive: the ground truth when the
    target knows it, else the measurement; None when neither exists."""
    verdict = record.verdict
    if verdict is None:
        return None
    sign = 1.0 if direction == "increase" else -1.0
    if north_star in verdict.true_effects:
        return sign * verdict.true_effects[north_star]
    if verdict.north_star is not None:
        return sign * verdict.north_star.relative
    return None


def true_effect(record: ExperimentRecord, north_star: str, direction: str) -> float | None:
    """The ground-truth north-star effect (signed good-positive), None when unknown."""
    verdict = record.verdict
    if verdict is None or north_star not in verdict.true_effects:
        return None
    return (1.0 if direction == "increase" else -1.0) * verdict.true_effects[north_star]


def true_harm(record: ExperimentRecord, guardrails: list[GuardrailSpec]) -> dict[str, float]:
    """True guardrail harm beyond tolerance, per metric (only metrics that exceed it)."""
    truth = record.verdict.true_effects if record.verdict else {}
    excess: dict[str, float] = {}
    for spec in guardrails:
        if spec.tier == "observe" or spec.metric not in truth:
            continue
        change = truth[spec.metric]
        harm = -change if spec.direction == "higher_is_better" else change
        if harm - spec.max_relative_harm > 1e-9:
            excess[spec.metric] = harm - spec.max_relative_harm
    return excess


GUARDRAIL_CAUSES = (RootCause.GUARDRAIL_HARM, RootCause.CUMULATIVE_GUARDRAIL_HARM)


def cause_of(record: ExperimentRecord) -> RootCause | None:
    """The record's typed root cause; for records written before causes were typed, the
    cause named at the start of its ``root_cause`` text (``"implementation_defect: tests"``)."""
    if record.cause is not None:
        return record.cause
    named = (record.root_cause or "").split(":")[0]
    return RootCause(named) if named in {c.value for c in RootCause} else None


def harmed_a_guardrail(record: ExperimentRecord) -> bool:
    """Stopped for guardrail harm, against its own control or cumulatively.

    A change fine against its control but harmful on top of the earlier keeps is the same
    lesson for the policy (pick less risky changes), so both typed causes count.
    """
    return cause_of(record) in GUARDRAIL_CAUSES


def pick_value(
    record: ExperimentRecord,
    north_star: str,
    direction: str,
    harm_cost: float,
    abandon_cost: float,
) -> float:
    """What choosing this experiment was worth to the Brainstorm Agent.

    The (true, else measured) north-star effect of the change; a guardrail veto costs
    ``harm_cost`` and a change that never produced a measurement costs ``abandon_cost`` (a
    spent slot).
    """
    if record.status == ExperimentStatus.VETOED or harmed_a_guardrail(record):
        return -harm_cost
    effect = effect_of(record, north_star, direction)
    return -abandon_cost if effect is None else effect


def keep_utility(
    decision: Decision,
    record: ExperimentRecord,
    north_star: str,
    direction: str,
    guardrails: list[GuardrailSpec],
    harm_weight: float,
) -> float | None:
    """What a launch decision on this experiment was truly worth (None without truth).

    A KEEP ships the true effect minus ``harm_weight`` times the true guardrail harm beyond
    tolerance; any other decision ships nothing.
    """
    effect = true_effect(record, north_star, direction)
    if effect is None:
        return None
    if decision != Decision.KEEP:
        return 0.0
    return effect - harm_weight * sum(true_harm(record, guardrails).values())
