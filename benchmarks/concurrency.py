"""Experiments per hour and true lift per hour with K experiments in flight (issue 16).

Usage: python benchmarks/concurrency.py [--world tiny] [--budget 12] [--seed 0] [--seeds 1]
       [--ks 1 2 4 8] [--no-two-workers] [--no-truth] [--workdir DIR] [--out FILE]

For each K the real loop (``run_loop``: brainstorm, develop, verify, staged A/B, learn, SGPO
as shipped) runs ``--budget`` experiments on a fresh workspace of ``--world`` with
``concurrency.max_in_flight = K``; the sandbox is built before the clock starts. Then two
``agentx run`` worker processes (K = 4 each, seeds ``seed`` and ``seed + 1``) share one
``chroma run`` server and one PostgreSQL cluster started on 127.0.0.1 for the benchmark.

Reported per K: wall time, experiments counted in the budget, experiments per hour, the
largest wave, the true lift of the final shipped state against the origin (the simulator's
ground truth over its horizon) and true lift per hour. The efficacy column is what K costs
in learning: experiments of a wave are chosen before their neighbours' outcomes are known.
With ``--seeds N`` every K runs seeds ``seed .. seed + N - 1``: throughput is the seeds'
experiments over their summed wall time, the true lift their mean (with its spread, so a
drop with K can be told from noise).

``--no-truth`` runs the loop with ``ground_truth = false``: no verdict asks the simulator for
its treatment's ground truth, as on a real target, which has no oracle. On ``default`` that
truth (the treatment serving everyone for the pre-period and the 28-day horizon) is over half
of an experiment's CPU and the same at every K, so it bounds what K can gain. The true lift
of the final shipped state is still measured, after the clock stops.

Prints a table and writes ``benchmarks/results/concurrency.json`` with the keys
``experiments_per_hour`` {"1": x, ...}, ``two_workers``, ``true_lift_per_hour`` {...} and a
``detail`` section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agentx.agents.evaluation.cumulative import origin_commit
from agentx.graph.resources import build_resources
from agentx.runner import run_loop
from agentx.sandbox.target import SandboxTarget
from agentx.settings import Settings, load_settings
from agentx.summary import RunSummary
from agentx.workspace import git

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "concurrency.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="tiny")
    parser.add_argument("--budget", type=int, default=12, help="Experiments per run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="Runs per K: seed, seed + 1, ...")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--no-two-workers", action="store_true")
    parser.add_argument(
        "--no-truth", action="store_true", help="No ground truth at the verdicts (see above)."
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keep workspaces here.")
    parser.add_argument("--out", type=Path, default=RESULTS, help="The results JSON.")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.budget < 1 or not args.ks or min(args.ks) < 1:
        parser.error("--seeds, --budget and every K must be at least 1")
    return args


def _settings(workspace: Path, args: argparse.Namespace, k: int, seed: int) -> Settings:
    return load_settings(
        world=args.world,
        seed=seed,
        iterations=args.budget,
        workspace=workspace,
        concurrency={"max_in_flight": k},
        ground_truth=not args.no_truth,
    )


def true_lift(settings: Settings, north_star: str) -> float:
    """Ground truth of the workspace's baseline now against its origin (relative); then the
    sandbox's cached models are removed (up to 1.6 GB a workspace on `default`: a sweep
    over K, seeds and workers would fill the disk)."""
    target = build_resources(settings).target
    try:
        return _true_lift(target, settings, north_star)
    finally:
        target.models.clear()


def _true_lift(target: SandboxTarget, settings: Settings, north_star: str) -> float:
    repo = target.repo_path
    origin = origin_commit(repo)
    if git.head(repo) == origin:
        return 0.0
    where = settings.workspace / "origin-worktree"
    git.remove_worktree(repo, where)
    git.git(repo, "worktree", "add", "--detach", str(where), origin)
    try:
        before = target.truth_of(where)[north_star]
        after = target.truth_of(repo)[north_star]
    finally:
        git.remove_worktree(repo, where)
    return after / before - 1.0


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (``/proc/stat``, all cores).

    Over a run, busy seconds / wall seconds (``cores_busy``) say how much of the machine
    the run used: a K = 1 run that already keeps 1.2 of 2 cores busy can gain at most
    2 / 1.2 from K. Machine-wide because the arms' CPU cannot be counted per process tree
    (a confined arm's sandbox is killed, not waited for, so its rusage never reaches us);
    it therefore includes whatever else the machine runs: read it on a quiet machine.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def counted(summary: RunSummary) -> int:
    """Experiments that count in the budget (an infrastructure deferral does not)."""
    return sum(line.status != "deferred" for line in summary.experiments)


def largest_wave(summary: RunSummary) -> int:
    """The most experiments that ran side by side (from their traffic shares)."""
    shares = [line.traffic_share for line in summary.experiments]
    return max((round(1.0 / share) for share in shares), default=0)


def run_k(args: argparse.Namespace, root: Path, k: int, seed: int) -> dict[str, Any]:
    """One loop run at ``K = k`` on ``seed``; its measurements."""
    settings = _settings(root / f"k{k}-s{seed}", args, k, seed)
    build_resources(settings)  # the sandbox (world, repository, logs) before the clock
    cpu_before = busy_cpu_seconds()
    started = time.perf_counter()
    summary = run_loop(settings)
    wall = time.perf_counter() - started
    cpu = busy_cpu_seconds() - cpu_before
    return {
        "seed": seed,
        "wall_s": round(wall, 1),
        "experiments": counted(summary),
        "largest_wave": largest_wave(summary),
        "busy_cpu_s": round(cpu, 1),
        "kept": summary.funnel.get("kept", 0),
        "retests": summary.funnel.get("retests", 0),
        "true_lift": round(true_lift(settings, settings.north_star), 6),
    }


def k_row(k: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One K over its seeds: throughput from summed experiments and wall time, the mean
    true lift and its spread."""
    wall = sum(run["wall_s"] for run in runs)
    lifts = [run["true_lift"] for run in runs]
    mean_lift = statistics.fmean(lifts)
    return {
        "k": k,
        "wall_s": round(wall, 1),
        "experiments": sum(run["experiments"] for run in runs),
        "experiments_per_hour": round(sum(run["experiments"] for run in runs) / wall * 3600, 1),
        "largest_wave": max(run["largest_wave"] for run in runs),
        "busy_cpu_s": round(sum(run["busy_cpu_s"] for run in runs), 1),
        "cores_busy": round(sum(run["busy_cpu_s"] for run in runs) / wall, 2),
        "kept": sum(run["kept"] for run in runs),
        "retests": sum(run["retests"] for run in runs),
        "true_lift": round(mean_lift, 6),
        "true_lift_sd": round(statistics.stdev(lifts), 6) if len(lifts) > 1 else None,
        "true_lift_per_hour": round(mean_lift / (wall / len(runs)) * 3600.0, 6),
        "seeds": runs,
    }


