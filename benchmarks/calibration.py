"""Is the sandbox a proving ground a recommender engineer would believe?

Usage: python benchmarks/calibration.py [--world default] [--world tiny ...] [--quick]

For each world, on ground truth over the truth horizon, relative to the baseline:

* a uniformly random slate and a popularity-only slate (both must lose clearly);
* every catalog technique at its default parameters: its true north-star effect, whether it
  is a true win (north star up, no guardrail harmed beyond its tolerance), whether it wins
  the north star while breaking a guardrail, and whether it shows a novelty effect
  (positive over the first 3 days, not positive at the horizon);
* power: the chance that the full stage at default traffic detects a +1% north-star effect
  (two-sided 5%), from the per-user variance of an A/A readout of the whole staged rollout
  (CUPED on the pre-period, as the Evaluation Agent does);
* which techniques' signs the worlds disagree on.

Prints a table per world and writes benchmarks/results/calibration.json:
``{"<world>": {"random_slate": r, "popularity_slate": r, "techniques": {"<id>": r, ...},
"median_abs_effect": r, "win_share": s, "power_1pct": s, "novelty": ["<id>", ...]}}``
(r relative effects, s shares in [0, 1]), plus a few extra keys per world and a
``"_disagreements"`` list. A world whose baseline loses to the random or popularity slate
is reported as REFUSED: it must not ship.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agentx.agents.brainstorm.agent import feasible
from agentx.agents.evaluation.rollout import earlier_stages, stage_assignment, stage_seed
from agentx.agents.evaluation.truth import classify_truth
from agentx.research.catalog import load_catalog
from agentx.sandbox.calibration import REFERENCE_SLATES
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world
from agentx.settings import load_settings
from agentx.stats import compare_metric, power_two_sample
from agentx.workspace import git
from agentx.workspace.edits import apply_edits

RESULTS = Path(__file__).parent / "results" / "calibration.json"
NORTH_STAR = "watch_time"
NOVELTY_DAYS = 3


def variant(target: SandboxTarget, name: str, edit) -> Path:
    """A worktree of the baseline with ``edit(path)`` applied (created once)."""
    path = target.root / "calibration" / name
    if not path.exists():
        git.add_worktree(target.repo_path, path, f"calibration/{name}")
        edit(path)
    return path


def early_effect(target: SandboxTarget, path: Path, days: int) -> float:
    treated = target.truth_series(path)[:days]
    base = target.truth_series(target.repo_path)[:days]
    return sum(treated) / sum(base) - 1.0


def power_1pct(target: SandboxTarget, world: str, seed: int = 0) -> dict[str, float]:
    """Power of the full stage for a +1% north-star effect, from an A/A staged rollout of
    ``world``'s default stages (its own rollout shares, if it declares them)."""
    settings = load_settings(workspace=target.root / "settings-unused", world=world, seed=seed)
    stage = settings.stages[-1]
    users = target.user_ids()
    experiment = f"calibration-aa-{seed}"
    control = target.launch("control", target.repo_path)
    twin = target.launch("treatment", target.repo_path)
    readout = target.collect(
        control,
        twin,
        stage_assignment(users, experiment, stage.treatment_share),
        days=stage.days,
        seed=stage_seed(seed, experiment, stage.name),
        earlier=earlier_stages(users, stage, experiment, settings),
    )
    c = readout.metrics["control"][NORTH_STAR]
    t = readout.metrics["treatment"][NORTH_STAR]
    estimate = compare_metric(
        c, t, readout.pre["control"][NORTH_STAR], readout.pre["treatment"][NORTH_STAR]
    )
    n = min(c.size, t.size)
    sd = float(estimate.se) * np.sqrt(n / 2.0)
    power = power_two_sample(0.01 * float(np.mean(c)), sd, n, settings.alpha)
    return {
        "power": power,
        "n_per_arm": n,
        "cv": sd / float(np.mean(c)),
        "aa_relative": estimate.relative,
    }


def measure_world(world_name: str, root: Path, quick: bool, jobs: int = 2) -> dict:
    world = load_world(world_name)
    target = SandboxTarget.create(root / world.name, world)
    settings = load_settings(workspace=root / "settings-unused", world=world_name)
    started = time.perf_counter()
    slates = {name: variant(target, name, edit) for name, edit in REFERENCE_SLATES.items()}
    paths: dict[str, Path] = {}
    for technique in load_catalog().values():
        params = technique.default_params()
        if feasible(technique, params, target.repo_path):
            continue
        recipe = technique.render_recipe(params)
        paths[technique.id] = variant(
            target, technique.id, lambda p, edits=recipe: apply_edits(p, edits)
        )
    # each truth is about one core: computed side by side first, then read from the cache
    target.compute_truths([target.repo_path, *slates.values(), *paths.values()], jobs)
    base = target.truth_of(target.repo_path)
    out: dict = {"baseline": base}
    for name, path in slates.items():
        out[name] = target.ground_truth(path).relative[NORTH_STAR]
    techniques: dict[str, float] = {}
    detail: dict[str, dict] = {}
    for technique_id, path in paths.items():
        try:
            truth = target.ground_truth(path)
        except Exception as error:  # noqa: BLE001 - a recipe that fails online is reported
            print(f"  {technique_id}: failed ({str(error).splitlines()[0][:120]})")
            continue
        effect = truth.relative[NORTH_STAR]
        klass, harmed = classify_truth(truth.relative, NORTH_STAR, settings.guardrails, 0.0)
        early = early_effect(target, path, NOVELTY_DAYS)
        techniques[technique_id] = effect
        detail[technique_id] = {
            "effect": effect,
            "early": early,
            "win": effect > 0 and not harmed,
            "breaks": harmed,
            "guardrail_effects": {
                g.metric: truth.relative.get(g.metric) for g in settings.guardrails
            },
        }
        line = f"  {technique_id:28s} {effect:+.3%}  first {NOVELTY_DAYS} days {early:+.3%}"
        print(f"{line}  {harmed or ''}")
    effects = list(techniques.values())
    out["techniques"] = techniques
    out["median_abs_effect"] = statistics.median(abs(e) for e in effects) if effects else 0.0
    out["win_share"] = sum(d["win"] for d in detail.values()) / max(len(detail), 1)
    out["novelty"] = sorted(t for t, d in detail.items() if d["early"] > 0 and d["effect"] <= 0)
    out["north_star_win_breaking_guardrail"] = sorted(
        t for t, d in detail.items() if d["effect"] > 0 and d["breaks"]
    )
    out["detail"] = detail
    power = power_1pct(target, world_name)
    out["power_1pct"] = power["power"]
    out["power_detail"] = power
    out["refused"] = not (base and out["random_slate"] < 0 and out["popularity_slate"] < 0)
    out["seconds"] = time.perf_counter() - started
    return out


