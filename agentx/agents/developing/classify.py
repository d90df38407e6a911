"""Failure classes of checks that ran code, and the ``safety`` dimension built from them.

The router retries a *transient* failure once, unchanged, and repairs or abandons a
*deterministic* one. The class comes from how the confined run ended:

- the sandbox refused something (network, a process, a write outside the worktree), or
  the memory, file-size, CPU-time or wall-clock limit was hit: deterministic, the same
  code does it again (an endless loop loops again; no blind retry);
- a crash by a signal, or the OS sandbox failing to start the code: transient, an
  external kill, a flaky native library or the machine may be to blame, so one
  unchanged retry is worth it;
- an ordinary error (NaN loss, a missing feature, a failing test, a syntax error):
  deterministic, as the target reported it.

Targets report what they ran as check details; the sandbox's marker lines in those
details (see :func:`agentx.workspace.process.classify_text`) carry the outcome, and a
target may also put it in ``data["outcome"]`` or ``data["violation"]`` explicitly.
"""

from __future__ import annotations

from agentx.agents.developing.checks import is_skipped
from agentx.models import CheckResult
from agentx.workspace.guard import GUARD_MARK
from agentx.workspace.process import (
    SANDBOX_MARK,
    TRANSIENT_OUTCOMES,
    Outcome,
    classify_text,
)

SANDBOX_STOPS = frozenset(
    {
        Outcome.VIOLATION,
        Outcome.OUT_OF_MEMORY,
        Outcome.TIMEOUT,
        Outcome.CPU_LIMIT,
        Outcome.FILE_LIMIT,
        Outcome.SANDBOX_ERROR,
        Outcome.CRASHED,
    }
)


def outcome_of(check: CheckResult) -> Outcome | None:
    """How the run behind a failed check ended, if it shows a sandbox stop."""
    if check.passed or is_skipped(check):
        return None
    if check.data.get("violation"):
        return Outcome.VIOLATION
    recorded = check.data.get("outcome")
    if recorded in {o.value for o in SANDBOX_STOPS}:
        return Outcome(recorded)
    return classify_text(check.detail)


def classify(check: CheckResult) -> CheckResult:
    """``check`` with ``transient`` set from the evidence of how its run ended."""
    outcome = outcome_of(check)
    if outcome is None:
        return check
    return check.model_copy(
        update={
            "transient": outcome in TRANSIENT_OUTCOMES,
            "data": {**check.data, "outcome": outcome.value},
        }
    )


def _evidence(check: CheckResult, outcome: Outcome) -> str:
    """The one line saying what the sandbox stopped, e.g. the guard's message."""
    violation = check.data.get("violation")
    if violation:
        return f"sandbox violation: {violation}"
    lines = check.detail.splitlines()
    for mark in (f"{SANDBOX_MARK}:", f"{GUARD_MARK}:"):
        found = [line.split(mark, 1)[1].strip() for line in lines if mark in line]
        if found:
            prefix = "sandbox violation: " if mark == f"{GUARD_MARK}:" else ""
            return prefix + found[-1]
    if outcome is Outcome.OUT_OF_MEMORY:
        return "out of memory: the memory limit was exceeded"
    return outcome.value.replace("_", " ")


def safety_check(checks: list[CheckResult]) -> CheckResult:
    """Did every run stay inside the sandbox? One line per stop, naming the dimension.

    Violations and every limit fail it deterministically; crashes and a sandbox that
    failed to start fail it as transient.
    """
    stops: list[tuple[CheckResult, Outcome]] = []
    for check in checks:
        outcome = outcome_of(check)
        if outcome in SANDBOX_STOPS:
            stops.append((check, outcome))
    if not stops:
        return CheckResult(
            dimension="safety",
            passed=True,
            detail="every run stayed inside the sandbox (no network, process, write outside "
            "the worktree, memory or time limit)",
        )
    lines = sorted({f"{_evidence(c, o)} (during {c.dimension})" for c, o in stops})
    return CheckResult(
        dimension="safety",
        passed=False,
        detail="; ".join(lines),
        transient=all(o in TRANSIENT_OUTCOMES for _, o in stops),
        data={"outcomes": sorted({o.value for _, o in stops})},
    )
