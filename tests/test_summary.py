"""The run summary says where each vetoed experiment was stopped."""

from __future__ import annotations

from agentx.models import (
    ExperimentRecord,
    ExperimentStatus,
    Proposal,
    Rollout,
    RootCause,
    StageResult,
)
from agentx.summary import summarise_run


def _vetoed(name: str, stages: list[str], halted: bool, cause: RootCause) -> ExperimentRecord:
    results = [
        StageResult(stage=s, treatment_share=0.1, days=3, srm_p_value=0.5, srm_ok=True)
        for s in stages
    ]
    rollout = Rollout(
        experiment_id=name,
        stages=results,
        halted_at=stages[-1] if halted else None,
        halt_reason="guardrail breached" if halted else None,
    )
    proposal = Proposal(
        id=name, technique=name, lever="config", hypothesis="h", target_metric="watch_time"
    )
    return ExperimentRecord(
        id=name,
        iteration=1,
        proposal=proposal,
        rollout=rollout,
        status=ExperimentStatus.VETOED,
        root_cause=cause.value,
        cause=cause,
    )


def test_a_veto_is_placed_at_the_stage_or_check_that_made_it() -> None:
    """A rollout that ran to the end and was vetoed by its verdict's guardrails is not a
    cumulative breach (the summary used to say "cumulative" for every veto without a halt)."""
    records = [
        _vetoed("at_canary", ["canary"], halted=True, cause=RootCause.GUARDRAIL_HARM),
        _vetoed("at_verdict", ["canary", "ramp", "full"], False, RootCause.GUARDRAIL_HARM),
        _vetoed(
            "against_origin", ["canary", "ramp", "full"], False, RootCause.CUMULATIVE_GUARDRAIL_HARM
        ),
    ]
    summary = summarise_run({"experiments": records}, "tiny", 0, "watch_time")
    assert [(v["technique"], v["stage"]) for v in summary.vetoed] == [
        ("at_canary", "canary"),
        ("at_verdict", "full"),
        ("against_origin", "cumulative"),
    ]
