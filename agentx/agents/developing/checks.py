"""Verification dimensions the agent computes itself, and how they combine into Q_code.

The target adds its own dimensions (grounding, unit tests, dry run) through
``Target.verify``; :func:`summarise` merges everything into one :class:`Verification`
with a failure kind, a root cause and the weighted code-quality score Q_code.

The weights live here and not in the harness on purpose: the harness is what harness
evolution may edit, and a verifier's own weights must not be tunable by the thing it
verifies.
"""

from __future__ import annotations

from pathlib import Path

from agentx.models import CheckResult, FailureKind, RootCause, Verification
from agentx.workspace import syntax
from agentx.workspace.process import Outcome, run_confined

# Pipeline order, in which checks are reported and a root cause is looked for; a failed
# ``safety`` check comes first, since a sandbox stop explains the check it happened in.
DIMENSIONS: tuple[str, ...] = (
    "apply",
    "syntax",
    "rules",
    "safety",
    "grounding",
    "unit_tests",
    "dry_run",
    "offline_metrics",
    "latency",
    "diff_scope",
)

# Weights of Q_code (sum 1); severe dimensions weigh most, the minor diff scope least.
Q_WEIGHTS: dict[str, float] = {
    "apply": 0.10,
    "syntax": 0.14,
    "rules": 0.12,
    "safety": 0.12,
    "grounding": 0.10,
    "unit_tests": 0.14,
    "dry_run": 0.10,
    "offline_metrics": 0.08,
    "latency": 0.06,
    "diff_scope": 0.04,
}
OTHER_WEIGHT = 0.05  # a dimension a custom target adds
SKIPPED = "skipped"
# ``CheckResult.data`` key: the check failed because the infrastructure did (the model server
# could not be reached), so the failure says nothing about the idea or its code.
INFRASTRUCTURE = "infrastructure"
_NOT_IMPORTED = {"setup.py", "conftest.py", "__main__.py"}


def importable_modules(root: Path, files: list[str]) -> list[str]:
    """Dotted names of changed modules that import from ``root`` (tests and scripts excluded)."""
    modules: list[str] = []
    for name in files:
        path = Path(name)
        if path.suffix != ".py" or path.name in _NOT_IMPORTED or not (root / path).is_file():
            continue
        if {"tests", "test"} & set(path.parts[:-1]) or path.name.startswith("test_"):
            continue
        parts = list(path.with_suffix("").parts)
        packages = [Path(*path.parts[: i + 1]) for i in range(len(path.parts) - 1)]
        if not all((root / package / "__init__.py").is_file() for package in packages):
            continue  # inside a plain directory: not importable by its path
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            modules.append(".".join(parts))
    return sorted(set(modules))


def syntax_check(
    root: Path, files: list[str], import_timeout_s: float | None = 60.0
) -> CheckResult:
    """Every changed Python file parses, and every changed module imports (confined).

    With ``import_timeout_s=None`` only parsing is checked: the pipeline parses first,
    runs the static rules, and imports (which runs code) only when both pass.
    """
    for name in files:
        if not name.endswith(".py") or not (root / name).is_file():
            continue
        try:
            syntax.parse((root / name).read_text(), filename=name)
        except SyntaxError as error:
            where = f"{name}:{error.lineno}:{error.offset or 0}"
            code = (error.text or "").rstrip()
            return CheckResult(
                dimension="syntax",
                passed=False,
                detail=f"{where}: {error.msg}" + (f"\n    {code}" if code else ""),
            )
    modules = importable_modules(root, files) if import_timeout_s is not None else []
    if not modules:
        return CheckResult(dimension="syntax", passed=True, detail=f"{len(files)} file(s) parse")
    result = run_confined(
        ["-m", "agentx.workspace.imports", *modules], cwd=root, timeout_s=import_timeout_s or 60.0
    )
    data = {"modules": modules, "outcome": str(result.outcome), "ran": True}
    if not result.ok:
        return CheckResult(
            dimension="syntax",
            passed=False,
            detail=f"importing {', '.join(modules)} failed:\n{result.tail(25)}",
            transient=result.transient,
            data=data,
        )
    detail = f"{len(files)} file(s) parse; {len(modules)} module(s) import"
    return CheckResult(dimension="syntax", passed=True, detail=detail, data=data)


def scope_check(
    files: list[str], lines: int, max_files: int = 8, max_lines: int = 400
) -> CheckResult:
    """The change stays small enough to review (minor: reported, never blocking)."""
    ok = 0 < len(files) <= max_files and lines <= max_lines
    detail = f"{len(files)} file(s), {lines} line(s) changed (limits {max_files}, {max_lines})"
    if not files:
        detail = "the change is empty"
    return CheckResult(
        dimension="diff_scope",
        passed=ok,
        severity="minor",
        detail=detail,
        data={"files": len(files), "lines": lines, "paths": files[:20]},
    )


