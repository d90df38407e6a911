"""Sandbox performance: simulator throughput, a full staged rollout, ground truth.

Usage: python benchmarks/sandbox_bench.py [--world default] [--users N] [--out benchmarks/results]

* **simulator throughput**: impressions per second of the user simulator alone (one core),
  playing every day of the horizon for every visitor with slates drawn by the logging policy
  (no arm process involved), per second of wall time and per second of the process's CPU
  time (the latter is what one core does, whatever else the machine runs);
* **staged rollout**: pre-period, canary, ramp and full stage of an A/A experiment with the
  default stages, both arms serving and retraining day by day in their confined processes;
  split into the time the rollout waited for its arms to be ready (start and training), the
  time the simulator waited for the arms to serve and to learn, the simulator's own share,
  and the rest;
* **staged A/B rollout**: the same stages with a treatment that is a new snapshot (the
  baseline with a note added, so it behaves the same): the control loads the model the A/A
  rollout cached and serves the pre-period, the treatment trains its own meanwhile, as in
  the first experiment of the loop at a baseline (the pre-period records are dropped
  first, as in a fresh process);
* **staged A/B rollout reusing the pre-period**: the next experiment at that baseline (another
  new snapshot): the control restores its state after the pre-period, nobody serves it
  again, and the treatment learns its days after training (:mod:`agentx.sandbox.pre_period`);
* **ground truth** of the baseline over the truth horizon, split the same way;
* with ``--wave N``: **N A/B rollouts of one baseline started together** (as a wave of
  concurrent experiments, each with the settings' stages and its own new snapshot), wall
  and CPU seconds, once with every rollout serving its own pre-period and once reusing the
  baseline's (the first serves it, the others train their treatments and wait for it).

``--users N`` overrides the world's user count (everything else as in the world file), to
measure how the sandbox scales. Prints a table and writes sandbox-<world>[-<N>u].json.
Numbers are wall-clock on this machine unless they say CPU; note the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from concurrency import busy_cpu_seconds

from agentx.agents.evaluation.rollout import earlier_stages, stage_assignment, stage_seed
from agentx.sandbox.logs import logging_policy_slates
from agentx.sandbox.online import SandboxWorld
from agentx.sandbox.simulator import DayTraffic, WindowTotals
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldParams, load_world
from agentx.settings import Settings, load_settings
from agentx.target.models import OnlineReadout


def simulator_throughput(world: SandboxWorld, days: int) -> dict[str, float]:
    """Impressions per second of the simulator alone (slates drawn up front, not timed)."""
    params, sim = world.params, world.simulator
    state = world.fresh_state()
    rng = np.random.default_rng(0)
    totals = WindowTotals.zeros(world.population.n_users, world.population.n_items)
    seconds = cpu = 0.0
    impressions = 0
    for t in range(days):
        day = world.online_start_day + t
        draws = sim.streams(1, 0, day)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        users = sim.visitors(state, day, draws)
        seconds += time.perf_counter() - tick
        cpu += time.process_time() - cpu_tick
        slates = logging_policy_slates(params, world.population, users, day, rng)
        latency = np.full(users.size, params.latency_base_ms, dtype=np.float32)
        traffic = DayTraffic(users, slates, latency, np.zeros(users.size, np.float32))
        tick, cpu_tick = time.perf_counter(), time.process_time()
        outcome = sim.sessions(state, traffic, day, draws, totals)
        seconds += time.perf_counter() - tick
        cpu += time.process_time() - cpu_tick
        impressions += int(outcome.shown.sum())
    return {
        "impressions": impressions,
        "seconds": seconds,
        "per_s": impressions / seconds,
        "per_cpu_s": impressions / cpu,
    }


def aa_rollout(
    target: SandboxTarget, settings: Settings, experiment: str, treatment: Path | None = None
) -> Iterator[tuple[str, OnlineReadout]]:
    """Collect every default stage of an A/A rollout of the baseline (or an A/B one against
    the ``treatment`` working copy), in order, as the Evaluation Agent runs a rollout (the
    arms stay alive between stages), with ``settings``' stages."""
    users = target.user_ids()
    control = target.launch("control", target.repo_path)
    twin = target.launch("treatment", treatment or target.repo_path)
    for stage in settings.stages:
        yield (
            stage.name,
            target.collect(
                control,
                twin,
                stage_assignment(users, experiment, stage.treatment_share),
                days=stage.days,
                seed=stage_seed(0, experiment, stage.name),
                earlier=earlier_stages(users, stage, experiment, settings),
            ),
        )
    target.rollback(twin)


