"""The run summary: the stable JSON other tools read (``agentx run --json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agentx.evolution.models import EvolutionStep
from agentx.models import ExperimentRecord, ExperimentStatus, GuardrailResult, RootCause


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
    cause: str | None = Field(None, description="Typed root cause (RootCause value).")
    follow_up_of: str | None = Field(None, description="The EXTEND experiment it re-ran.")
    retest_of: str | None = Field(None, description="The stale KEEP it re-tested.")
    traffic_share: float = Field(
        1.0, description="Share of the users it ran on (below 1 when it ran beside others)."
    )


class EvolutionLine(BaseModel):
    """One harness evolution (SGPO) step of the run as summarised."""

    iteration: int
    agent: str
    outcome: str = Field(
        description="kept, rolled_back, unsafe, no_gradient, not_enough_tasks or failed."
    )
    base_version: int
    new_version: int | None = Field(None, description="Set only when the edit was kept.")
    edit: str | None = Field(None, description="The edit's key, e.g. score_weights.risk:+.")
    old_score: float | None = Field(None, description="Replay score of the base harness.")
    new_score: float | None = Field(None, description="Replay score of the edited harness.")
    gain: float | None = None
    tasks: int | None = Field(None, description="Recorded tasks the replays ran on.")
    reason: str = ""

    def text(self) -> str:
        """One plain-text line (no markup) for ``agentx run`` and logs."""
        version = f" v{self.base_version}->v{self.new_version}" if self.new_version else ""
        edit = f" {self.edit}" if self.edit else ""
        replay = ""
        if self.old_score is not None and self.new_score is not None:
            replay = f" | replay {self.old_score:+.4f} -> {self.new_score:+.4f}"
            if self.gain is not None:
                replay += f" (gain {self.gain:+.4f}"
                replay += f" on {self.tasks} tasks)" if self.tasks is not None else ")"
        return f"sgpo @{self.iteration} {self.agent}: {self.outcome}{version}{edit}{replay}" + (
            f" | {self.reason}" if self.reason else ""
        )


class CumulativeState(BaseModel):
    """Every guardrail of the shipped state against the origin, as last checked at a KEEP."""

    origin: str | None = Field(None, description="Commit of the origin baseline.")
    checked_at: str = Field(description="Experiment whose KEEP check this is.")
    guardrails: list[GuardrailResult] = Field(default_factory=list)
    breached: list[str] = Field(
        default_factory=list, description="Guardrails beyond tolerance against the origin."
    )
    blocked: list[str] = Field(
        default_factory=list, description="KEEPs not merged because of a cumulative breach."
    )


class RunSummary(BaseModel):
    """The result of a run (schema version 1; later fields are additions with defaults)."""

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
    evolutions: list[EvolutionLine] = Field(
        default_factory=list, description="Harness evolution (SGPO) steps, in order."
    )
    harness_versions: dict[str, int] = Field(
        default_factory=dict, description="The harness version each agent ran with at the end."
    )
    cumulative: CumulativeState | None = Field(
        None, description="The shipped state against the origin baseline, every guardrail."
    )
    stopped: str | None = Field(
        None, description="Why the run stopped before its budget (the circuit breaker)."
    )
    waiting_at: dict[str, Any] | None = Field(
        None, description="The human gate a paused run waits at (a PendingGate), else None."
    )


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
        cause=record.cause.value if record.cause else None,
        follow_up_of=record.follow_up_of,
        retest_of=record.retest_of,
        traffic_share=record.traffic.share if record.traffic else 1.0,
    )


def cumulative_state(records: list[ExperimentRecord]) -> CumulativeState | None:
    """The cumulative guardrails of the last merged KEEP, and the KEEPs they blocked."""
    blocked = [
        r.id for r in records if r.verdict and r.cause == RootCause.CUMULATIVE_GUARDRAIL_HARM
    ]
    kept = [r for r in records if r.status == ExperimentStatus.KEPT and r.verdict]
    if not kept and not blocked:
        return None
    last = kept[-1].verdict if kept else None
    guardrails = list(last.cumulative) if last else []
    return CumulativeState(
        origin=last.origin if last else None,
        checked_at=last.experiment_id if last else "",
        guardrails=guardrails,
        breached=[g.metric for g in guardrails if g.breached],
        blocked=blocked,
    )


def evolution_line(step: EvolutionStep | dict[str, Any]) -> EvolutionLine:
    """Summarise one SGPO step (a model, or its dump)."""
    if not isinstance(step, EvolutionStep):
        step = EvolutionStep.model_validate(step)
    old, new = step.old_score, step.new_score
    gain = step.gain
    return EvolutionLine(
        iteration=step.iteration,
        agent=step.agent,
        outcome=step.outcome,
        base_version=step.base_version,
        new_version=step.new_version,
        edit=step.edit.key() if step.edit else None,
        old_score=round(old.score, 6) if old else None,
        new_score=round(new.score, 6) if new else None,
        gain=round(gain, 6) if gain is not None else None,
        tasks=(new or old).tasks if (new or old) else None,
        reason=step.reason,
    )


def evolution_lines(summary: RunSummary) -> list[str]:
    """Plain-text lines (no markup) for the run's SGPO steps and the final harness versions.

    Print them with markup off (edit keys and reasons may hold square brackets).
    """
    lines = [line.text() for line in summary.evolutions]
    if summary.harness_versions:
        versions = ", ".join(f"{a} v{v}" for a, v in sorted(summary.harness_versions.items()))
        lines.append(f"harness versions at the end: {versions}")
    return lines


def vetoed_at(record: ExperimentRecord) -> str:
    """Where a vetoed experiment was stopped: the stage that halted it, the check against the
    origin before a merge, or the last stage, whose guardrails the verdict found broken (a
    rollout that ran to the end is not a cumulative breach unless its root cause says so)."""
    rollout = record.rollout
    if rollout is not None and rollout.halted_at:
        return rollout.halted_at
    if record.cause == RootCause.CUMULATIVE_GUARDRAIL_HARM:
        return "cumulative"
    return (rollout.last_stage if rollout is not None else None) or "verdict"


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
    # Vetoed means stopped for guardrail harm (the ledger status), not "the rollout halted":
    # an SRM failure, a crashed arm or a reviewer's refusal halt too, and a cumulative
    # guardrail breach vetoes a rollout that ran to the end.
    vetoed = [
        {
            "id": r.id,
            "technique": r.proposal.technique,
            "stage": vetoed_at(r),
            "reason": (r.rollout.halt_reason if r.rollout else None) or r.root_cause,
        }
        for r in records
        if r.status == ExperimentStatus.VETOED
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
        evolutions=[evolution_line(step) for step in state.get("evolutions") or []],
        harness_versions={k: int(v) for k, v in (state.get("harness_versions") or {}).items()},
        cumulative=cumulative_state(records),
        stopped=state.get("stopped"),
    )
