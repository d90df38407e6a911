"""One staged A/B through the project's evaluation: the same rollout, guardrails, early
stops and verdict as the loop's rollout and verdict nodes (``run_rollout`` runs the same
``run_stage`` the graph runs one node at a time; ``decide`` is the verdict node's rule)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.agents.evaluation.rollout import run_rollout
from agentx.agents.evaluation.verdict import decide
from agentx.models import Decision, RootCause
from agentx.sandbox.target import METRICS, SandboxTarget
from agentx.settings import Settings


@dataclass(frozen=True)
class ABResult:
    """What a strategy may read of one A/B: the verdict and the measured north star."""

    decision: str
    measured: float | None
    passed_guardrails: bool
    halted: str | None

    @property
    def keep(self) -> bool:
        """The Evaluation Agent's KEEP."""
        return self.decision == Decision.KEEP.value


def staged_ab(
    target: SandboxTarget,
    control: Path,
    treatment: Path,
    experiment_id: str,
    settings: Settings,
    policy: EvaluationPolicy,
) -> ABResult:
    """Launch both states as arms, run every stage, decide; arms are stopped afterwards."""
    control_arm = target.launch("control", control)
    treatment_arm = target.launch("treatment", treatment)
    rollout = run_rollout(
        target, control_arm, treatment_arm, experiment_id, settings, policy=policy
    )
    if not rollout.rolled_back:
        target.rollback(treatment_arm)  # stops the rollout's live arm processes
    direction = next(
        (m.direction for m in METRICS if m.name == settings.north_star), "higher_is_better"
    )
    verdict = decide(
        rollout, settings.north_star, settings.alpha, policy=policy, direction=direction
    )
    north = verdict.north_star
    return ABResult(
        decision=verdict.decision.value,
        measured=north.relative if north is not None else None,
        passed_guardrails=rollout.halted_at is None
        and verdict.root_cause != RootCause.GUARDRAIL_HARM,
        halted=rollout.halt_reason,
    )
