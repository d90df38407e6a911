"""What the model is told after a failed attempt: the failing dimensions' own evidence.

Each failing dimension contributes its detail (the error text, the failing test's
output, the metric and its delta against the baseline and the allowed limit), most
recent lines first kept when it is long, plus the change as it currently stands. The
wording lives in ``prompts/developing/repair.md``.
"""

from __future__ import annotations

from agentx.agents.developing.checks import is_skipped
from agentx.harness import load_prompt
from agentx.models import CheckResult, Verification

MAX_DETAIL_CHARS = 3_000
MAX_DIFF_CHARS = 12_000


def _tail(text: str, limit: int) -> str:
    """The end of ``text`` (where tracebacks and test summaries are) within ``limit``."""
    text = text.strip()
    return text if len(text) <= limit else "... (earlier output cut)\n" + text[-limit:]


def _kind(check: CheckResult) -> str:
    return "transient" if check.transient else "deterministic"


def evidence(verification: Verification, limit: int = MAX_DETAIL_CHARS) -> str:
    """The failing dimensions of ``verification`` with their evidence, one block each.

    Each block keeps the last ``limit`` characters of its detail.
    """
    blocks = []
    for check in verification.failed_checks():
        if is_skipped(check):
            continue
        blocks.append(
            f"### {check.dimension} ({check.severity}, {_kind(check)})\n"
            f"{_tail(check.detail, limit) or '(no detail)'}"
        )
    return "\n\n".join(blocks) or "(no failing dimension reported)"


def render_feedback(
    verification: Verification | None,
    attempt: int,
    diff: str,
    limit: int = MAX_DETAIL_CHARS,
) -> str:
    """The repair section of the prompt; empty for a first attempt.

    Args:
        verification: the previous attempt's verification (None on the first attempt).
        attempt: the number of the attempt being written now.
        diff: the change currently applied to the files the model is shown.
        limit: longest evidence kept per failing dimension (``sandbox.max_detail_chars``).
    """
    if verification is None or verification.passed:
        return ""
    shown = _tail(diff, MAX_DIFF_CHARS) if diff.strip() else "(none: the files are unchanged)"
    return load_prompt("developing", "repair").format(
        previous=attempt - 1,
        attempt=attempt,
        root_cause=verification.root_cause or "unknown",
        failure_kind=verification.failure_kind or "unknown",
        evidence=evidence(verification, limit),
        diff=shown,
    )
