"""How often does a staged A/A rollout look significant, alone and on a wave's slice?

Usage: python benchmarks/aa_false_positives.py [--world default] [--seeds 20]
       [--slices 1 3] [--workdir DIR]

Both arms serve the baseline's code; each learns only from the users it serves (the closed
loop). For every seed and slice size (1 = all the traffic; n = one of n experiments of a
wave, ``capacity.layer_slots``) the shipped stages run through the Evaluation Agent's
``run_rollout`` and the final stage's north-star test is read. A correct test rejects in
about ``alpha`` of the seeds; more means noise the per-user standard error does not hold
(e.g. the two arms' models drifting apart as each learns from its own slice).

Prints a table and writes ``benchmarks/results/aa_false_positives.json``:
``{"<slices>": {"rejections": n, "seeds": n, "rate": s, "sd_effect": r, "effects": [r, ...],
"p_values": [p, ...]}}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentx.agents.evaluation.capacity import layer_slots
from agentx.agents.evaluation.rollout import run_rollout
from agentx.graph.resources import build_resources
from agentx.settings import load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "aa_false_positives.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="default")
    parser.add_argument("--seeds", type=int, default=20, help="Seeds 0..N-1 per slice size.")
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the workspace here.")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, workspace: Path) -> dict[str, dict]:
    settings = load_settings(world=args.world, workspace=workspace, autonomous=True)
    target = build_resources(settings).target
    results: dict[str, dict] = {}
    for n in args.slices:
        effects, p_values = [], []
        for seed in range(args.seeds):
            slot = layer_slots(f"aa-{seed}", n)[0] if n > 1 else None
            control = target.launch("control", target.repo_path)
            treatment = target.launch("treatment", target.repo_path)
            rollout = run_rollout(
                target, control, treatment, f"aa-{n}-{seed}",
                settings.model_copy(update={"seed": seed}), rollback=False, slot=slot,
            )  # fmt: skip
            target.rollback(treatment)  # stop this rollout's arms (about 1 GB each at 200k)
            final = rollout.stages[-1]
            north = next(e for e in final.effects if e.metric == settings.north_star)
            effects.append(round(north.relative, 6))
            p_values.append(round(north.p_value, 6))
            print(f"slices {n} seed {seed}: {north.relative:+.3%} p={north.p_value:.3f}")
        rejections = sum(p < settings.alpha for p in p_values)
        results[str(n)] = {
            "rejections": rejections,
            "seeds": len(p_values),
            "rate": rejections / len(p_values),
            "sd_effect": statistics.stdev(effects) if len(effects) > 1 else 0.0,
            "effects": effects,
            "p_values": p_values,
        }
    return results


def print_table(results: dict[str, dict], alpha: float) -> None:
    table = Table(title=f"A/A rejections at alpha {alpha:g}")
    for column in ("traffic", "seeds", "rejections", "rate", "sd of effect"):
        table.add_column(column, justify="right")
    for n, row in results.items():
        share = "all" if n == "1" else f"1/{n}"
        table.add_row(
            share, str(row["seeds"]), str(row["rejections"]), f"{row['rate']:.0%}",
            f"{row['sd_effect']:.3%}",
        )  # fmt: skip
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seeds < 1 or any(n < 1 for n in args.slices):
        raise SystemExit("--seeds and --slices must be positive")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, args.workdir / "ws")
    else:
        with tempfile.TemporaryDirectory(prefix="agentx-aa-") as root:
            results = run(args, Path(root) / "ws")
    print_table(results, load_settings(world=args.world).alpha)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
