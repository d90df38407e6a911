"""Does a faster simulator play the same days? Old against new, array for array, and how fast.

Usage:
  python benchmarks/simulator_equivalence.py [--against HEAD] [--world default] [--days 8]

``--against`` is a git revision (its ``agentx/sandbox/simulator.py``) or the path of a
simulator module. Both simulators play the same world for ``--days`` days from the state
after logging, with the same seeded slates, latencies (some past the world's budget, so
visitors abandon) and a random half of the users counted, each day in alternating order.
After every day the outcomes (visitors, slates, impressions, clicks, watch time), every
array of the users' state and the window totals must be identical: not close, equal, as a
speed-up of the simulator must leave every calibrated number where it was
(``benchmarks/sandbox_fingerprint.py`` checks the same through whole rollouts and ground
truths). Prints impressions per CPU second of each; exits 1 at the first difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import agentx.sandbox.simulator as current
from agentx.sandbox.logs import logging_policy_slates
from agentx.sandbox.online import SandboxWorld
from agentx.sandbox.world import load_world

REPO = Path(__file__).resolve().parents[1]
MODULE_PATH = "agentx/sandbox/simulator.py"


@dataclass
class Comparison:
    """What the two simulators did: the first difference (None when identical) and speed."""

    days: int
    difference: str | None
    impressions: int
    cpu_seconds: dict[str, float]  # "reference" / "current" -> CPU seconds simulating

    def per_cpu_second(self, which: str) -> float:
        return self.impressions / max(self.cpu_seconds[which], 1e-9)


def load_reference(against: str) -> ModuleType:
    """The simulator module of a git revision, or of a file, under its own module name."""
    path = Path(against)
    if not path.is_file():
        source = subprocess.run(
            ["git", "show", f"{against}:{MODULE_PATH}"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if source.returncode != 0:
            raise SystemExit(f"--against {against}: {source.stderr.strip()}")
        path = Path(tempfile.mkdtemp(prefix="simulator-ref-")) / "reference_simulator.py"
        path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("reference_simulator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _first_difference(pairs: list[tuple[str, Any, Any]]) -> str | None:
    """The name of the first (name, reference, current) pair whose arrays differ in dtype
    or in any element."""
    for name, left, right in pairs:
        left, right = np.asarray(left), np.asarray(right)
        if left.dtype != right.dtype or not np.array_equal(left, right):
            return name
    return None


def compare(world: SandboxWorld, reference: ModuleType, days: int) -> Comparison:
    """Play ``days`` days with both simulators; stop at the first day that differs."""
    params, population = world.params, world.population
    modules = {"reference": reference, "current": current}
    sims = {k: m.Simulator(params, population, world.tail_items) for k, m in modules.items()}
    states = {k: world.fresh_state() for k in modules}
    totals = {
        k: m.WindowTotals.zeros(population.n_users, population.n_items) for k, m in modules.items()
    }
    cpu = dict.fromkeys(modules, 0.0)
    impressions = 0
    budget = params.latency_budget_ms
    for t in range(days):
        day = world.online_start_day + t
        outcomes = {}
        for which in ("reference", "current") if t % 2 == 0 else ("current", "reference"):
            module, sim = modules[which], sims[which]
            draws = sim.streams(1, 0, day)
            tick = time.process_time()
            users = sim.visitors(states[which], day, draws)
            cpu[which] += time.process_time() - tick
            slates = logging_policy_slates(
                params, population, users, day, np.random.default_rng([0, day])
            )
            latency = np.random.default_rng([1, day]).uniform(0.5, 1.2, users.size) * budget
            counted = np.random.default_rng([2, day]).random(population.n_users) < 0.5
            traffic = module.DayTraffic(
                users, slates, latency.astype(np.float32), np.zeros(users.size, np.float32)
            )
            tick = time.process_time()
            outcomes[which] = sim.sessions(
                states[which], traffic, day, draws, totals[which], counted
            )
            cpu[which] += time.process_time() - tick
        impressions += int(outcomes["current"].shown.sum())
        ref_state, new_state = states["reference"], states["current"]
        ref_totals, new_totals = totals["reference"], totals["current"]
        played = ["users", "slates", "shown", "clicks", "watch"]
        difference = _first_difference(
            [
                (f, getattr(outcomes["reference"], f), getattr(outcomes["current"], f))
                for f in played
            ]
            + [(f, v, getattr(new_state, f)) for f, v in vars(ref_state).items()]
            + [(f"totals.{f}", v, new_totals.sums[f]) for f, v in ref_totals.sums.items()]
            + [
                ("totals.items_shown", ref_totals.items_shown, new_totals.items_shown),
                ("totals.daily_watch", ref_totals.daily_watch, new_totals.daily_watch),
            ]
        )
        if difference is not None:
            return Comparison(t + 1, f"day {day}: {difference}", impressions, cpu)
    return Comparison(days, None, impressions, cpu)


def main() -> None:
    """Compare, print one line per simulator and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision or simulator file")
    parser.add_argument("--world", default="default")
    parser.add_argument("--days", type=int, default=8)
    args = parser.parse_args()
    reference = load_reference(args.against)
    world = SandboxWorld(load_world(args.world))
    result = compare(world, reference, args.days)
    for which in ("reference", "current"):
        print(f"{which:>9}: {result.per_cpu_second(which) / 1e6:.2f} M impressions per CPU second")
    if result.difference is not None:
        print(f"DIFFERENT at {result.difference} (against {args.against}, world {args.world})")
        raise SystemExit(1)
    print(f"identical: {result.days} days of {args.world} (against {args.against})")


if __name__ == "__main__":
    main()
