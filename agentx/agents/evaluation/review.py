"""Human review of a moderate guardrail breach (a LangGraph ``interrupt`` when not autonomous).

Why here and not in the graph: what needs review, what the reviewer sees and what an answer
does to the stage are evaluation policy; the graph only pauses and resumes. The wiring calls
:func:`review_request` after a stage, passes the payload to ``langgraph.types.interrupt``, and
hands whatever comes back to :func:`apply_review`. Anything but an explicit approval counts as
a veto: a malformed or missing answer must never let harm through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from agentx.agents.evaluation import reasons
from agentx.agents.evaluation.policy import EXCHANGE_METRIC, load_review_template
from agentx.models import Acceptance, GuardrailResult, MetricEffect, StageResult
from agentx.settings import Settings

APPROVED = "approved in review"


class ReviewRequest(BaseModel):
    """What the reviewer is shown (JSON-serialisable: it is the interrupt's value)."""

    kind: Literal["moderate_guardrail_review"] = "moderate_guardrail_review"
    experiment_id: str
    stage: str
    guardrails: list[GuardrailResult] = Field(description="The moderate breaches to judge.")
    north_star: MetricEffect | None = None
    exchange: MetricEffect | None = None
    question: str
    options: list[str] = Field(default_factory=lambda: ["approve", "veto"])


class ReviewAnswer(BaseModel):
    """The reviewer's decision."""

    approve: bool
    reviewer: str = Field("human", min_length=1)
    note: str = ""


def pending_review(result: StageResult) -> list[GuardrailResult]:
    """Moderate breaches of a stage that was not halted: they wait for a human decision."""
    if result.decision == "halt":
        return []
    return [g for g in result.guardrails if g.breached and g.tier == "moderate"]


def needs_review(result: StageResult, settings: Settings) -> bool:
    """Whether the graph must pause for a human after this stage (never when autonomous)."""
    return not settings.autonomous and bool(pending_review(result))


def review_request(
    result: StageResult, settings: Settings, experiment_id: str
) -> ReviewRequest | None:
    """The interrupt payload when the stage needs review, else None (autonomous mode: never)."""
    if not needs_review(result, settings):
        return None
    pending = pending_review(result)
    effects = {e.metric: e for e in result.effects}
    north = effects.get(settings.north_star)
    exchange = effects.get(EXCHANGE_METRIC)
    question = load_review_template().format(
        experiment_id=experiment_id,
        stage=result.stage,
        metrics=", ".join(g.metric for g in pending),
        north_star=settings.north_star,
        north_star_effect=_describe(north),
        exchange_effect=_describe(exchange),
        guardrail_table="\n".join(f"- {g.metric} ({g.tier}): {g.detail}" for g in pending),
    )
    return ReviewRequest(
        experiment_id=experiment_id,
        stage=result.stage,
        guardrails=pending,
        north_star=north,
        exchange=exchange,
        question=question,
    )


def parse_answer(answer: Any) -> tuple[ReviewAnswer | None, str]:
    """The answer as a :class:`ReviewAnswer`, or None and why it was not understood.

    Accepted: a ReviewAnswer, a mapping with ``approve``, a bool, or the strings
    "approve"/"veto" (any case).
    """
    if isinstance(answer, ReviewAnswer):
        return answer, ""
    if isinstance(answer, bool):
        return ReviewAnswer(approve=answer), ""
    if isinstance(answer, str) and answer.strip().lower() in ("approve", "veto"):
        return ReviewAnswer(approve=answer.strip().lower() == "approve"), ""
    if isinstance(answer, dict):
        try:
            return ReviewAnswer.model_validate(answer), ""
        except ValidationError as error:
            return None, f"invalid review answer ({error.error_count()} error(s)): {answer!r}"
    return None, f"review answer not understood: {answer!r}"


def apply_review(result: StageResult, answer: Any) -> StageResult:
    """The stage after the reviewer's decision (a copy; the input is not modified).

    Approval clears the pending breaches (their detail records who approved and why) and keeps
    the stage's decision; a veto — or any answer that is not a clear approval — halts the stage
    with a guardrail-breach reason, so the graph rolls the treatment back.
    """
    pending = pending_review(result)
    if not pending:
        return result
    parsed, problem = parse_answer(answer)
    names = ", ".join(g.metric for g in pending)
    updated = result.model_copy(deep=True)
    if parsed is not None and parsed.approve:
        note = f"; {APPROVED} by {parsed.reviewer}" + (f": {parsed.note}" if parsed.note else "")
        updated.guardrails = [
            g.model_copy(
                update={
                    "breached": False,
                    "accepted": Acceptance.REVIEW,
                    "detail": g.detail + note,
                }
            )
            if g.breached and g.tier == "moderate"
            else g
            for g in updated.guardrails
        ]
        updated.review_pending = []
        updated.reason = "; ".join(updated.notes) or f"moderate breach of {names} approved"
        return updated
    who = f"vetoed in review by {parsed.reviewer}" if parsed else f"counted as veto: {problem}"
    if parsed and parsed.note:
        who += f" ({parsed.note})"
    details = "; ".join(f"moderate {g.metric} {g.detail}" for g in pending)
    updated.decision = "halt"
    updated.reason, updated.halt_cause = reasons.halted(
        reasons.GUARDRAIL_BREACHED, f"{details}; {who}"
    )
    return updated


@dataclass(frozen=True)
class LaunchDecision:
    """The launch-past-canary gate's answer as read, and the canary stage after it."""

    stage: StageResult
    action: str
    reviewer: str
    note: str
    message: str


def apply_launch_answer(result: StageResult, answer: Any) -> LaunchDecision:
    """The canary stage after the launch-past-canary gate's answer (a copy of the stage).

    ``{"action": "approve", "reviewer": ..., "note": ...}``, ``"approve"``, ``True`` or a
    review-style ``{"approve": true}`` approves: the stage keeps its decision and its reason
    records the approval. Anything else halts the stage with a ``launch refused by reviewer``
    reason, so the graph vetoes and rolls the treatment back.
    """
    if answer is True:
        answer = "approve"
    answer = answer if isinstance(answer, dict) else {"action": str(answer)}
    default = "approve" if answer.get("approve") is True else "halt"  # review-style answer
    action = str(answer.get("action", default)).strip().lower()
    reviewer = str(answer.get("reviewer") or "human")
    note = str(answer.get("note") or answer.get("reason") or "")
    updated = result.model_copy(deep=True)
    if action == "approve":
        message = f"launch past {result.stage} approved by {reviewer}"
        message += f" ({note})" if note else ""
        updated.notes = [*result.notes, message]
        updated.reason = "; ".join(part for part in (result.reason, message) if part)
    else:
        why = note or ("halted" if action == "halt" else f"answer not understood: {answer!r}")
        updated.decision = "halt"
        updated.reason, updated.halt_cause = reasons.halted(
            reasons.LAUNCH_REFUSED, f"{reviewer} at {result.stage}: {why}", separator=" "
        )
        message = updated.reason
    return LaunchDecision(updated, action, reviewer, note, message)


def was_approved(result: GuardrailResult) -> bool:
    """Whether a breach of this guardrail was approved by a reviewer."""
    return result.accepted == Acceptance.REVIEW


def _describe(effect: MetricEffect | None) -> str:
    if effect is None:
        return "not measured"
    return (
        f"{effect.relative:+.2%} [{effect.ci_low:+.2%}, {effect.ci_high:+.2%}], "
        f"p={effect.p_value:.3g}"
    )
