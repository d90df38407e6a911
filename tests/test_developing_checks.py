"""The Developing Agent's own checks on real diffs: rules, Q_code, failure classes, feedback."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentx.agents.developing.checks import Q_WEIGHTS, importable_modules, summarise, syntax_check
from agentx.agents.developing.classify import classify, safety_check
from agentx.agents.developing.context import unmet_preconditions
from agentx.agents.developing.feedback import render_feedback
from agentx.agents.developing.rules import rules_check
from agentx.models import CheckResult, FailureKind
from agentx.research.catalog import Technique
from agentx.sandbox.target import SandboxTarget
from agentx.workspace import git
from agentx.workspace.process import SANDBOX_MARK, ProcessResult

BASE_CONFIG = "[rerank]\nslots = 0  # exploration slots; 0 = off\n"
BASE_CODE = (
    "import os\n\n\ndef serve(x):\n    return x\n"  # an unused import already in the baseline
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "core.py").write_text(BASE_CODE)
    (root / "config.toml").write_text(BASE_CONFIG)
    (root / "tests").mkdir()
    (root / "tests" / "test_core.py").write_text("def test_x():\n    assert True\n")
    git.init_repository(root, "baseline")
    return root


def _rules(root: Path) -> CheckResult:
    base = git.head(root)
    files, _ = git.diff_stats(root, base)
    return rules_check(root, git.diff(root, base), files, ["tests/", ".git/"])


def _append(root: Path, name: str, text: str) -> None:
    path = root / name
    path.write_text(path.read_text() + text)


def test_a_clean_change_passes_the_rules_and_baseline_defects_are_not_blamed(repo: Path) -> None:
    _append(repo, "pkg/core.py", "\n\ndef boost(x):\n    return 2 * x\n")
    _append(repo, "config.toml", "boost = 0  # multiplier of boost(); 0 = off\n")
    check = _rules(repo)
    assert check.passed, check.detail  # the baseline's unused `import os` is not flagged


@pytest.mark.parametrize(
    ("added", "finding"),
    [
        ("import socket\n", "network access"),
        ("from urllib import request\n", "network access"),
        ("import subprocess\n", "starting processes"),
        ("X = os.system('ls')\n", "starting processes"),
        ("DATA = open('/etc/hosts').read()\n", "absolute path"),
        ("CACHE = __import__('pathlib').Path.home()\n", "outside the repository"),
        ("Y = eval('1')\n", "dynamic code"),
        ("import ctypes\n", "native code"),
        ("def rule(x, enabled: bool = True):\n    return x\n", "default-on switch"),
        ("ON = CONFIG.get('use_rule', True)\n", "default-on switch"),
        ("Z = undefined_name\n", "lint at pkg/core.py"),
        ("import json\n", "lint at pkg/core.py"),
    ],
)
def test_forbidden_patterns_and_lint_in_added_lines_fail_rules(
    repo: Path, added: str, finding: str
) -> None:
    _append(repo, "pkg/core.py", "\n" + added)
    check = _rules(repo)
    assert not check.passed
    assert finding in check.detail
    assert "pkg/core.py:" in check.detail  # the finding names the file and line


def test_new_config_keys_must_be_documented(repo: Path) -> None:
    _append(repo, "config.toml", "boost = 2\n")
    check = _rules(repo)
    assert not check.passed and "undocumented config key at config.toml:3: boost" in check.detail
    _append(repo, "config.toml", "# how much to boost; 0 = off\nboost2 = 1\n")
    assert "boost2" not in _rules(repo).detail  # a comment line above documents it too


def test_changing_an_existing_key_needs_no_new_documentation(repo: Path) -> None:
    (repo / "config.toml").write_text("[rerank]\nslots = 2\n")
    assert _rules(repo).passed


def test_editing_protected_paths_fails_rules(repo: Path) -> None:
    _append(repo, "tests/test_core.py", "\n\ndef test_more():\n    pass\n")
    check = _rules(repo)
    assert not check.passed and "protected path tests/test_core.py" in check.detail


def test_syntax_check_parses_then_imports_confined(repo: Path) -> None:
    assert importable_modules(repo, ["pkg/core.py", "pkg/__init__.py", "tests/test_core.py"]) == [
        "pkg",
        "pkg.core",
    ]
    assert syntax_check(repo, ["pkg/core.py"]).passed
    (repo / "pkg" / "core.py").write_text("def broken(:\n    pass\n")
    check = syntax_check(repo, ["pkg/core.py"])
    assert not check.passed and check.detail.startswith("pkg/core.py:1:")
    (repo / "pkg" / "core.py").write_text("import missing_module_xyz\n")
    check = syntax_check(repo, ["pkg/core.py"])
    assert not check.passed and "No module named 'missing_module_xyz'" in check.detail
    (repo / "pkg" / "core.py").write_text("import socket\nsocket.getaddrinfo('example.com', 80)\n")
    check = classify(syntax_check(repo, ["pkg/core.py"]))
    assert not check.passed and not check.transient
    assert "network access is not allowed" in safety_check([check]).detail


def _passing() -> list[CheckResult]:
    return [CheckResult(dimension=d, passed=True) for d in Q_WEIGHTS]


def test_q_code_is_one_when_every_dimension_passes() -> None:
    verification = summarise(_passing())
    assert verification.passed and verification.q_code == 1.0
    assert verification.failure_kind is None and verification.root_cause is None


def test_failing_early_scores_lower_than_failing_late_and_records_skipped_dimensions() -> None:
    early = summarise([CheckResult(dimension="syntax", passed=False, detail="a.py:1: bad")])
    late_checks = _passing()
    late_checks[-3] = CheckResult(dimension="offline_metrics", passed=False, severity="moderate")
    late = summarise(late_checks)
    assert not early.passed and not late.passed
    assert early.q_code < late.q_code < 1.0
    assert {c.dimension for c in early.checks} == set(Q_WEIGHTS)  # skipped ones are recorded
    assert early.root_cause == "syntax: a.py:1: bad"


def test_minor_failures_do_not_block() -> None:
    checks = _passing()
    checks[-1] = CheckResult(dimension="diff_scope", passed=False, severity="minor")
    verification = summarise(checks)
    assert verification.passed and verification.q_code == pytest.approx(1 - Q_WEIGHTS["diff_scope"])


def _stopped(dimension: str, result: ProcessResult) -> CheckResult:
    """A check whose detail is a confined run's output, as a target reports it."""
    detail = f"{result.tail()}\n{SANDBOX_MARK}: {result.describe()}"
    return CheckResult(dimension=dimension, passed=False, detail=detail)


