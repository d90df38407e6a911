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
"z": x, "mean_enrolled_earlier": r, "mean_enrolled_at_full": r}}}`` (r relative north-star
effects; z = (mean - truth) / se_mean; the last two split the same readouts by whether
their users were enrolled by an earlier stage or by the full stage).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from efficacylib.space import all_options, recipe
from efficacylib.states import StateStore
from rich.console import Console
from rich.table import Table

from agentx.agents.evaluation.rollout import earlier_stages, stage_assignment, stage_seed
from agentx.graph.resources import isolation_policy
from agentx.research.catalog import load_catalog
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world
from agentx.settings import Settings, load_settings
from agentx.stats import NOT_ENROLLED, compare_metric
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


@dataclass(frozen=True)
class FullStageReading:
    """One full stage's relative north-star effect: all its users, and split by enrolment
    (users already in an earlier stage, users the full stage enrolled)."""

    everyone: float
    enrolled_earlier: float | None
    enrolled_at_full: float | None


def full_stage_estimate(
    target: SandboxTarget, settings: Settings, control: Path, treated: Path, experiment: str
) -> FullStageReading:
    """The relative north-star effect one full stage of ``settings``' stages reads (CUPED on
    the pre-period)."""
    seed = settings.seed
    stage, users, north = settings.stages[-1], target.user_ids(), settings.north_star
    arms = (target.launch("control", control), target.launch("treatment", treated))
    earlier = earlier_stages(users, stage, experiment, settings)
    try:
        readout = target.collect(
            *arms,
            stage_assignment(users, experiment, stage.treatment_share),
            days=stage.days,
            seed=stage_seed(seed, experiment, stage.name),
            earlier=earlier,
        )
    finally:
        target.rollback(arms[1])  # stops the rollout's live arm processes
    if readout.errors:
        raise SystemExit(f"an arm failed: {readout.errors}")
    before = np.zeros(users.size, dtype=bool)
    for traffic in earlier:
        before |= np.asarray(traffic.assignment) != NOT_ENROLLED

    def effect(keep_control: np.ndarray, keep_treatment: np.ndarray) -> float | None:
        if keep_control.sum() < 2 or keep_treatment.sum() < 2:
            return None
        c, t = readout.metrics["control"][north], readout.metrics["treatment"][north]
        pre_c, pre_t = readout.pre["control"][north], readout.pre["treatment"][north]
        estimate = compare_metric(
            c[keep_control], t[keep_treatment], pre_c[keep_control], pre_t[keep_treatment]
        )
        return float(estimate.relative)

    early = {arm: before[readout.users[arm]] for arm in ("control", "treatment")}
    everyone = effect(np.ones_like(early["control"]), np.ones_like(early["treatment"]))
    assert everyone is not None
    return FullStageReading(
        everyone=everyone,
        enrolled_earlier=effect(early["control"], early["treatment"]),
        enrolled_at_full=effect(~early["control"], ~early["treatment"]),
    )


def run(args: argparse.Namespace, root: Path) -> dict[str, dict]:
    world = load_world(args.world)
    settings = load_settings(workspace=root / "unused", world=args.world, seed=args.seed)
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
        readings = [
            full_stage_estimate(target, settings, original, treated, f"agree-{label}-{i}")
            for i in range(args.runs)
        ]
        measured = [reading.everyone for reading in readings]
        truth = target.ground_truth(treated).relative[settings.north_star]
        mean = statistics.fmean(measured)
        se = statistics.stdev(measured) / len(measured) ** 0.5 if len(measured) > 1 else None
        results[label] = {
            "truth": truth,
            "measured": measured,
            "mean": mean,
            "se_mean": se,
            "z": (mean - truth) / se if se else None,
            # the same readouts split by when their users were enrolled: a gap between
            # the two says the staging itself shapes the reading
            "mean_enrolled_earlier": _mean_of(r.enrolled_earlier for r in readings),
            "mean_enrolled_at_full": _mean_of(r.enrolled_at_full for r in readings),
        }
        print(f"  {label}: truth {truth:+.2%}, mean of {len(measured)} readouts {mean:+.2%}")
    return {world.name: results}


def _mean_of(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def print_table(results: dict[str, dict]) -> None:
    for world, rows in results.items():
        table = Table(title=f"A/B full stage against ground truth, {world}")
        columns = ("option", "truth", "mean measured", "se of mean", "z", "readouts")
        for column in (*columns, "enrolled earlier", "enrolled at full"):
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
                _percent(row.get("mean_enrolled_earlier")),
                _percent(row.get("mean_enrolled_at_full")),
            )
        Console(width=150).print(table)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2%}"


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
