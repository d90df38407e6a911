"""Harness evolution (SGPO): what do its steps do over successive runs, and what do they cost?

Usage: python benchmarks/evolution_bench.py [--world tiny] [--seeds 0 1 2] [--runs 3]
                                            [--iterations 6] [--every 3]
                                            [--agents brainstorm evaluation]
                                            [--mistune score_weights.objective=0.2]

For every seed, two workspaces run the same sequence of loop runs (offline policy): one with
harness evolution on (one SGPO step every ``--every`` experiments, agents in turn), one with
it off. Successive runs in a workspace share its memory, sandbox baseline (kept changes stay
merged) and, with evolution on, the harness versions kept so far. Reported per run index:
the summed true north-star gain of what was kept (and which changes), harmful keeps, vetoes,
and SGPO outcomes; then the wall time of one replay of each agent's harness over the whole
archive. Writes benchmarks/results/evolution-<world>[-mistuned].json.

``--mistune FIELD=VALUE`` starts both workspaces from a deliberately mis-tuned Brainstorm
harness (committed as the active version before the first run): can SGPO recover from it?
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from agentx.evolution.graph import EVOLVABLE_AGENTS
from agentx.evolution.rubric import set_field
from agentx.evolution.store import HarnessStore
from agentx.graph.resources import build_resources
from agentx.runner import run_loop
from agentx.settings import load_settings


def mistune(workspace: Path, assignments: list[str]) -> None:
    """Make a mis-tuned Brainstorm harness the workspace's active version."""
    if not assignments:
        return
    store = HarnessStore(workspace / "harness")
    harness = copy.deepcopy(store.harness("brainstorm"))
    for assignment in assignments:
        field, _, value = assignment.partition("=")
        set_field(harness, field, float(value))
    store.commit("brainstorm", harness, {}, f"benchmark: mis-tuned {' '.join(assignments)}")


def campaign(workspace: Path, args: argparse.Namespace, seed: int, evolve: bool) -> list[dict]:
    """Run ``args.runs`` loop runs in one workspace; one row per run."""
    mistune(workspace, args.mistune)
    rows = []
    for index in range(args.runs):
        settings = load_settings(
            world=args.world,
            iterations=args.iterations,
            seed=seed,
            workspace=workspace,
            checkpointer="memory",
            evolution={"enabled": evolve, "every": args.every, "agents": args.agents},
        )
        started = time.perf_counter()
        summary = run_loop(settings)
        kept = [e for e in summary.experiments if e.status == "kept"]
        rows.append(
            {
                "seed": seed,
                "evolution": evolve,
                "run": index + 1,
                "seconds": round(time.perf_counter() - started, 1),
                "true_gain": round(sum(e.true_effect or 0.0 for e in kept), 6),
                "kept": len(kept),
                "harmful_keeps": sum((e.true_effect or 0.0) < 0 for e in kept),
                # which changes, so a harmful keep can be named from the JSON alone
                "kept_changes": [
                    {
                        "technique": e.technique,
                        "params": e.params,
                        "measured": e.measured_effect,
                        "true_effect": e.true_effect,
                    }
                    for e in kept
                ],
                "vetoed": sum(e.status == "vetoed" for e in summary.experiments),
                "sgpo": dict(Counter(s.outcome for s in summary.evolutions)),
                "versions": summary.harness_versions,
            }
        )
        print_row(rows[-1])
    return rows


def replay_cost(workspace: Path, args: argparse.Namespace, seed: int) -> dict[str, dict]:
    """Wall time of one replay of each agent's active harness over the archive."""
    settings = load_settings(world=args.world, seed=seed, workspace=workspace)
    resources = build_resources(settings)
    evolver = resources.evolver()
    runs = evolver.store.trajectories()
    cost = {}
    for agent in EVOLVABLE_AGENTS:
        started = time.perf_counter()
        score = evolver.replay(agent, evolver.store.harness(agent), runs)
        seconds = time.perf_counter() - started
        cost[agent] = {
            "tasks": score.tasks,
            "seconds": round(seconds, 3),
            "per_task_ms": round(1000 * seconds / max(score.tasks, 1), 1),
        }
    return cost


def print_row(row: dict) -> None:
    print(
        f"seed {row['seed']} {'SGPO on ' if row['evolution'] else 'SGPO off'} run {row['run']}: "
        f"true gain {row['true_gain']:+.2%}, kept {row['kept']}, harmful {row['harmful_keeps']}, "
        f"vetoed {row['vetoed']}, sgpo {row['sgpo'] or '-'}, {row['seconds']} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--agents", nargs="+", default=list(EVOLVABLE_AGENTS))
    parser.add_argument("--mistune", nargs="*", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    rows, costs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for evolve in (True, False):
                workspace = Path(tmp) / f"seed{seed}-{'on' if evolve else 'off'}"
                rows += campaign(workspace, args, seed, evolve)
            costs[seed] = replay_cost(Path(tmp) / f"seed{seed}-on", args, seed)
    print("\nmean over seeds, by run index")
    print(f"{'run':>3} | {'gain SGPO on':>12} | {'gain SGPO off':>13} | {'kept steps':>10}")
    table = []
    for index in range(1, args.runs + 1):
        on = [r for r in rows if r["run"] == index and r["evolution"]]
        off = [r for r in rows if r["run"] == index and not r["evolution"]]
        line = {
            "run": index,
            "gain_on": sum(r["true_gain"] for r in on) / len(on),
            "gain_off": sum(r["true_gain"] for r in off) / len(off),
            "kept_steps": sum(r["sgpo"].get("kept", 0) for r in on),
            "steps": sum(sum(r["sgpo"].values()) for r in on),
        }
        table.append(line)
        print(
            f"{index:>3} | {line['gain_on']:>+12.2%} | {line['gain_off']:>+13.2%} | "
            f"{line['kept_steps']:>4} of {line['steps']:<3}"
        )
    print("\nreplay cost of one harness over the archive (after the last run)")
    for seed, cost in costs.items():
        for agent, item in cost.items():
            print(
                f"seed {seed} {agent:<10}: {item['tasks']:>3} tasks, {item['seconds']:.2f} s "
                f"({item['per_task_ms']} ms/task)"
            )
    suffix = "-mistuned" if args.mistune else ""
    out = Path(__file__).parent / "results" / f"evolution-{args.world}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "runs": rows, "table": table, "replay": costs}, indent=2)
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