def test_crashes_and_sandbox_errors_are_transient_timeouts_violations_memory_are_not() -> None:
    timeout = ProcessResult(-9, "", "", 5.0, timed_out=True, timeout_s=5.0)
    crash = ProcessResult(-11, "", "", 1.0)
    broken = ProcessResult(1, "", "bwrap: Can't mount proc", 0.1, sandbox_error="bwrap: x")
    oom = ProcessResult(1, "", "MemoryError\n", 1.0, memory_mb=512)
    violation = ProcessResult(0, "", "", 1.0, violations=("agentx-guard: network access (x)",))
    assert not classify(_stopped("unit_tests", timeout)).transient  # loops again: no retry
    assert classify(_stopped("dry_run", crash)).transient
    assert classify(_stopped("dry_run", broken)).transient  # the sandbox, not the change
    assert not classify(_stopped("unit_tests", oom)).transient
    assert not classify(_stopped("dry_run", violation)).transient
    nan = CheckResult(dimension="unit_tests", passed=False, detail="E   ValueError: loss is nan")
    assert classify(nan) == nan and not nan.transient  # an ordinary error stays deterministic

    def verdict(*results: tuple[str, ProcessResult]) -> FailureKind | None:
        checks = [classify(_stopped(d, r)) for d, r in results]
        return summarise([*checks, safety_check(checks)]).failure_kind

    assert verdict(("unit_tests", broken), ("dry_run", crash)) == FailureKind.TRANSIENT
    assert verdict(("unit_tests", timeout), ("dry_run", crash)) == FailureKind.DETERMINISTIC
    assert verdict(("unit_tests", crash), ("dry_run", violation)) == FailureKind.DETERMINISTIC
    assert verdict(("dry_run", oom)) == FailureKind.DETERMINISTIC


def test_safety_is_the_root_cause_and_names_the_violation_and_dimension() -> None:
    violation = ProcessResult(1, "", "", 1.0, violations=("agentx-guard: write outside: /x",))
    checks = [classify(_stopped("unit_tests", violation))]
    verification = summarise([*checks, safety_check(checks)])
    assert verification.root_cause == (
        "safety: sandbox violation: write outside: /x (during unit_tests)"
    )


def test_feedback_carries_each_failing_dimensions_evidence() -> None:
    offline = CheckResult(
        dimension="offline_metrics",
        passed=False,
        severity="moderate",
        detail="NDCG@10 0.0150 vs baseline 0.0200 (-25.0%; a regression beyond -15% fails)",
    )
    tests = CheckResult(
        dimension="unit_tests",
        passed=False,
        detail="FAILED tests/test_rerank.py::test_seeded - AssertionError: slates differ",
    )
    verification = summarise([CheckResult(dimension="apply", passed=True), tests, offline])
    text = render_feedback(verification, 2, "+exploration_slots = 3")
    assert "FAILED tests/test_rerank.py::test_seeded - AssertionError: slates differ" in text
    assert "-25.0%" in text and "-15%" in text
    assert "+exploration_slots = 3" in text
    assert "attempt 2" in text and "deterministic" in text
    assert "not run" not in text  # skipped dimensions are not evidence
    assert render_feedback(None, 1, "") == ""


def test_preconditions_are_checked_against_the_targets_facts(tiny_target: SandboxTarget) -> None:
    system = tiny_target.describe()
    met = Technique(
        id="met",
        name="met",
        lever="x",
        summary="x",
        preconditions=[
            "rerank.exploration_slots exists in config.toml",
            'ranker.debias is "none"',
            "items.release_day is logged",
            "recsys.randomness.keyed_uniform exists",
            "the RERANK_RULES registry exists",  # prose: left to the model
        ],
    )
    assert unmet_preconditions(met, system) == []
    unmet = met.model_copy(
        update={
            "preconditions": [
                "rerank.mystery exists in config.toml",
                'ranker.debias is "ips"',
                "items.colour is logged",
                "recsys.randomness.nothing exists",
            ]
        }
    )
    assert unmet_preconditions(unmet, system) == [
        "config key rerank.mystery does not exist",
        "config ranker.debias is 'none', not 'ips'",
        "logged field items.colour does not exist",
        "recsys/randomness.py defines no nothing",
    ]
