"""Does a staged A/B measure, on average, what the ground truth says a change does?

Usage: python benchmarks/ab_agreement.py [--world default] [--runs 4] [--seed 0]
       [--options "ips_debiasing(max_weight=5.0)" ...] [--workdir DIR]

The loop decides from A/B readouts and is scored on ground truth, so a sandbox whose A/Bs
were biased against its truth would turn the loop's false keeps into artefacts of the world.
For each option (a catalog technique at one parameter setting, applied by its recipe) the
full stage is read ``--runs`` times, each with its own traffic hash and stage seeds, after
the earlier stages in simulated time as in a rollout (no guard stops it: the readout is
what a full stage measures), with CUPED on the pre-period as the Evaluation Agent does. The
mean of those estimates is compared with the truth (one arm serving everyone over the truth
horizon). The windows differ on purpose: the truth is the change's lasting effect, the
readout two weeks of the full stage's users, so a novelty effect shows up as a gap.

Prints a table and writes ``benchmarks/results/ab_agreement.json``:
``{"<world>": {"<option>": {"truth": r, "measured": [r, ...], "mean": r, "se_mean": r,
"z": x}}}`` (r relative north-star effects; z = (mean - truth) / se_mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from efficacylib.space import all_options, recipe
from efficacylib.states import StateStore
from rich.console import Console
from rich.table import Table

from agentx.agents.evaluation.rollout import earlier_stages, stage_assignment, stage_seed
from agentx.graph.resources import isolation_policy
from agentx.research.catalog import load_catalog
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world
from agentx.settings import load_settings
from agentx.stats import compare_metric
from agentx.workspace import isolation

RESULTS = Path(__file__).resolve().parent / "results" / "ab_agreement.json"
DEFAULT_OPTIONS = ["ips_debiasing(max_weight=5.0)", "mf_embedding_dim(dim=12)"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="default")
    parser.add_argument("--runs", type=int, default=4, help="Full-stage readouts per option.")
    parser.add_argument("--seed", type=int, default=0, help="The sandbox's seed (its arms).")
    parser.add_argument("--options", nargs="+", default=DEFAULT_OPTIONS)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the sandbox here.")
    return parser.parse_args(argv)


def full_stage_estimate(
    target: SandboxTarget, control: Path, treated: Path, experiment: str, seed: int
) -> float:
    """The relative north-star effect one full stage reads (CUPED on the pre-period)."""
    settings = load_settings(workspace=target.root / "settings-unused", seed=seed)
    stage, users, north = settings.stages[-1], target.user_ids(), settings.north_star
    arms = (target.launch("control", control), target.launch("treatment", treated))
    try:
        readout = target.collect(
            *arms,
            stage_assignment(users, experiment, stage.treatment_share),
            days=stage.days,
            seed=stage_seed(seed, experiment, stage.name),
            earlier=earlier_stages(users, stage, experiment, settings),
        )
    finally:
        target.rollback(arms[1])  # stops the rollout's live arm processes
    if readout.errors:
        raise SystemExit(f"an arm failed: {readout.errors}")
    c, t = readout.metrics["control"][north], readout.metrics["treatment"][north]
    pre = readout.pre["control"][north], readout.pre["treatment"][north]
    return float(compare_metric(c, t, *pre).relative)


def run(args: argparse.Namespace, root: Path) -> dict[str, dict]:
    world = load_world(args.world)
    settings = load_settings(workspace=root / "unused", world=world.name, seed=args.seed)
    isolation.configure(isolation_policy(settings))
    isolation.require()
    catalog = load_catalog()
    options = {o.label: o for o in all_options(catalog)}
    unknown = [label for label in args.options if label not in options]
    if unknown:
        raise SystemExit(f"unknown option {', '.join(unknown)}; known: {', '.join(options)}")
    target = SandboxTarget.create(root / "sandbox", world, args.seed)
    states = StateStore(root / "states")
    original = states.adopt(target.repo_path)
    results: dict[str, dict] = {}
    for label in args.options:
        treated = states.with_edits(original, recipe(catalog, options[label]))
        measured = [
            full_stage_estimate(target, original, treated, f"agree-{label}-{i}", args.seed)
            for i in range(args.runs)
        ]
        truth = target.ground_truth(treated).relative[settings.north_star]
        mean = statistics.fmean(measured)
        se = statistics.stdev(measured) / len(measured) ** 0.5 if len(measured) > 1 else None
        results[label] = {
            "truth": truth,
            "measured": measured,
            "mean": mean,
            "se_mean": se,
            "z": (mean - truth) / se if se else None,
        }
        print(f"  {label}: truth {truth:+.2%}, mean of {len(measured)} readouts {mean:+.2%}")
    return {world.name: results}


def print_table(results: dict[str, dict]) -> None:
    for world, rows in results.items():
        table = Table(title=f"A/B full stage against ground truth, {world}")
        for column in ("option", "truth", "mean measured", "se of mean", "z", "readouts"):
            table.add_column(column, justify="left" if column == "option" else "right")
        for label, row in rows.items():
            se, z = row["se_mean"], row["z"]
            table.add_row(
                label,
                f"{row['truth']:+.2%}",
                f"{row['mean']:+.2%}",
                "–" if se is None else f"{se:.2%}",
                "–" if z is None else f"{z:+.2f}",
                " ".join(f"{m:+.2%}" for m in row["measured"]),
            )
        Console(width=150).print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="agentx-agree-") as root:
            results = run(args, Path(root))
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged.update(results)
    RESULTS.write_text(json.dumps(merged, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
