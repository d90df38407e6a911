"""One human-gate protocol for every interface: LangGraph prebuilt's ``HumanInterrupt`` out,
``HumanResponse`` in.

Why one shape: the three gates (proposal admission, moderate-guardrail review, launch past
the canary) had three answer shapes, and anything unrecognised silently counted as a
veto. The ecosystem's convention (``langgraph.prebuilt.interrupt``, read by Agent Inbox
and Studio) is an interrupt value with ``action_request`` / ``config`` / ``description``
and an answer ``{"type": "accept" | "edit" | "response" | "ignore", "args": ...}``. The
CLI, LangServe and the SDK all send that answer; each gate says which types it allows and
what they mean (:data:`GATES`).

An answer that is not understood is never a decision: :func:`parse_answer` raises
:class:`GateAnswerError` (the CLI and LangServe refuse it before resuming), and inside the
graph :func:`ask` pauses again at the same gate with the error in the description (what
an SDK caller that sent nonsense sees). The earlier shapes (``"approve"``,
``{"action": "approve"}``, ``{"approve": true}``, ``"veto"``...) are read as the same
``HumanResponse`` so existing callers keep working.

The interrupt value keeps the gate's evidence at the top level too (``gate``, ``proposal``,
``stage``...) for callers written against the earlier payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ResponseType = Literal["accept", "edit", "response", "ignore"]


class GateAnswerError(ValueError):
    """An answer a gate does not understand; the message lists what it accepts."""


@dataclass(frozen=True)
class GateSpec:
    """A gate: its name (the ``action_request.action``), its node, and what each allowed
    response type means there."""

    name: str
    node: str
    meanings: dict[str, str]

    @property
    def allowed(self) -> tuple[str, ...]:
        """The response types this gate accepts."""
        return tuple(self.meanings)


ADMISSION = GateSpec(
    "proposal_admission",
    "admission_gate",
    {
        "accept": "admit the proposal",
        "edit": 'admit it with other parameters: args {"action": "proposal_admission", '
        '"args": {"params": {...}}}',
        "response": "reject it; args is the reason (it joins the avoid set)",
        "ignore": "defer it (another proposal is brainstormed now)",
    },
)
REVIEW = GateSpec(
    "moderate_guardrail_review",
    "guardrail_review",
    {
        "accept": "accept the moderate guardrail breach and go on",
        "response": "veto (roll back); args is the reason",
        "ignore": "veto (roll back) without a reason",
    },
)
LAUNCH = GateSpec(
    "launch_past_canary",
    "launch_gate",
    {
        "accept": "launch past the canary (run the next stage)",
        "response": "halt and roll back; args is the reason",
        "ignore": "halt and roll back without a reason",
    },
)
GATES: dict[str, GateSpec] = {spec.name: spec for spec in (ADMISSION, REVIEW, LAUNCH)}


class GateAnswer(BaseModel):
    """A ``HumanResponse`` (plus who answered, kept in the trace)."""

    model_config = ConfigDict(extra="forbid")

    type: ResponseType
    args: str | dict[str, Any] | None = None
    reviewer: str = Field("human", min_length=1, description="Who answered (for the record).")

    def reason(self) -> str:
        """The text of a ``response`` (empty otherwise)."""
        return self.args if isinstance(self.args, str) else ""


def human_interrupt(spec: GateSpec, evidence: dict[str, Any], description: str) -> dict[str, Any]:
    """The ``HumanInterrupt`` fields for ``spec`` with ``evidence`` as the action's args."""
    return {
        "action_request": {"action": spec.name, "args": evidence},
        "config": {
            "allow_ignore": "ignore" in spec.meanings,
            "allow_respond": "response" in spec.meanings,
            "allow_edit": "edit" in spec.meanings,
            "allow_accept": "accept" in spec.meanings,
        },
        "description": description,
    }


def _from_earlier_shapes(spec: GateSpec, answer: Any) -> GateAnswer | None:
    """The earlier per-gate answers, read as ``HumanResponse``; None when not one of them."""
    if answer is True:
        return GateAnswer(type="accept")
    if isinstance(answer, str):
        word = answer.strip().lower()
        if word in ("approve", "accept"):
            return GateAnswer(type="accept")
        if word in ("veto", "halt", "reject"):
            return GateAnswer(type="response", args=word)
        if word == "defer":
            return GateAnswer(type="ignore")
        return None
    if not isinstance(answer, dict):
        return None
    reviewer = str(answer.get("reviewer") or "human")
    note = str(answer.get("note") or answer.get("reason") or "")
    if "approve" in answer and "action" not in answer and isinstance(answer["approve"], bool):
        if answer["approve"]:
            return GateAnswer(type="accept", args=note or None, reviewer=reviewer)
        return GateAnswer(type="response", args=note or "vetoed", reviewer=reviewer)
    action = str(answer.get("action", "")).strip().lower()
    if action == "approve":
        return GateAnswer(type="accept", args=note or None, reviewer=reviewer)
    if action in ("halt", "reject", "veto"):
        return GateAnswer(type="response", args=note or action, reviewer=reviewer)
    if action == "defer":
        return GateAnswer(type="ignore", reviewer=reviewer)
    if action == "revise" and isinstance(answer.get("params"), dict):
        edit = {"action": spec.name, "args": {"params": answer["params"]}}
        return GateAnswer(type="edit", args=edit, reviewer=reviewer)
    return None


