"""Sandbox performance: simulator throughput, baseline train/serve, ground-truth cost.

Usage: python benchmarks/sandbox_bench.py [--world default] [--out benchmarks/results]
Prints a table and writes sandbox-<world>.json. Numbers are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from agentx.sandbox.online import SandboxWorld
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world


def _throughput(target: SandboxTarget, repeats: int) -> dict[str, float]:
    arm = target.launch("control", target.repo_path)
    serving = [target._serving(arm)]  # noqa: SLF001 - the benchmark measures the simulator alone
    world = target.world
    everyone = np.zeros(world.population.n_users, dtype=np.int64)
    days = target.world_params.horizon_days
    best = float("inf")
    impressions = 0.0
    for repeat in range(repeats):
        started = time.perf_counter()
        result = world.run_window(serving, everyone, days, seed=repeat)
        elapsed = time.perf_counter() - started
        impressions = float(
            result.window.sampled["impressions"].sum() + result.pre.sampled["impressions"].sum()
        )
        best = min(best, elapsed)
    return {"impressions": impressions, "seconds": best, "impressions_per_s": impressions / best}


def main() -> None:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    params = load_world(args.world)
    rows: dict[str, float] = {}

    started = time.perf_counter()
    SandboxWorld(params)
    rows["world_build_s"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        target = SandboxTarget.create(Path(tmp), params)
        started = time.perf_counter()
        arm = target.launch("control", target.repo_path)
        rows["launch_baseline_s"] = time.perf_counter() - started
        with np.load(arm.artefact) as data:
            rows["train_s"] = float(data["train_seconds"])
            per_day = data["serve_seconds"]
        rows["serve_ms_per_request"] = 1000.0 * float(np.median(per_day)) / params.n_users
        rows["serve_s_per_day_all_users"] = float(np.median(per_day))
        sim = _throughput(target, args.repeats)
        rows["sim_impressions"] = sim["impressions"]
        rows["sim_seconds"] = sim["seconds"]
        rows["sim_impressions_per_s"] = sim["impressions_per_s"]
        started = time.perf_counter()
        target.truth_of(target.repo_path)
        rows["ground_truth_s"] = time.perf_counter() - started
        started = time.perf_counter()
        target.evaluate_offline(target.repo_path)
        rows["offline_eval_s"] = time.perf_counter() - started

    width = max(len(k) for k in rows)
    print(
        f"sandbox benchmark, world {params.name} ({params.n_users} users, {params.n_items} items)"
    )
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value:>14,.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sandbox-{params.name}.json"
    path.write_text(json.dumps({"world": params.name, **rows}, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
