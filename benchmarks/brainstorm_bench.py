"""Does the Brainstorm Agent's offline policy beat random choice of levers?

Usage: python benchmarks/brainstorm_bench.py [--world tiny] [--runs 40] [--iterations 6]

Every (technique, parameters) combination of the catalog that applies to the baseline is
implemented once in a worktree and its true effect on watch time computed by the
sandbox's ground truth. Then many simulated campaigns pick one combination per
iteration, observe a noisy measurement of its true effect (noise like an A/B readout),
keep it when the measurement is significant, and write a card to memory. The policy
campaigns use :func:`propose_batch` with that growing memory; random campaigns pick a
random untested combination. Prints the mean true gain of what each kept and the share of
harmful keeps; writes benchmarks/results/brainstorm-<world>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from agentx.agents.brainstorm.agent import feasible, propose_batch
from agentx.agents.brainstorm.evidence import EvidenceBundle
from agentx.agents.brainstorm.intake import parse_goal
from agentx.agents.brainstorm.policy import combo_key
from agentx.harness import load_harness
from agentx.models import KnowledgeCard, stable_id
from agentx.research.catalog import load_catalog
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import load_world
from agentx.workspace import git
from agentx.workspace.edits import apply_edits

NOISE_SD = 0.02


def true_effects(target: SandboxTarget, catalog) -> dict[str, tuple[str, dict, float]]:
    """Ground-truth watch-time effect of every applicable combination."""
    effects = {}
    for technique in catalog.values():
        options = [technique.default_params()]
        for param in technique.params:
            options += [{**technique.default_params(), param.name: v} for v in param.values]
        for params in options:
            key = combo_key(technique.id, params)
            if key in effects or feasible(technique, params, target.repo_path):
                continue
            path = target.root / "combos" / stable_id(key)
            if not path.exists():
                git.add_worktree(target.repo_path, path, f"combo/{stable_id(key)}")
                apply_edits(path, technique.render_recipe(params))
            try:
                effect = target.ground_truth(path).relative["watch_time"]
            except Exception as error:  # a recipe that crashes online: count as harmful
                print(f"  {key}: failed ({error})")
                effect = -1.0
            effects[key] = (technique.id, params, effect)
            print(f"  {key}: true {effect:+.3%}")
    return effects


def campaign(kind, effects, bundle, goal, repo, world, iterations, seed) -> list[float]:
    """True effects of what one campaign kept."""
    rng = np.random.default_rng(seed)
    harness = load_harness("brainstorm")
    cards: list[KnowledgeCard] = []
    kept: list[float] = []
    tested: set[str] = set()
    for iteration in range(iterations):
        if kind == "policy":
            filled = EvidenceBundle(
                system=bundle.system, data=bundle.data, catalog=bundle.catalog, cards=cards
            )
            batch, _ = propose_batch(
                goal, filled, repo, world, harness, np.random.default_rng([seed, iteration])
            )
            admitted = [
                p for p in batch if p.admitted and combo_key(p.technique, p.params) in effects
            ]
            if not admitted:
                break
            choice = combo_key(admitted[0].technique, admitted[0].params)
        else:
            options = sorted(set(effects) - tested)
            if not options:
                break
            choice = options[int(rng.integers(len(options)))]
        tested.add(choice)
        technique, params, truth = effects[choice]
        measured = truth + float(rng.normal(0.0, NOISE_SD))
        decision = "KEEP" if measured > 1.96 * NOISE_SD else "DISCARD"
        if decision == "KEEP":
            kept.append(truth)
        cards.append(
            KnowledgeCard(
                id=f"{seed}-{iteration}",
                kind="playbook" if decision == "KEEP" else "counterexample",
                title=choice,
                text=choice,
                technique=technique,
                lever="-",
                params=params,
                objective="watch_time",
                world=world,
                decision=decision,
                effect=measured,
                root_cause=None if decision == "KEEP" else "no_significance",
            )
        )
    return kept


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", default="tiny")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        target = SandboxTarget.create(Path(tmp), load_world(args.world))
        catalog = load_catalog()
        effects = true_effects(target, catalog)
        bundle = EvidenceBundle(
            system=target.describe(), data=target.analyse_data(), catalog=catalog
        )
        metrics = [m.name for m in target.describe().metrics]
        goal = parse_goal("raise watch time without hurting return visits", metrics, [])
        results = {}
        for kind in ("policy", "random"):
            gains, harmful, n_kept = [], 0, 0
            for run in range(args.runs):
                kept = campaign(
                    kind,
                    effects,
                    bundle,
                    goal,
                    target.repo_path,
                    args.world,
                    args.iterations,
                    seed=run,
                )
                gains.append(sum(kept))
                harmful += sum(1 for k in kept if k < 0)
                n_kept += len(kept)
            results[kind] = {
                "mean_true_gain": float(np.mean(gains)),
                "sd_true_gain": float(np.std(gains)),
                "kept_per_run": n_kept / args.runs,
                "harmful_keep_share": harmful / max(n_kept, 1),
            }
    best = sorted((e for _, _, e in effects.values()), reverse=True)
    oracle = float(sum(e for e in best[: args.iterations] if e > 0))
    print(
        f"brainstorm benchmark, world {args.world}: {len(effects)} combinations, "
        f"{args.runs} campaigns x {args.iterations} iterations "
        f"({time.perf_counter() - started:.0f} s)"
    )
    print(f"{'chooser':>8} {'mean true gain':>15} {'sd':>8} {'kept/run':>9} {'harmful keeps':>14}")
    for kind, row in results.items():
        print(
            f"{kind:>8} {row['mean_true_gain']:>+15.2%} {row['sd_true_gain']:>8.2%} "
            f"{row['kept_per_run']:>9.2f} {row['harmful_keep_share']:>14.1%}"
        )
    print(f"{'oracle':>8} {oracle:>+15.2%}  (sum of the best positive combinations)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"brainstorm-{args.world}.json"
    path.write_text(
        json.dumps(
            {"world": args.world, "combinations": len(effects), "oracle": oracle, **results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