def print_table(name: str, row: dict) -> None:
    status = "REFUSED (baseline loses to a trivial slate)" if row["refused"] else "ok"
    print(f"\nworld {name}: {status}  ({row['seconds']:.0f} s)")
    print(f"  random slate            {row['random_slate']:+.2%}   (target <= -30%)")
    print(f"  popularity slate        {row['popularity_slate']:+.2%}   (target <= -10%)")
    print(f"  median |technique|      {row['median_abs_effect']:.2%}   (target <= 2%)")
    print(f"  true-win share          {row['win_share']:.0%}   (target 20-40%)")
    print(f"  wins NS, breaks a guard {row['north_star_win_breaking_guardrail']}   (target >= 1)")
    print(f"  novelty effects         {row['novelty']}   (target >= 1)")
    print(f"  power at +1% (full)     {row['power_1pct']:.0%}   (target 40-60%)")


def _minus(number: str) -> str:
    """A typographic minus for a formatted negative number, as the docs write them."""
    return number.replace("-", "−", 1) if number.startswith("-") else number


def markdown(results: dict) -> str:
    """The docs' tables (docs/sandbox.md, docs/techniques.md) from a results file."""
    worlds = [w for w in results if not w.startswith("_")]
    rows = [
        ("random slate", "random_slate", "{:+.1%}", "<= -30%"),
        ("popularity slate", "popularity_slate", "{:+.1%}", "<= -10%"),
        ("median abs technique effect", "median_abs_effect", "{:.2%}", "<= 2%"),
        ("true-win share", "win_share", "{:.0%}", "20-40%"),
        ("wins NS, breaks a guardrail", "north_star_win_breaking_guardrail", "{}", ">= 1"),
        ("novelty effects", "novelty", "{}", ">= 1"),
        ("power at +1% (full stage)", "power_1pct", "{:.0%}", "40-60%"),
    ]
    lines = ["| measure | " + " | ".join(worlds) + " | target |", "|---" * (len(worlds) + 2) + "|"]
    for label, key, fmt, target in rows:
        cells = []
        for w in worlds:
            value = results[w].get(key)
            if isinstance(value, list):
                cells.append(", ".join(f"`{v}`" for v in value) or "none")
            else:
                cells.append(_minus(fmt.format(value)) if value is not None else "·")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    techniques = sorted({t for w in worlds for t in results[w]["techniques"]})
    lines += [
        "",
        "| technique (default parameters) | "
        + " | ".join(worlds)
        + " | "
        + " | ".join(f"{w}: first {NOVELTY_DAYS} days" for w in worlds[:1])
        + f" | {worlds[0]}: guardrails beyond tolerance |",
        "|---" * (len(worlds) + 3) + "|",
    ]
    for t in techniques:
        cells = [
            _minus(f"{results[w]['techniques'][t]:+.2%}") if t in results[w]["techniques"] else "·"
            for w in worlds
        ]
        first = results[worlds[0]].get("detail", {}).get(t)
        early = _minus(f"{first['early']:+.2%}") if first else "·"
        breaks = ", ".join(first["breaks"]) if first and first["breaks"] else "–"
        lines.append(f"| `{t}` | " + " | ".join(cells) + f" | {early} | {breaks} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", action="append", help="world name or file (repeatable)")
    parser.add_argument("--workdir", type=Path, help="keep sandboxes here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--jobs", type=int, default=2, help="ground truths computed side by side (default 2)"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the docs' tables from the results file"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(RESULTS.read_text())))
        return
    worlds = args.world or ["default", "fresh", "niche"]
    measured: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        for name in worlds:
            print(f"world {name}")
            measured[name] = measure_world(name, root, args.quick, args.jobs)
            print_table(name, measured[name])
    # Merged at the end, so runs for different worlds can go side by side.
    results: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(measured)
    signs = {}
    for name, row in results.items():
        if name.startswith("_"):
            continue
        for technique, effect in row["techniques"].items():
            signs.setdefault(technique, {})[name] = np.sign(effect)
    results["_disagreements"] = sorted(
        t for t, by_world in signs.items() if len(set(by_world.values())) > 1
    )
    print(f"\nworlds disagree on the sign of: {results['_disagreements']}   (target >= 2)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