def cap_detail(check: CheckResult, limit: int) -> CheckResult:
    """``check`` with its detail cut to its last ``limit`` characters (where errors are).

    Details are stored with every experiment and fed to the model's repair prompt: a
    run that prints megabytes must not flood either.
    """
    detail = check.detail.strip()
    if len(detail) <= limit:
        return check
    cut = "... (earlier output cut)\n" + detail[-limit:]
    return check.model_copy(update={"detail": cut})


def skipped(dimension: str) -> CheckResult:
    """A dimension that did not run because an earlier blocking check failed."""
    return CheckResult(
        dimension=dimension,
        passed=False,
        severity="minor",
        detail="not run: an earlier blocking check failed",
        data={SKIPPED: True},
    )


def is_skipped(check: CheckResult) -> bool:
    """True for the placeholder of a dimension that did not run."""
    return bool(check.data.get(SKIPPED))


def is_blocking(check: CheckResult) -> bool:
    """A failed check that stops the change (severe or moderate, and actually run)."""
    return not check.passed and check.severity != "minor" and not is_skipped(check)


def headline(detail: str) -> str:
    """The most telling line of a check's detail (a test summary or an error line)."""
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    if not lines:
        return ""
    for prefixes in (("agentx-sandbox:",), ("FAILED ", "ERROR "), ("E ",)):
        found = [line for line in lines if line.startswith(prefixes)]
        if found:
            return found[-1][:300]
    errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
    return (errors[-1] if errors else lines[0])[:300]


def _order(check: CheckResult) -> int:
    name = check.dimension
    return DIMENSIONS.index(name) if name in DIMENSIONS else DIMENSIONS.index("diff_scope")


def summarise(checks: list[CheckResult]) -> Verification:
    """Combine dimensions into a verdict, a failure kind, a root cause and Q_code.

    Q_code = sum of the weights of passed dimensions / sum of all weights. When the
    change fails, dimensions that never ran are recorded as skipped and count zero, so
    a change stopped early scores lower than one that failed late.
    """
    checks = sorted(checks, key=_order)
    blocking = [c for c in checks if is_blocking(c)]
    if blocking:
        present = {c.dimension for c in checks}
        checks = sorted(checks + [skipped(d) for d in DIMENSIONS if d not in present], key=_order)
    total = sum(Q_WEIGHTS.get(c.dimension, OTHER_WEIGHT) for c in checks) or 1.0
    passed = sum(Q_WEIGHTS.get(c.dimension, OTHER_WEIGHT) for c in checks if c.passed)
    q_code = round(passed / total, 4)
    if not blocking:
        return Verification(passed=True, checks=checks, q_code=q_code)
    first = next((c for c in blocking if c.dimension == "safety"), blocking[0])
    transient = all(c.transient for c in blocking)
    return Verification(
        passed=False,
        checks=checks,
        q_code=q_code,
        failure_kind=FailureKind.TRANSIENT if transient else FailureKind.DETERMINISTIC,
        root_cause=f"{first.dimension}: {headline(first.detail)}",
        cause=failure_cause(blocking),
    )


def failure_cause(blocking: list[CheckResult]) -> RootCause:
    """The typed class of a failed verification, from its blocking checks.

    - the infrastructure failed (the model server unreachable, the OS sandbox did not start,
      the target's own verification or the baseline's evaluation could not run): nothing is
      learnt about the idea or its code;
    - only measured offline quality or latency failed: the change is wrong at this value
      (a milder value may pass), not the code;
    - anything else (apply, syntax, rules, tests, a sandbox stop, a crash by a signal, which
      the router retries once and then repairs): the code is wrong.
    """
    if any(_infrastructure(c) for c in blocking):
        return RootCause.INFRASTRUCTURE
    measured = [
        c
        for c in blocking
        if (c.dimension == "offline_metrics" and "relative_change" in c.data)
        or (c.dimension == "latency" and "latency_ms" in c.data)
    ]
    if len(measured) == len(blocking):
        if any(c.dimension == "offline_metrics" for c in measured):
            return RootCause.METRIC_REGRESSION
        return RootCause.LATENCY_OVER_BUDGET
    return RootCause.IMPLEMENTATION_DEFECT


def _infrastructure(check: CheckResult) -> bool:
    """The check failed because the infrastructure did, not the change."""
    sandbox = Outcome.SANDBOX_ERROR.value
    return (
        bool(check.data.get(INFRASTRUCTURE))
        or check.data.get("outcome") == sandbox
        or check.data.get("outcomes") == [sandbox]  # the safety dimension's summary
    )
