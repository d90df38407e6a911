"""Halt reasons of a rollout stage and the root cause each one records.

The reason is text for people (``StageResult.reason``, ``Rollout.halt_reason``); the cause
travels beside it as the typed ``StageResult.halt_cause``, which is what the verdict reads.
:func:`halted` sets both from one of these kinds, so they cannot disagree.
"""

from __future__ import annotations

from agentx.models import RootCause

CRASHED = "crashed arm"
INVALID_READOUT = "invalid readout"
TRAFFIC_MISMATCH = "traffic mismatch"
GUARDRAIL_BREACHED = "guardrail breached"
GUARDRAIL_UNMEASURABLE = "guardrail not measurable"
NORTH_STAR_UNMEASURABLE = "north-star not measurable"
REVIEW_PENDING = "moderate guardrail breach needs review"
LAUNCH_REFUSED = "launch refused by reviewer"

# Measurement failures (missing, NaN, constant metrics; malformed readouts) are recorded as
# implementation defects: the arm or its instrumentation is broken, and the Brainstorm Agent's
# beliefs ignore such cards instead of learning "no effect" from them. A launch refused at the
# launch-past-canary gate is a human decision, not a measurement: it gets its own cause, which
# the beliefs ignore too (it must not read as guardrail harm or as "no effect").
CAUSES: dict[str, RootCause] = {
    CRASHED: RootCause.CRASHED_ARM,
    TRAFFIC_MISMATCH: RootCause.TRAFFIC_MISMATCH,
    GUARDRAIL_BREACHED: RootCause.GUARDRAIL_HARM,
    GUARDRAIL_UNMEASURABLE: RootCause.IMPLEMENTATION_DEFECT,
    NORTH_STAR_UNMEASURABLE: RootCause.IMPLEMENTATION_DEFECT,
    INVALID_READOUT: RootCause.IMPLEMENTATION_DEFECT,
    LAUNCH_REFUSED: RootCause.LAUNCH_REFUSED,
}


def halted(kind: str, detail: str, separator: str = ": ") -> tuple[str, RootCause]:
    """The readable reason and the typed cause of a halt of ``kind`` (a constant above)."""
    return f"{kind}{separator}{detail}", CAUSES[kind]
