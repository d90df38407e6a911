"""benchmarks/concurrency.py's aggregation over seeds: throughput is the seeds' experiments
over their summed wall time (not a mean of rates), the true lift their mean with its spread,
and a bad flag is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("concurrency")


def _run(seed: int, wall: float, experiments: int, lift: float) -> dict:
    return {
        "seed": seed, "wall_s": wall, "experiments": experiments, "largest_wave": 2 + seed,
        "busy_cpu_s": wall * 1.5, "kept": 1, "retests": 0, "true_lift": lift,
    }  # fmt: skip


def test_a_k_row_pools_its_seeds(bench) -> None:
    row = bench.k_row(4, [_run(0, 60.0, 12, 0.02), _run(1, 30.0, 12, 0.04)])
    assert row["experiments_per_hour"] == pytest.approx(24 / 90 * 3600)  # not mean(720, 1440)
    assert row["cores_busy"] == pytest.approx(1.5)
    assert row["true_lift"] == pytest.approx(0.03)
    assert row["true_lift_sd"] == pytest.approx(0.0141421, rel=1e-4)
    assert row["true_lift_per_hour"] == pytest.approx(0.03 / 45.0 * 3600)
    assert row["largest_wave"] == 3 and row["kept"] == 2 and len(row["seeds"]) == 2
    assert bench.k_row(1, [_run(0, 60.0, 12, 0.02)])["true_lift_sd"] is None


@pytest.mark.parametrize("flags", [["--seeds", "0"], ["--ks", "0", "4"], ["--budget", "0"]])
def test_bad_flags_are_refused(bench, flags: list[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        bench.parse_args(flags)
    assert refused.value.code == 2


def test_no_truth_runs_the_loop_without_the_oracle(bench, tmp_path: Path) -> None:
    with_truth = bench._settings(tmp_path / "a", bench.parse_args([]), 4, 0)
    without = bench._settings(tmp_path / "b", bench.parse_args(["--no-truth"]), 4, 0)
    assert with_truth.ground_truth and not without.ground_truth
    assert without.concurrency.max_in_flight == 4
