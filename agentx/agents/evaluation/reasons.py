"""Halt reasons of a rollout stage and the root cause each one records.

Why fixed prefixes: a halt reason travels through the graph state as text (``StageResult.reason``,
``Rollout.halt_reason``) and is read back by the verdict, so producer and consumer share these
constants instead of guessing from free text.
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
_CAUSES: list[tuple[str, RootCause]] = [
    (CRASHED, RootCause.CRASHED_ARM),
    (TRAFFIC_MISMATCH, RootCause.TRAFFIC_MISMATCH),
    (GUARDRAIL_BREACHED, RootCause.GUARDRAIL_HARM),
    (GUARDRAIL_UNMEASURABLE, RootCause.IMPLEMENTATION_DEFECT),
    (NORTH_STAR_UNMEASURABLE, RootCause.IMPLEMENTATION_DEFECT),
    (INVALID_READOUT, RootCause.IMPLEMENTATION_DEFECT),
    (LAUNCH_REFUSED, RootCause.LAUNCH_REFUSED),
]


def halt_cause(reason: str | None) -> tuple[RootCause, bool]:
    """Root cause of a halt with this reason, and whether the reason was recognised.

    An unrecognised reason (a rollout halted outside this package) is recorded as an
    implementation defect, the one cause that teaches the Brainstorm Agent nothing false.
    """
    text = (reason or "").strip()
    for prefix, cause in _CAUSES:
        if text.startswith(prefix):
            return cause, True
    return RootCause.IMPLEMENTATION_DEFECT, False
