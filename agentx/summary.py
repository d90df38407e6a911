"""The run summary: the stable JSON other tools read (``agentx run --json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agentx.models import ExperimentRecord, ExperimentStatus


class ExperimentLine(BaseModel):
    """One experiment as summarised."""

    id: str
    iteration: int
    technique: str
    params: dict[str, Any]
    status: str
    q_code: float | None = None
    verification: str
    stage_reached: str | None = None
    decision: str | None = None
    measured_effect: float | None = None
    p_value: float | None = None
    true_effect: float | None = None
    root_cause: str | None = None


class RunSummary(BaseModel):
    """The result of a run (schema version 1)."""

    schema_version: int = 1
    run_id: str
    world: str
    seed: int
    objective: str
    experiments: list[ExperimentLine] = Field(default_factory=list)
    funnel: dict[str, int] = Field(default_factory=dict)
    kept: list[dict[str, Any]] = Field(default_factory=list)
    vetoed: list[dict[str, Any]] = Field(default_factory=list)
    total_true_effect: float = 0.0


def experiment_line(record: ExperimentRecord, north_star: str) -> ExperimentLine:
    """Summarise one ledger entry."""
    last = record.verifications[-1] if record.verifications else None
    verdict = record.verdict
    north = verdict.north_star if verdict else None
    return ExperimentLine(
        id=record.id,
        iteration=record.iteration,
        technique=record.proposal.technique,
        params=record.proposal.params,
        status=record.status.value,
        q_code=last.q_code if last else None,
        verification="passed" if last and last.passed else (last.root_cause if last else "none"),
        stage_reached=record.rollout.last_stage if record.rollout else None,
        decision=verdict.decision.value if verdict else None,
        measured_effect=round(north.relative, 6) if north else None,
        p_value=round(north.p_value, 6) if north else None,
        true_effect=verdict.true_effects.get(north_star) if verdict else None,
        root_cause=record.root_cause,
    )


def summarise_run(state: dict[str, Any], world: str, seed: int, north_star: str) -> RunSummary:
    """Build the summary from a finished (or interrupted) run's state."""
    records: list[ExperimentRecord] = state.get("experiments", [])
    lines = [experiment_line(r, north_star) for r in records]
    kept = [
        {
            "id": line.id,
            "technique": line.technique,
            "params": line.params,
            "measured_effect": line.measured_effect,
            "true_effect": line.true_effect,
        }
        for line in lines
        if line.status == ExperimentStatus.KEPT.value
    ]
    vetoed = [
        {
            "id": r.id,
            "technique": r.proposal.technique,
            "stage": r.rollout.halted_at,
            "reason": r.rollout.halt_reason,
        }
        for r in records
        if r.rollout is not None and r.rollout.halted_at
    ]
    total = 1.0
    for item in kept:
        total *= 1.0 + (item["true_effect"] or 0.0)
    goal = state.get("goal")
    return RunSummary(
        run_id=str(state.get("run_id", "")),
        world=world,
        seed=seed,
        objective=goal.objective if goal else north_star,
        experiments=lines,
        funnel=dict(state.get("funnel", {})),
        kept=kept,
        vetoed=vetoed,
        total_true_effect=round(total - 1.0, 6),
    )
