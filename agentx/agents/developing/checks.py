"""Verification dimensions the agent computes itself (the target adds its own)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from agentx.models import CheckResult, FailureKind, Verification

# Added lines matching these are refused: network, processes, writes by absolute path.
FORBIDDEN_PATTERNS: dict[str, str] = {
    r"^\s*(import|from)\s+(socket|requests|urllib|http\.client|httpx|aiohttp)\b": "network access",
    r"^\s*(import|from)\s+subprocess\b|os\.system\(|os\.popen\(": "starting processes",
    r"open\(\s*['\"]/": "file access by absolute path",
    r"\beval\(|\bexec\(": "dynamic code execution",
}

# Weights of the code-quality score Q_code; severe dimensions weigh most.
Q_WEIGHTS: dict[str, float] = {
    "apply": 0.15,
    "syntax": 0.15,
    "rules": 0.1,
    "grounding": 0.1,
    "unit_tests": 0.2,
    "dry_run": 0.15,
    "offline_metrics": 0.07,
    "latency": 0.05,
    "diff_scope": 0.03,
}


def syntax_check(root: Path, files: list[str]) -> CheckResult:
    """Every changed Python file parses."""
    for name in files:
        if not name.endswith(".py") or not (root / name).exists():
            continue
        try:
            ast.parse((root / name).read_text(), filename=name)
        except SyntaxError as error:
            return CheckResult(
                dimension="syntax", passed=False, detail=f"{name}:{error.lineno}: {error.msg}"
            )
    return CheckResult(dimension="syntax", passed=True, detail=f"{len(files)} file(s) parse")


def rules_check(root: Path, diff_text: str, files: list[str], protected: list[str]) -> CheckResult:
    """Forbidden patterns in added lines, edits of protected paths, and ruff's error rules."""
    problems: list[str] = []
    for name in files:
        if any(name.startswith(prefix) for prefix in protected):
            problems.append(f"edits protected path {name}")
    added = [
        line[1:]
        for line in diff_text.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    for pattern, meaning in FORBIDDEN_PATTERNS.items():
        for line in added:
            if re.search(pattern, line):
                problems.append(f"{meaning}: {line.strip()[:80]}")
                break
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    python_files = [f for f in files if f.endswith(".py") and (root / f).exists()]
    if python_files and Path(ruff).exists():
        result = subprocess.run(
            [
                ruff,
                "check",
                "--no-cache",
                "--select",
                "E9,F63,F7,F82,F401,F811,F821",
                *python_files,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode not in (0,):
            first = [line for line in result.stdout.splitlines() if line.strip()][:3]
            problems.append("lint: " + " | ".join(first))
    return CheckResult(
        dimension="rules",
        passed=not problems,
        detail="; ".join(problems) or "no forbidden pattern, protected path or lint error",
    )


def scope_check(
    files: list[str], lines: int, max_files: int = 8, max_lines: int = 400
) -> CheckResult:
    """The change stays small enough to review."""
    ok = 0 < len(files) <= max_files and lines <= max_lines
    detail = f"{len(files)} file(s), {lines} line(s) changed"
    if not files:
        detail = "the change is empty"
    return CheckResult(
        dimension="diff_scope",
        passed=ok,
        severity="minor",
        detail=detail,
        data={"files": len(files), "lines": lines},
    )


def summarise(checks: list[CheckResult]) -> Verification:
    """Combine dimensions into a verdict, a failure kind and Q_code."""
    total = sum(Q_WEIGHTS.get(c.dimension, 0.05) for c in checks) or 1.0
    q_code = sum(Q_WEIGHTS.get(c.dimension, 0.05) for c in checks if c.passed) / total
    blocking = [c for c in checks if not c.passed and c.severity != "minor"]
    if not blocking:
        return Verification(passed=True, checks=checks, q_code=round(q_code, 4))
    transient = all(c.transient for c in blocking)
    first = blocking[0]
    headline = first.detail.splitlines()[0][:300] if first.detail else ""
    return Verification(
        passed=False,
        checks=checks,
        q_code=round(q_code, 4),
        failure_kind=FailureKind.TRANSIENT if transient else FailureKind.DETERMINISTIC,
        root_cause=f"{first.dimension}: {headline}",
    )
