"""Does the loop improve a recommender with few experiments and no harm, against what users
would run instead? End to end, on ground truth.

Usage:
    python benchmarks/efficacy.py [--worlds tiny default ...] [--seeds 5] [--budget 20]
        [--strategies agentx random tpe ...] [--workdir DIR] [--quick] [--out FILE]

Every strategy gets the same experiment budget, the same staged rollout (canary, ramp,
full), the same guardrails and the same verdict rule (the shipped ``Settings`` and the
bundled Evaluation harness), on every world and seed:

* ``agentx``: the loop as shipped, offline (no model), SGPO on, via ``run_loop``;
* ``agentx_no_sgpo``: the same with harness evolution off;
* ``agentx_prefilled``: the shipped loop whose memory holds the cards of an earlier
  ``agentx`` run on another seed (the next seed of ``--seeds``, cyclically; seed + 1000
  when only one seed runs);
* ``random``: sequential random search over the catalog's options, each a real staged A/B
  against the running baseline, KEEPs merged (:mod:`efficacylib.search`);
* ``tpe`` / ``tpe_3x``: Optuna TPE over whole configurations (one categorical per conflict
  group), each trial a real staged A/B against the original baseline, shipping the best
  trial that passed its guardrails; ``tpe_3x`` has three times the budget;
* ``ceiling``: greedy forward selection directly on ground truth (a lower bound on the true
  optimum, :mod:`efficacylib.ceiling`), or a strategy's shipped state if one is better.

Ground truth comes from one judge sandbox per world (arms seeded 0), never seen by the
strategies. Definitions of true lift, harmful launch, false keep, missed win and
experiments to X% of the ceiling are in :mod:`efficacylib.scoring` and docs/benchmarks.md.

Prints a table per world and writes ``benchmarks/results/efficacy.json``:
``{"<world>": {"<strategy>": {"lift_mean": r, "lift_min": r, "lift_max": r,
"pct_of_ceiling": s, "harmful": n, "false_keeps": n, "missed_wins": n, "to_50pct": n|null,
"to_90pct": n|null, "s_per_experiment": x}}}`` plus a ``"_detail"`` key (configuration,
the ceiling's path, per-seed lifts, notes). ``--workdir`` keeps sandboxes, traces and
ground truths, so an interrupted or repeated run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from efficacylib.ceiling import Ceiling, greedy_ceiling
from efficacylib.judge import Judge
from efficacylib.loop import run_agentx
from efficacylib.scoring import RunScore, ceiling_row, judged_states, row, score_run
from efficacylib.search import random_search, tpe_search
from efficacylib.space import all_options
from efficacylib.states import StateStore
from efficacylib.trace import RunTrace
from rich.console import Console
from rich.table import Table

from agentx.agents.evaluation.policy import load_policy
from agentx.graph.resources import isolation_policy
from agentx.research.catalog import load_catalog
from agentx.runner import RunError
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldError, load_world, shipped_worlds
from agentx.settings import SettingsError, load_settings
from agentx.target.contract import TargetError
from agentx.workspace import isolation

RESULTS = Path(__file__).parent / "results" / "efficacy.json"
SEARCHED = ["agentx", "agentx_no_sgpo", "agentx_prefilled", "random", "tpe", "tpe_3x"]
STRATEGIES = [*SEARCHED, "ceiling"]
QUICK = {"worlds": ["tiny"], "seeds": 1, "budget": 2, "ceiling_pool": "tested", "ceiling_rounds": 1}
console = Console(width=150)


class BenchmarkError(RuntimeError):
    """Bad input or a missing dependency; the message is the one line to show."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags; ``--quick`` fills whatever was not given with a tiny smoke configuration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", help="shipped world names (default: all)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per world (default 5)")
    parser.add_argument("--budget", type=int, help="experiments per strategy (default 20)")
    parser.add_argument(
        "--strategies", nargs="+", help=f"subset of {', '.join(STRATEGIES)} (default: all)"
    )
    parser.add_argument("--workdir", type=Path, help="keep sandboxes, traces and truths here")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results JSON")
    parser.add_argument(
        "--ceiling-pool",
        choices=["catalog", "tested"],
        help="options the greedy ceiling searches: the whole catalog (default) or only "
        "those a strategy tested as a single change (cheap; for smoke runs)",
    )
    parser.add_argument("--ceiling-rounds", type=int, help="greedy rounds (default: until no gain)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    parser.add_argument(
        "--markdown", action="store_true", help="print --out's tables as markdown; run nothing"
    )
    args = parser.parse_args(argv)
    defaults = {
        "worlds": sorted(shipped_worlds()),
        "seeds": 5,
        "budget": 20,
        "ceiling_pool": "catalog",
        "ceiling_rounds": None,
    }
    for key, value in (QUICK if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.strategies = args.strategies or list(STRATEGIES)
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        known = ", ".join(STRATEGIES)
        raise BenchmarkError(f"unknown strategy {', '.join(unknown)}; known: {known}")
    if args.seeds < 1 or args.budget < 1:
        raise BenchmarkError("--seeds and --budget must be at least 1")
    if args.ceiling_rounds is not None and args.ceiling_rounds < 0:
        raise BenchmarkError("--ceiling-rounds must not be negative")
    if {"tpe", "tpe_3x"} & set(args.strategies):
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise BenchmarkError(
                "the tpe strategies need optuna: pip install -e '.[bench]'"
            ) from None
    return args


class WorldRun:
    """Everything one world's strategies share: judge, states, A/B sandboxes, traces."""

    def __init__(self, name: str, root: Path, budget: int):
        self.world = load_world(name)
        self.name = self.world.name
        self.root = root / self.name
        self.budget = budget
        self.settings = load_settings(workspace=self.root / "unused", world=self.name)
        self.policy = load_policy()
        # Arms run confined as in the loop (an offline run executes only shipped code);
        # refuse in one line before anything runs when the OS sandbox cannot start.
        isolation.configure(isolation_policy(self.settings))
        isolation.require()
        self.catalog = load_catalog()
        self.states = StateStore(self.root / "states")
        self.judge = Judge(self.world, self.root / "judge", self.settings, self.policy)
        self.original = self.states.adopt(self.judge.original)
        self._targets: dict[int, SandboxTarget] = {}

    def target(self, seed: int) -> SandboxTarget:
        """The sandbox random and TPE run their A/Bs in (arms seeded as the loop's)."""
        if seed not in self._targets:
            root = self.root / f"ab-s{seed}"
            self._targets[seed] = SandboxTarget.create(root, self.world, seed)
        return self._targets[seed]

    def free_ab_models(self) -> None:
        """Remove the A/B sandboxes' trained models once every search has run (their truth
        records stay for the judge); the judge keeps its own for the ceiling."""
        for target in self._targets.values():
            target.models.clear()

    def workspace(self, strategy: str, seed: int) -> Path:
        """The loop's workspace of one strategy and seed."""
        return self.root / "workspaces" / f"{strategy}-s{seed}-b{self.budget}"

    def trace(self, strategy: str, seed: int, earlier_seed: int | None = None) -> RunTrace:
        """Run (or load from ``--workdir``) one strategy at one seed."""
        cache = self.root / "traces" / f"{strategy}-s{seed}-b{self.budget}.json"
        if cache.exists():
            trace = RunTrace.load(cache)
            if all(Path(s).exists() for s in [trace.original, *trace.shipped]):
                return trace
        trace = self._run(strategy, seed, earlier_seed)
        trace.save(cache)
        return trace

    def _run(self, strategy: str, seed: int, earlier_seed: int | None) -> RunTrace:
        budget, workspace = self.budget, self.workspace(strategy, seed)
        if strategy in ("agentx", "agentx_no_sgpo"):
            sgpo = strategy == "agentx"
            return run_agentx(strategy, self.name, seed, budget, workspace, self.states, sgpo=sgpo)
        if strategy == "agentx_prefilled":
            earlier = self.workspace("agentx", earlier_seed)
            if not (earlier / "memory").is_dir():  # its trace may be cached without it
                cache = self.root / "traces" / f"agentx-s{earlier_seed}-b{budget}.json"
                self._run("agentx", earlier_seed, None).save(cache)
            return run_agentx(
                strategy, self.name, seed, budget, workspace, self.states, prefill_from=earlier
            )
        settings = load_settings(workspace=workspace, world=self.name, seed=seed)
        args = (self.target(seed), self.catalog, self.original, self.states, settings, self.policy)
        if strategy == "random":
            return random_search(*args, budget, seed)
        factor = 3 if strategy == "tpe_3x" else 1
        return tpe_search(*args, factor * budget, seed, name=strategy)

    def ceiling(self, traces: list[RunTrace], pool: str, rounds: int | None) -> Ceiling:
        """Greedy search on ground truth, or a strategy's state when that one is better."""
        options = all_options(self.catalog)
        if pool == "tested":
            tested = {t.option_key for trace in traces for t in trace.trials if t.option_key}
            options = [o for o in options if o.key in tested]
        best = greedy_ceiling(self.judge, self.catalog, options, self.states, rounds)
        for trace in traces:
            final = Path(trace.final)
            lift = self.judge.lift(final)
            if lift is None or lift <= best.lift or self.judge.classify(final)[0] == "harmful":
                continue
            best.state, best.lift = str(final), lift
            best.source = f"{trace.strategy} seed {trace.seed}"
        return best


def run_world(name: str, args: argparse.Namespace, root: Path) -> tuple[dict, dict]:
    """Every strategy on every seed of one world; the rows and their detail."""
    started = time.perf_counter()
    world = WorldRun(name, root, args.budget)
    seeds = list(range(args.seeds))
    searched = [s for s in SEARCHED if s in args.strategies]
    traces: dict[str, list[RunTrace]] = {}
    for strategy in searched:
        for index, seed in enumerate(seeds):
            earlier = seeds[(index + 1) % len(seeds)] if len(seeds) > 1 else seed + 1000
            run_started = time.perf_counter()
            trace = world.trace(strategy, seed, earlier)
            traces.setdefault(strategy, []).append(trace)
            console.print(
                f"  {world.name} {strategy:17s} seed {seed}: {len(trace.trials)} experiments, "
                f"{sum(t.launched for t in trace.trials)} launched "
                f"({time.perf_counter() - run_started:.0f} s)",
                markup=False,
            )
    world.free_ab_models()
    all_traces = [t for ts in traces.values() for t in ts]
    sandboxes = [world.root / f"ab-s{seed}" for seed in seeds]
    sandboxes += [world.workspace(s, seed) / "sandbox" for s in searched for seed in seeds]
    adopted = world.judge.adopt_truths([root for root in sandboxes if root.is_dir()])
    console.print(f"  {world.name}: {adopted} truths taken over from the runs' sandboxes")
    world.judge.prefetch(
        list(dict.fromkeys(s for t in all_traces for s in judged_states(t))), jobs=2
    )
    scores: dict[str, list[RunScore]] = {
        strategy: [score_run(trace, world.judge) for trace in ts] for strategy, ts in traces.items()
    }
    ceiling = world.ceiling(all_traces, args.ceiling_pool, args.ceiling_rounds)
    rows = {strategy: row(s, ceiling.lift) for strategy, s in scores.items()}
    rows["ceiling"] = ceiling_row(ceiling)
    detail = {
        "config": {
            "seeds": seeds,
            "budget": args.budget,
            "stages": [s.model_dump() for s in world.settings.stages],
            "guardrails": [g.model_dump() for g in world.settings.guardrails],
            "ceiling_pool": args.ceiling_pool,
            "ceiling_rounds": args.ceiling_rounds,
        },
        "ceiling": asdict(ceiling),
        "runs": {
            strategy: [
                {
                    "seed": trace.seed,
                    "lift": score.lift,
                    "launches": score.launches,
                    "experiments": len(trace.trials),
                    "trajectory": score.trajectory,
                    "wall_s": trace.wall_s,
                    "trials": [
                        f"{t.index}: {t.label} -> {t.decision}"
                        + (f" ({t.halted[:160]})" if t.halted else "")
                        + (" (launched)" if t.launched else "")
                        for t in trace.trials
                    ],
                    "notes": trace.notes,
                }
                for trace, score in zip(traces[strategy], scores[strategy], strict=True)
            ]
            for strategy in traces
        },
        "judge_seconds": world.judge.seconds,
        "judge_truths_adopted": adopted,
        "seconds": time.perf_counter() - started,
    }
    return rows, detail


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else format(value, pattern)


def print_table(world: str, rows: dict, detail: dict) -> None:
    """One rich table per world."""
    ceiling = detail["ceiling"]
    config = detail["config"]
    table = Table(
        title=f"{world}: {len(config['seeds'])} seed(s), budget {config['budget']}; ceiling "
        f"{ceiling['lift']:+.2%} ({ceiling['source']}: {' + '.join(ceiling['path']) or '–'})"
    )
    for column in (
        "strategy",
        "true lift mean [min, max]",
        "% ceiling",
        "harmful",
        "false keeps",
        "missed wins",
        "to 50%",
        "to 90%",
        "s / exp",
    ):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for strategy in STRATEGIES:
        r = rows.get(strategy)
        if r is None:
            continue
        table.add_row(
            strategy,
            f"{r['lift_mean']:+.2%} [{r['lift_min']:+.2%}, {r['lift_max']:+.2%}]",
            _fmt(r["pct_of_ceiling"], ".0%"),
            str(r["harmful"]),
            str(r["false_keeps"]),
            str(r["missed_wins"]),
            _fmt(r["to_50pct"], "d"),
            _fmt(r["to_90pct"], "d"),
            _fmt(r["s_per_experiment"], ".1f"),
        )
    console.print(table)


def markdown(results: dict) -> str:
    """The results as markdown tables (what docs/benchmarks.md shows)."""
    lines = []
    for world, rows in results.items():
        if world.startswith("_"):
            continue
        lines += [
            f"**{world}**",
            "",
            "| strategy | true lift mean [min, max] | % of ceiling | harmful | false keeps "
            "| missed wins | to 50% | to 90% | s / experiment |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for strategy in STRATEGIES:
            r = rows.get(strategy)
            if r is None:
                continue
            lines.append(
                f"| {strategy} | {r['lift_mean']:+.2%} [{r['lift_min']:+.2%}, "
                f"{r['lift_max']:+.2%}] | {_fmt(r['pct_of_ceiling'], '.0%')} | {r['harmful']} "
                f"| {r['false_keeps']} | {r['missed_wins']} | {_fmt(r['to_50pct'], 'd')} "
                f"| {_fmt(r['to_90pct'], 'd')} | {_fmt(r['s_per_experiment'], '.1f')} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; bad input or a failing world is one line on stderr."""
    try:
        args = parse_args(argv)
        for name in args.worlds:
            load_world(name)  # refuse an unknown world before hours of work
    except (BenchmarkError, WorldError, SettingsError) as error:
        print(f"efficacy: {error}", file=sys.stderr)
        return 2
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.markdown:
        print(markdown(results))
        return 0
    with tempfile.TemporaryDirectory(prefix="efficacy-") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        for name in args.worlds:
            console.print(f"world {name}", markup=False)
            try:
                rows, detail = run_world(name, args, root)
            except (isolation.IsolationUnavailable, TargetError, RunError) as error:
                print(f"efficacy: world {name}: {str(error).splitlines()[0]}", file=sys.stderr)
                return 1
            results[name] = rows
            results.setdefault("_detail", {})[name] = detail
            print_table(name, rows, detail)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
    console.print(f"wrote {args.out}", markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