def parse_answer(spec: GateSpec, answer: Any) -> GateAnswer:
    """``answer`` as a :class:`GateAnswer` this gate allows.

    Accepted: a ``HumanResponse`` mapping (or a one-element list of them, as Agent Inbox
    sends), a :class:`GateAnswer`, or one of the earlier shapes.

    Raises:
        GateAnswerError: anything else, or a type the gate does not allow.
    """
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    parsed: GateAnswer | None
    if isinstance(answer, GateAnswer):
        parsed = answer
    elif isinstance(answer, dict) and "type" in answer:
        try:
            parsed = GateAnswer.model_validate(answer)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in error.errors()
            )
            raise GateAnswerError(f"answer to {spec.name} not understood ({problems})") from None
    else:
        parsed = _from_earlier_shapes(spec, answer)
    if parsed is None:
        raise GateAnswerError(
            f"answer to {spec.name} not understood: {answer!r}; send "
            + ", ".join(
                f'{{"type": "{kind}"}} ({meaning})' for kind, meaning in spec.meanings.items()
            )
        )
    if parsed.type not in spec.meanings:
        raise GateAnswerError(
            f"{spec.name} does not take {parsed.type!r}; it takes {', '.join(spec.allowed)}"
        )
    if parsed.type == "edit":
        request = parsed.args if isinstance(parsed.args, dict) else {}
        params = (
            (request.get("args") or {}).get("params")
            if isinstance(request.get("args"), dict)
            else None
        )
        if not isinstance(params, dict):
            raise GateAnswerError(
                f'an edit of {spec.name} needs args {{"action": "{spec.name}", '
                '"args": {"params": {...}}}'
            )
    return parsed


def edited_params(answer: GateAnswer) -> dict[str, Any]:
    """The parameters of an ``edit`` answer (validated by :func:`parse_answer`)."""
    request = answer.args if isinstance(answer.args, dict) else {}
    return dict((request.get("args") or {}).get("params") or {})


def ask(spec: GateSpec, evidence: dict[str, Any], description: str) -> GateAnswer:
    """Pause at ``spec`` until a person answers with something the gate understands.

    A misunderstood answer pauses again at the same gate, the error first in the
    description and under ``error``, so no caller's typo becomes a decision.
    """
    problem: str | None = None
    while True:
        text = f"{problem}\n\n{description}" if problem else description
        value = {**evidence, "gate": spec.name, **human_interrupt(spec, evidence, text)}
        value["choices"] = evidence.get("choices", list(spec.allowed))
        value["response_types"] = dict(spec.meanings)
        if problem:
            value["error"] = problem
        try:
            return parse_answer(spec, interrupt(value))
        except GateAnswerError as error:
            problem = str(error)


class PendingGate(BaseModel):
    """A run waiting at a gate, as every interface reports it."""

    run_id: str
    gate: str
    node: str
    description: str
    evidence: dict[str, Any]
    response_types: dict[str, str]
    error: str | None = None


def pending_gate(run_id: str, interrupts: list[Any]) -> PendingGate | None:
    """The gate a paused run waits at, from its pending interrupt values (None if none)."""
    for value in interrupts:
        if isinstance(value, dict) and value.get("gate") in GATES:
            spec = GATES[value["gate"]]
            evidence = (value.get("action_request") or {}).get("args") or {}
            return PendingGate(
                run_id=run_id,
                gate=spec.name,
                node=spec.node,
                description=str(value.get("description") or ""),
                evidence=evidence,
                response_types=dict(spec.meanings),
                error=value.get("error"),
            )
    return None


# -- what each node's existing decision code reads -------------------------------------


def admission_action(answer: GateAnswer) -> dict[str, Any]:
    """The admission node's ``{"action": ...}`` for ``answer``."""
    if answer.type == "accept":
        return {"action": "approve"}
    if answer.type == "edit":
        return {"action": "revise", "params": edited_params(answer)}
    if answer.type == "ignore":
        return {"action": "defer", "reason": f"deferred by {answer.reviewer}"}
    return {"action": "reject", "reason": answer.reason() or f"rejected by {answer.reviewer}"}


def review_decision(answer: GateAnswer) -> dict[str, Any]:
    """The guardrail review's ``{"approve": ...}`` for ``answer``."""
    note = answer.reason() if answer.type == "response" else (answer.args or "")
    return {"approve": answer.type == "accept", "reviewer": answer.reviewer, "note": str(note)}


def launch_decision(answer: GateAnswer) -> dict[str, Any]:
    """The launch gate's ``{"action": "approve" | "halt", ...}`` for ``answer``."""
    if answer.type == "accept":
        return {"action": "approve", "reviewer": answer.reviewer, "note": str(answer.args or "")}
    return {"action": "halt", "reviewer": answer.reviewer, "reason": answer.reason()}
