"""benchmarks/ab_agreement.py end to end on tiny: the staged readouts against the truth,
split by when their users were enrolled, in the JSON shape other tools read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ab_agreement")


def test_readouts_are_compared_with_the_truth_and_split_by_enrolment(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "ab_agreement.json"
    monkeypatch.setattr(bench, "RESULTS", results)
    option = "freshness_channel(size=20)"
    argv = ["--world", "tiny", "--runs", "2", "--options", option, "--workdir", str(tmp_path)]
    assert bench.main(argv) == 0
    row = json.loads(results.read_text())["tiny"][option]
    assert row["truth"] > 0.05  # tiny's largest true win
    assert len(row["measured"]) == 2 and len(set(row["measured"])) == 2  # own traffic each
    assert row["mean"] == pytest.approx(sum(row["measured"]) / 2)
    assert row["z"] == pytest.approx((row["mean"] - row["truth"]) / row["se_mean"])
    early, late = row["mean_enrolled_earlier"], row["mean_enrolled_at_full"]
    assert early is not None and late is not None
    assert early != late and row["mean"] not in (early, late)
