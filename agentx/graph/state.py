"""The loop's graph state. Lists that accumulate use reducers; the rest is replaced."""

from __future__ import annotations

import operator
from typing import Annotated, Any

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
from agentx.target.models import ArmHandle

FUNNEL_KEYS = ("ideas", "admitted", "implemented", "launched", "kept")


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


class LoopOutput(TypedDict, total=False):
    """What a finished run returns."""

    run_id: str
    goal: Goal
    experiments: list[ExperimentRecord]
    funnel: dict[str, int]
    trace: list[TraceEvent]
    evolutions: list[EvolutionStep]
    harness_versions: dict[str, int]
