"""A pytest plugin that writes what the session really did, for the ``unit_tests`` dimension.

Loaded into the target's test run with ``-p agentx.sandbox.pytest_report``; it writes
``{"collected": n, "passed": n, "failed": n, "skipped": n, ...}`` as JSON to the file
named by ``AGENTX_PYTEST_REPORT`` (a private directory of that run). An exit status of 0
is not evidence of tests that ran: a root ``conftest.py`` that skips everything, a
deselection, or tests that are all expected to fail all exit 0. :func:`judge` turns the
counts into a verdict in the parent.

The plugin runs in the process under test, so code that patches pytest from inside can
forge it; that is why test files, ``conftest.py`` and the pytest configuration are
protected paths, which a change may not edit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import pytest

ENV = "AGENTX_PYTEST_REPORT"
_OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the session's counts once every test has run."""
    path = os.environ.get(ENV)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not path or reporter is None:
        return
    counts: dict[str, Any] = {name: len(reporter.stats.get(name, [])) for name in _OUTCOMES}
    counts["collected"] = session.testscollected
    counts["exitstatus"] = int(exitstatus)
    with open(path, "w") as handle:
        json.dump(counts, handle)


def judge(counts: Mapping[str, Any] | None) -> str | None:
    """One line saying why the run does not prove the tests pass; None when it does.

    Every collected test must have run and passed: nothing skipped, deselected or
    marked as an expected failure, and at least one test.
    """
    if counts is None:
        return "the test run wrote no result summary (it was stopped before pytest finished)"
    collected = int(counts.get("collected", 0))
    if collected == 0:
        return "no tests were collected: the tests dimension needs tests that run"
    stopped = {
        name: int(counts.get(name, 0))
        for name in ("skipped", "deselected", "xfailed", "xpassed")
        if int(counts.get(name, 0))
    }
    if stopped:
        listed = ", ".join(f"{n} {name}" for name, n in stopped.items())
        return f"{listed} of {collected} collected: every test must run and pass"
    if int(counts.get("passed", 0)) == 0:
        return f"none of the {collected} collected tests passed"
    return None