def run_two_workers(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Two ``agentx run`` processes at K = 4 sharing a Chroma server and a Postgres."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import postgres_cluster
    from servers import chroma_server

    env = {
        **os.environ,
        "AGENTX_CONCURRENCY__MAX_IN_FLIGHT": "4",
        "AGENTX_GROUND_TRUTH": "false" if args.no_truth else "true",
    }
    workspaces = [root / "worker-a", root / "worker-b"]
    seeds = [args.seed, args.seed + 1]
    targets = [  # each worker's sandbox, built before the clock
        build_resources(_settings(workspace, args, 4, seed)).target
        for workspace, seed in zip(workspaces, seeds, strict=True)
    ]
    with ExitStack() as stack:
        dsn = stack.enter_context(postgres_cluster())
        chroma = stack.enter_context(chroma_server(root / "chroma", env))
        shared = {
            **env,
            "AGENTX_MEMORY__CHROMA_URL": chroma,
            "AGENTX_CHECKPOINTER": "postgres",
            "AGENTX_POSTGRES__DSN": dsn,
        }
        cpu_before = busy_cpu_seconds()
        started = time.perf_counter()
        workers = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "agentx.cli.app", "run", "--world", args.world),
                    *("--iterations", str(args.budget), "--seed", str(seed)),
                    *("--workspace", str(workspace), "--json"),
                ],
                env=shared,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for workspace, seed in zip(workspaces, seeds, strict=True)
        ]
        outputs = [worker.communicate() for worker in workers]
        wall = time.perf_counter() - started
        cpu = busy_cpu_seconds() - cpu_before
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        if worker.returncode != 0:
            raise SystemExit(f"a worker failed: {stderr.strip().splitlines()[-1:]}")
    summaries = [RunSummary.model_validate_json(stdout) for stdout, _ in outputs]
    n = sum(counted(summary) for summary in summaries)
    for target in targets:  # their disk (see true_lift)
        target.models.clear()
    return {
        "wall_s": round(wall, 1),
        "experiments": n,
        "experiments_per_hour": round(n / wall * 3600.0, 1),
        "busy_cpu_s": round(cpu, 1),
        "cores_busy": round(cpu / wall, 2),
    }


