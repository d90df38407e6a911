"""The graphs' state, split by lifetime.

- **Run** (:class:`LoopState`): the goal, the budget, the funnel, the queue, the avoid set,
  the experiments recorded, the harness versions. Lives as long as the run.
- **Next experiment** (:class:`NextExperiment`): the proposal brainstorm picked, until the
  scheduler puts it into the wave. Brainstorm resets every key of it with
  :func:`fresh_experiment`, built from the schema so no key is forgotten.
- **Wave** (:class:`Scheduled`, :class:`Finished`): the experiments in flight together, each
  with its iteration and traffic slot, and what each handed back; from the scheduler to learn,
  which records them in the order they were scheduled and empties both.
- **Experiment** (:class:`ExperimentState`, :class:`DevelopState`, :class:`EvaluateState`):
  the worktree's patch, the verifications, the repairs, the arms, the rollout, the verdict.
  They live in the experiment subgraph's own checkpoint namespace: a new experiment starts
  with none of them, by construction.
- **Log**: trace events go to the run's trace log (:mod:`agentx.graph.tracelog`), not to
  checkpointed state.

Counters that can be derived are not stored: attempts are ``len(verifications)``, repairs
``len(repairs)``, the rollout's stage index ``len(rollout.stages)``.

Channels that a subgraph writes back have no reducer (a subgraph returns whole values, which
a reducer would add a second time): nodes write the new value, e.g. ``add_counts(funnel, ...)``.
"""

from __future__ import annotations

import operator
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from agentx.evolution.models import EvolutionStep
from agentx.graph.context import RunContext
from agentx.models import (
    CheckResult,
    ExperimentRecord,
    Goal,
    Patch,
    Proposal,
    Rollout,
    TrafficSlot,
    Verdict,
    Verification,
)
from agentx.settings import RolloutStage
from agentx.target.models import ArmHandle

FUNNEL_KEYS = ("ideas", "admitted", "implemented", "launched", "kept")
# Counted beside the funnel: ideas admission turned down, EXTEND follow-ups run, experiments
# deferred because the infrastructure failed (not counted in the budget), and KEEPs re-tested
# because another KEEP of their wave shipped first.
SIDE_COUNTS = ("rejected", "follow_ups", "deferred", "retests")


class QueueReason(StrEnum):
    """Why an experiment waits in the queue instead of coming from the policy."""

    FOLLOW_UP = "follow_up"  # an EXTEND verdict: the same change with more traffic or time
    RETRY = "retry"  # the infrastructure failed: the same change, tried again later
    RETEST = "retest"  # a KEEP whose baseline another KEEP changed before it could ship


class Queued(BaseModel):
    """An experiment the loop owes itself: run before asking the policy for a new idea."""

    proposal: Proposal
    reason: QueueReason
    parent: str = Field(description="Id of the experiment this one continues.")
    stages: list[RolloutStage] | None = Field(
        None, description="Rollout stages of the experiment; None = the run's stages."
    )
    retests: int = Field(0, ge=0, description="Re-tests of this change so far (stale KEEPs).")


class RepairStep(BaseModel):
    """One repair after a failed verification: what failed and what was tried next."""

    params: dict[str, Any] = Field(description="Parameters of the change that failed.")
    root_cause: str = Field(description="The failed verification's root cause line.")
    cause: str = Field(description="Its typed cause (RootCause value).")
    new_params: dict[str, Any] | None = Field(
        None, description="Parameters tried next offline; None: feedback to the model."
    )


class ExperimentOutcome(BaseModel):
    """What an experiment subgraph hands back to the loop (learn records and ships it)."""

    patch: Patch | None = None
    verifications: list[Verification] = Field(default_factory=list)
    repairs: list[RepairStep] = Field(default_factory=list)
    control_arm: ArmHandle | None = None
    treatment_arm: ArmHandle | None = None
    rollout: Rollout | None = None
    verdict: Verdict | None = None

    @property
    def implemented(self) -> bool:
        """A verification passed (the change was launched or could have been)."""
        return any(v.passed for v in self.verifications)

    @property
    def abandoned_params(self) -> list[RepairStep]:
        """Parameter sets a repair stepped away from (each gets a knowledge card)."""
        return [step for step in self.repairs if step.new_params is not None]


class Scheduled(BaseModel):
    """An experiment put into the current wave: which iteration it is, what it tests, the
    queue entry it was owed as (if it was) and the slice of traffic it runs on. Its stages
    and what it follows up or re-tests all derive from ``owed``."""

    iteration: int = Field(ge=0, description="Its index in the run (its id derives from it).")
    proposal: Proposal
    owed: Queued | None = Field(None, description="The queue entry it came from (None: new).")
    slot: TrafficSlot | None = Field(None, description="Its traffic range; None: all traffic.")

    @property
    def plan(self) -> list[RolloutStage] | None:
        """Its own stages (a follow-up's), None for the run's."""
        return self.owed.stages if self.owed is not None else None

    @property
    def needs_all_traffic(self) -> bool:
        """A follow-up was sized by power for the whole traffic: it runs alone."""
        return parent_if(self.owed, QueueReason.FOLLOW_UP) is not None