def changed_copy(target: SandboxTarget, where: Path, note: str = "") -> Path:
    """The baseline's files with a note added: a new snapshot (its arm trains its own
    model) that serves exactly as the baseline does."""
    shutil.copytree(target.repo_path, where, ignore=shutil.ignore_patterns(".git"))
    (where / "NOTES.md").write_text(f"a change that changes no behaviour {note}\n")
    return where


def staged_rollout(
    target: SandboxTarget,
    settings: Settings,
    treatment: Path | None = None,
    experiment: str = "bench",
) -> dict[str, float]:
    """Wall time of a whole A/A (or A/B) rollout and where it went."""
    started = time.perf_counter()
    for stage, readout in aa_rollout(target, settings, experiment, treatment):
        if readout.errors:  # a failed arm's stage would time nothing real
            raise SystemExit(f"stage {stage} failed: {readout.errors}")
    return {"s": time.perf_counter() - started, **target.last_timing}


def wave(target: SandboxTarget, settings: Settings, treatments: list[Path]) -> dict[str, float]:
    """Wall and CPU seconds of A/B rollouts of ``treatments`` started together (threads, as
    the loop runs a wave); the CPU is the whole machine's (``/proc/stat``: the arms run in
    sandboxes whose times never reach this process), so run it on a quiet machine."""
    failures: list[BaseException] = []

    def run(index: int, treatment: Path) -> None:
        try:
            staged_rollout(target, settings, treatment, experiment=f"bench-wave-{index}")
        except BaseException as error:  # noqa: BLE001 - re-raised below
            failures.append(error)

    started, cpu = time.perf_counter(), busy_cpu_seconds()
    threads = [
        threading.Thread(target=run, args=(index, treatment))
        for index, treatment in enumerate(treatments)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a rollout of the wave failed: {failures[0]}")
    return {"s": time.perf_counter() - started, "cpu_s": busy_cpu_seconds() - cpu}


def main() -> None:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="default")
    parser.add_argument("--users", type=int, default=None, help="override the user count")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--wave", type=int, default=0, help="also time N rollouts together")
    args = parser.parse_args()
    params = load_world(args.world)
    suffix = ""
    if args.users is not None:
        params = WorldParams.model_validate({**params.model_dump(), "n_users": args.users})
        suffix = f"-{args.users}u"
    rows: dict[str, float] = {"load_average_1min": os.getloadavg()[0]}

    started = time.perf_counter()
    world = SandboxWorld(params)
    rows["world_build_s"] = time.perf_counter() - started
    sim = simulator_throughput(world, params.horizon_days)
    rows["sim_impressions"] = sim["impressions"]
    rows["sim_seconds"] = sim["seconds"]
    rows["sim_impressions_per_s"] = sim["per_s"]
    rows["sim_impressions_per_cpu_s"] = sim["per_cpu_s"]

    with tempfile.TemporaryDirectory() as tmp:
        target = SandboxTarget.create(Path(tmp), params)
        settings = load_settings(workspace=Path(tmp) / "unused", world=args.world)
        rows.update({f"rollout_{k}": v for k, v in staged_rollout(target, settings).items()})
        target.pre_periods.clear()
        treatment = changed_copy(target, Path(tmp) / "treatment")
        ab = staged_rollout(target, settings, treatment, experiment="bench-ab")
        rows.update({f"rollout_ab_{k}": v for k, v in ab.items()})
        second = changed_copy(target, Path(tmp) / "second-treatment", note="another")
        again = staged_rollout(target, settings, second, experiment="bench-ab-2")
        rows.update({f"rollout_ab_reused_{k}": v for k, v in again.items()})
        if args.wave:
            for reuse in (False, True):
                target.reuse_pre_periods = reuse
                target.pre_periods.clear()
                copies = [
                    changed_copy(target, Path(tmp) / f"wave-{reuse}-{i}", note=f"{reuse} {i}")
                    for i in range(args.wave)
                ]
                label = "reused" if reuse else "own"
                rows.update(
                    {f"wave_{label}_{k}": v for k, v in wave(target, settings, copies).items()}
                )
        started = time.perf_counter()
        target.truth_of(target.repo_path)
        rows["ground_truth_s"] = time.perf_counter() - started
        rows.update({f"truth_{k}": v for k, v in target.last_timing.items()})
        started = time.perf_counter()
        target.evaluate_offline(target.repo_path)
        rows["offline_eval_s"] = time.perf_counter() - started

    rows["load_average_1min_after"] = os.getloadavg()[0]
    width = max(len(k) for k in rows)
    print(
        f"sandbox benchmark, world {params.name} ({params.n_users} users, {params.n_items} items)"
    )
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value:>14,.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sandbox-{params.name}{suffix}.json"
    payload = {"world": params.name, "n_users": params.n_users, **rows}
    path.write_text(json.dumps(payload, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
