"""benchmarks/aa_false_positives.py on tiny: staged A/A rollouts alone and on a wave's slice,
read through the Evaluation Agent, in the JSON shape other tools read, and nothing of a
finished rollout left running."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark


def _arm_processes_of(pid: int) -> list[int]:
    """Descendant processes of ``pid`` that run an arm server."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                command = (Path("/proc") / str(child) / "cmdline").read_bytes()
            except OSError:
                continue
            if b"arm_server" in command:
                found.append(child)
    return found


def test_each_seed_is_read_and_its_arms_stopped(tmp_path: Path, monkeypatch) -> None:
    bench = load_benchmark("aa_false_positives")
    results = tmp_path / "aa.json"
    monkeypatch.setattr(bench, "RESULTS", results)
    others = set(_arm_processes_of(os.getpid()))  # earlier tests' arms in this worker
    running_at_start: list[int] = []  # this benchmark's arm processes alive at each rollout
    rollout = bench.run_rollout

    def counted(*args, **kwargs):
        running_at_start.append(len(set(_arm_processes_of(os.getpid())) - others))
        return rollout(*args, **kwargs)

    monkeypatch.setattr(bench, "run_rollout", counted)
    argv = ["--world", "tiny", "--seeds", "3", "--slices", "1", "2", "--workdir", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = json.loads(results.read_text())
    assert set(rows) == {"1", "2"}
    for row in rows.values():
        assert row["seeds"] == 3 and len(row["p_values"]) == 3
        assert row["rejections"] == sum(p < 0.05 for p in row["p_values"])
        assert row["rate"] == pytest.approx(row["rejections"] / 3)
        assert len(set(row["effects"])) == 3  # each seed its own draws
    # six rollouts ran, and none found an earlier one's arms still up (about 1 GB each on
    # default: twenty seeds of them filled the memory)
    assert running_at_start == [0] * 6
