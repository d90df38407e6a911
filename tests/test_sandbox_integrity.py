"""The pieces that keep evaluation honest, one by one: sealed caches, the model's numeric
soundness, the test-run summary, protected paths. The hostile end-to-end cases are in
tests/test_confinement.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentx.agents.developing.rules import is_protected
from agentx.sandbox import cache, model_checks, pytest_report


def test_a_sealed_entry_reads_back_and_an_altered_one_is_discarded(tmp_path: Path) -> None:
    entry = tmp_path / "arms" / "abc.npz"
    staged = tmp_path / "staged.npz"
    staged.write_bytes(b"slates")
    cache.seal(staged, entry)
    assert cache.read(entry) == b"slates" and not staged.exists()
    entry.write_bytes(b"poisoned")  # what a treatment did to the control before the fix
    assert cache.read(entry) is None
    assert not entry.exists() and not entry.with_name("abc.npz.sha256").exists()


def test_an_entry_without_checksum_is_not_trusted(tmp_path: Path) -> None:
    legacy = tmp_path / "truth" / "abc.json"
    legacy.parent.mkdir()
    legacy.write_text('{"watch_time": 1e9}')  # written before checksums existed
    assert cache.read_json(legacy) is None and not legacy.exists()
    cache.write_json(legacy, {"watch_time": 1.5})
    assert cache.read_json(legacy) == {"watch_time": 1.5}


def test_a_symlink_is_never_sealed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    link = tmp_path / "out.npz"
    link.symlink_to(secret)
    with pytest.raises(OSError, match="not a regular file"):
        cache.seal(link, tmp_path / "arms" / "x.npz")


def _diagnostics(**overrides: np.ndarray) -> dict[str, np.ndarray]:
    arrays = {
        "model_weights": np.array([0.5, -0.2]),
        "model_bias": np.array([-1.0]),
        "model_loss_history": np.array([0.7, 0.5, 0.52, 0.4]),
        "model_scores": np.array([0.1, 0.3]),
    }
    arrays.update({f"model_{k}": v for k, v in overrides.items()})
    return arrays


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, None),
        ({"weights": np.array([np.nan, 1.0])}, "1 non-finite parameter"),
        ({"bias": np.array([np.inf])}, "non-finite parameter"),
        ({"scores": np.array([np.nan, 0.0])}, "1 of 2 sampled scores non-finite"),
        ({"loss_history": np.array([0.7, np.nan])}, "not finite from epoch 2"),
        ({"loss_history": np.array([0.5, 0.6])}, "did not decrease"),
        ({"loss_history": np.array([0.5])}, "cannot see it fall"),
    ],
)
def test_model_soundness_is_judged_from_the_recorded_arrays(
    overrides: dict[str, np.ndarray], message: str | None
) -> None:
    verdict = model_checks.judge(_diagnostics(**overrides))
    assert verdict is None if message is None else message in (verdict or "")


def test_missing_diagnostics_are_a_failure_not_a_pass() -> None:
    assert "no model diagnostics" in (model_checks.judge({"slates": np.zeros(1)}) or "")


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"collected": 74, "passed": 74}, None),
        (None, "no result summary"),
        ({"collected": 0}, "no tests were collected"),
        ({"collected": 74, "skipped": 74}, "74 skipped of 74"),
        ({"collected": 74, "passed": 70, "deselected": 4}, "4 deselected"),
        ({"collected": 3, "xfailed": 3}, "3 xfailed"),
        ({"collected": 3, "passed": 0}, "none of the 3"),
    ],
)
def test_only_a_run_where_every_test_ran_and_passed_counts(
    counts: dict[str, int] | None, message: str | None
) -> None:
    verdict = pytest_report.judge(counts)
    assert verdict is None if message is None else message in (verdict or "")


@pytest.mark.parametrize(
    ("name", "protected"),
    [
        ("tests/test_x.py", True),
        ("conftest.py", True),
        ("recsys/conftest.py", True),
        ("pytest.ini", True),
        ("pyproject.toml", True),
        ("setup.cfg", True),
        ("tox.ini", True),
        ("recsys/rerank.py", False),
        ("config.toml", False),
        ("testsuite.py", False),
    ],
)
def test_tests_and_pytest_configuration_are_protected(name: str, protected: bool) -> None:
    entries = [
        "tests/",
        "data/",
        ".git/",
        "conftest.py",
        "pytest.ini",
        "pyproject.toml",
        "setup.cfg",
        "tox.ini",
    ]
    assert is_protected(name, entries) is protected
