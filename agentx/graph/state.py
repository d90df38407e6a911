"""The loop's graph state. Lists that accumulate use reducers; the rest is replaced."""

from __future__ import annotations

import operator
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from agentx.evolution.models import EvolutionStep
from agentx.models import (
    CheckResult,
    ExperimentRecord,
    Goal,
    Patch,
    Proposal,
    Rollout,
    TraceEvent,
    Verdict,
    Verification,
)
from agentx.settings import RolloutStage
from agentx.target.models import ArmHandle

FUNNEL_KEYS = ("ideas", "admitted", "implemented", "launched", "kept")
# Counted beside the funnel: ideas admission turned down, EXTEND follow-ups run, and
# experiments deferred because the infrastructure failed (not counted in the budget).
SIDE_COUNTS = ("rejected", "follow_ups", "deferred")


class QueueReason(StrEnum):
    """Why an experiment waits in the queue instead of coming from the policy."""

    FOLLOW_UP = "follow_up"  # an EXTEND verdict: the same change with more traffic or time
    RETRY = "retry"  # the infrastructure failed: the same change, tried again later


class Queued(BaseModel):
    """An experiment the loop owes itself: run before asking the policy for a new idea."""

    proposal: Proposal
    reason: QueueReason
    parent: str = Field(description="Id of the experiment this one continues.")
    stages: list[RolloutStage] | None = Field(
        None, description="Rollout stages of the experiment; None = the run's stages."
    )


def merge_counts(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
    """Add counters key by key."""
    out = dict(left or {})
    for key, value in (right or {}).items():
        out[key] = out.get(key, 0) + value
    return out


def union(left: list[str] | None, right: list[str] | None) -> list[str]:
    """Ordered union of id lists."""
    return list(dict.fromkeys([*(left or []), *(right or [])]))


class LoopInput(TypedDict, total=False):
    """What a caller provides to start a run."""

    goal_text: str
    iterations: int


class LoopState(TypedDict, total=False):
    """Everything the loop carries between nodes (checkpointed after each node)."""

    goal_text: str
    iterations: int
    run_id: str
    goal: Goal
    iteration: int
    current: Proposal | None
    avoid: dict[str, str]
    patch: Patch | None
    apply_check: CheckResult | None
    verifications: list[Verification]
    attempts: int
    repairs: int
    abandoned_params: list[dict[str, Any]]
    control_arm: ArmHandle | None
    treatment_arm: ArmHandle | None
    rollout: Rollout | None
    stage_index: int
    verdict: Verdict | None
    exhausted: bool
    ideas: Annotated[list[str], union]
    experiments: Annotated[list[ExperimentRecord], operator.add]
    trace: Annotated[list[TraceEvent], operator.add]
    funnel: Annotated[dict[str, int], merge_counts]
    evolutions: Annotated[list[EvolutionStep], operator.add]
    harness_versions: dict[str, int]
    queue: list[Queued]
    plan: list[RolloutStage] | None
    follow_up_of: str | None
    queue_reason: QueueReason | None
    follow_ups: int
    infra_streak: int
    stopped: str | None
    origin: str


class LoopOutput(TypedDict, total=False):
    """What a finished run returns."""

    run_id: str
    goal: Goal
    experiments: list[ExperimentRecord]
    funnel: dict[str, int]
    trace: list[TraceEvent]
    evolutions: list[EvolutionStep]
    harness_versions: dict[str, int]
    stopped: str | None
