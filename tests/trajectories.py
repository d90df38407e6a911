"""Hand-made experiment records and run trajectories for the harness-evolution tests."""

from __future__ import annotations

from agentx.evolution.store import RunTrajectory
from agentx.models import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    MetricEffect,
    Proposal,
    RootCause,
    Verdict,
)


def make_record(
    index: int,
    technique: str,
    status: ExperimentStatus,
    *,
    measured: float | None = None,
    true: float | None = None,
    expected: float = 0.02,
    cause: str | None = None,
    decision: Decision | None = None,
    true_guardrails: dict[str, float] | None = None,
) -> ExperimentRecord:
    proposal = Proposal(
        id=f"p{index}",
        technique=technique,
        lever="x",
        hypothesis="h",
        target_metric="watch_time",
        expected_size=expected,
    )
    verdict = None
    if status != ExperimentStatus.ABANDONED:
        north = None
        if measured is not None:
            north = MetricEffect(
                metric="watch_time",
                control_mean=1.0,
                treatment_mean=1.0 + measured,
                absolute=measured,
                relative=measured,
                ci_low=measured - 0.01,
                ci_high=measured + 0.01,
                p_value=0.01,
                method="welch",
                n_control=100,
                n_treatment=100,
            )
        truth = {} if true is None else {"watch_time": true, **(true_guardrails or {})}
        verdict = Verdict(
            experiment_id=f"e{index}",
            decision=decision
            or (Decision.KEEP if status == ExperimentStatus.KEPT else Decision.DISCARD),
            north_star=north,
            root_cause=RootCause(cause) if cause else None,
            true_effects=truth,
        )
    return ExperimentRecord(
        id=f"e{index}",
        iteration=index,
        proposal=proposal,
        verdict=verdict,
        status=status,
        root_cause=cause,
    )


def make_run(records: list[ExperimentRecord], run_id: str = "run-1") -> RunTrajectory:
    return RunTrajectory(
        run_id=run_id,
        world="tiny",
        objective="watch_time",
        north_star="watch_time",
        records=records,
    )


def vetoed(index: int, technique: str, true: float = 0.0, **extra) -> ExperimentRecord:
    """A pick halted for guardrail harm (measured +1 %)."""
    return make_record(
        index,
        technique,
        ExperimentStatus.VETOED,
        measured=0.01,
        true=true,
        cause="guardrail_harm",
        decision=Decision.DISCARD,
        **extra,
    )


def kept(index: int, technique: str, effect: float, **extra) -> ExperimentRecord:
    """A kept change whose measured and true effects are both ``effect``."""
    return make_record(
        index, technique, ExperimentStatus.KEPT, measured=effect, true=effect, **extra
    )