def _lift(row: dict[str, Any]) -> str:
    spread = row["true_lift_sd"]
    return f"{row['true_lift']:+.2%}" + (f" ± {spread:.2%}" if spread is not None else "")


def print_table(rows: list[dict[str, Any]], workers: dict[str, Any] | None) -> None:
    table = Table(title="Experiments in flight (K)")
    for column in ("K", "wall s", "experiments", "exp/hour", "speed-up", "largest wave",
                   "cores busy", "kept", "true lift", "lift/hour"):  # fmt: skip
        table.add_column(column, justify="right")
    base = next((r["experiments_per_hour"] for r in rows if r["k"] == 1), None)
    for r in rows:
        speedup = f"{r['experiments_per_hour'] / base:.2f}x" if base else "-"
        table.add_row(
            str(r["k"]), f"{r['wall_s']:.0f}", str(r["experiments"]),
            f"{r['experiments_per_hour']:.0f}", speedup, str(r["largest_wave"]),
            f"{r['cores_busy']:.2f}", str(r["kept"]), _lift(r),
            f"{r['true_lift_per_hour']:+.2%}",
        )  # fmt: skip
    if workers:
        speedup = f"{workers['experiments_per_hour'] / base:.2f}x" if base else "-"
        table.add_row(
            "2 workers x 4", f"{workers['wall_s']:.0f}", str(workers["experiments"]),
            f"{workers['experiments_per_hour']:.0f}", speedup, "",
            f"{workers['cores_busy']:.2f}", "", "", "",
        )  # fmt: skip
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        if args.workdir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agentx-conc-")))
        else:
            root = args.workdir
            root.mkdir(parents=True, exist_ok=True)
        seeds = range(args.seed, args.seed + args.seeds)
        rows = [k_row(k, [run_k(args, root, k, seed) for seed in seeds]) for k in args.ks]
        workers = None if args.no_two_workers else run_two_workers(args, root)
    print_table(rows, workers)
    result = {
        "experiments_per_hour": {str(r["k"]): r["experiments_per_hour"] for r in rows},
        "two_workers": workers["experiments_per_hour"] if workers else None,
        "true_lift_per_hour": {str(r["k"]): r["true_lift_per_hour"] for r in rows},
        "detail": {
            "world": args.world,
            "budget": args.budget,
            "seed": args.seed,
            "seeds": args.seeds,
            "ground_truth": not args.no_truth,
            "runs": rows,
            "two_workers": workers,
            "load_average": os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