def parent_if(owed: Queued | None, reason: QueueReason) -> str | None:
    """The experiment an owed one continues, when it was owed for ``reason``."""
    return owed.parent if owed is not None and owed.reason == reason else None


class Finished(BaseModel):
    """What one experiment of a wave hands back to learn."""

    scheduled: Scheduled
    proposal: Proposal = Field(description="The change as it ended (a repair may retune it).")
    avoid: dict[str, str] = Field(
        default_factory=dict, description="The run's avoid set as the experiment left it."
    )
    outcome: ExperimentOutcome


def gather(left: list[Finished] | None, right: list[Finished] | None) -> list[Finished]:
    """Experiments of a wave finish side by side: their results add up; learn writes
    ``None`` once it has recorded them, which empties the channel for the next wave."""
    if right is None:
        return []
    return [*(left or []), *right]


def add_counts(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
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


class NextExperiment(TypedDict, total=False):
    """The experiment under way: chosen by brainstorm, run by the experiment subgraph,
    recorded by learn. Brainstorm starts each one from :func:`fresh_experiment`."""

    current: Proposal | None
    owed: Queued | None  # the queue entry it came from (put back if it must wait)


def fresh_experiment() -> dict[str, Any]:
    """Every key of :class:`NextExperiment` reset (derived from the schema)."""
    return dict.fromkeys(NextExperiment.__annotations__)


class BrainstormState(NextExperiment, total=False):
    """The Brainstorm Agent's subgraph: goal intake, ideas, admission (and its gate)."""

    context: RunContext  # the run's world, seed, budget, policy values (set by intake)

    goal_text: str
    iterations: int
    run_id: str
    goal: Goal
    iteration: int
    avoid: dict[str, str]
    ideas: list[str]
    exhausted: bool
    funnel: dict[str, int]
    queue: list[Queued]
    follow_ups: int
    infra_streak: int
    stopped: str | None
    origin: str
    harness_versions: dict[str, int]
    wave: list[Scheduled]  # in flight (read: brainstorm does not propose them twice)
    wave_closed: bool  # a proposal did not fit: the wave runs as it is


class LoopState(BrainstormState, total=False):
    """The run (checkpointed after each node): brainstorm's keys plus what the scheduler,
    learn and harness evolution keep. The experiments of a wave write ``finished`` side by
    side (a reducer); loop-level nodes alone write the other reducer channels."""

    experiments: Annotated[list[ExperimentRecord], operator.add]
    evolutions: Annotated[list[EvolutionStep], operator.add]
    finished: Annotated[list[Finished], gather]


class LoopOutput(TypedDict, total=False):
    """What a finished run returns (its trace is in the run's trace log)."""

    run_id: str
    goal: Goal
    experiments: list[ExperimentRecord]
    funnel: dict[str, int]
    evolutions: list[EvolutionStep]
    harness_versions: dict[str, int]
    stopped: str | None


class ExperimentInput(TypedDict, total=False):
    """What the experiment subgraph is sent by the scheduler (or given in Studio)."""

    context: RunContext

    run_id: str
    iteration: int
    goal: Goal
    current: Proposal | None
    plan: list[RolloutStage] | None
    avoid: dict[str, str]
    origin: str
    slot: TrafficSlot | None
    scheduled: Scheduled | None


class DevelopState(TypedDict, total=False):
    """The Developing Agent's subgraph: write, verify, repair or abandon."""

    context: RunContext

    run_id: str
    iteration: int
    current: Proposal | None
    avoid: dict[str, str]
    patch: Patch | None
    apply_check: CheckResult | None
    verifications: list[Verification]
    repairs: list[RepairStep]


class EvaluateState(TypedDict, total=False):
    """The Evaluation Agent's subgraph: arms, staged rollout, gates, veto, verdict."""

    context: RunContext

    run_id: str
    iteration: int
    current: Proposal | None
    plan: list[RolloutStage] | None
    origin: str
    slot: TrafficSlot | None
    patch: Patch | None
    control_arm: ArmHandle | None
    treatment_arm: ArmHandle | None
    rollout: Rollout | None
    verdict: Verdict | None


class ExperimentState(ExperimentInput, DevelopState, EvaluateState, total=False):
    """One experiment's own state (its subgraph's checkpoint namespace)."""

    finished: list[Finished]


class ExperimentOutput(TypedDict, total=False):
    """What the experiment subgraph writes back to the run: its result, which the wave's
    other experiments add to theirs (``finished`` has a reducer in the run)."""

    finished: list[Finished]
