"""Time the daily loop at production scale: train once, then serve + update day by day.

``python benchmarks/daily_loop.py [--users 200000] [--items 5000] [--visitors 100000]
[--log-days 14] [--days 26]`` writes a synthetic data directory (a planted taste model,
popularity-biased logging, position-biased clicks), trains on it, then runs the closed loop:
each day the visitors are served, their clicks are simulated on the served slates and the
day is passed to ``update``. Prints train time and per-day serve / update seconds (median and
max, wall and process CPU time, which is steadier on a shared machine; update per stage), so
a change to the template can be checked for its daily cost. It is a timing tool, not a
quality measure: the planted world has no re-watch aversion or fatigue, so its CTR falls over
the days as the seen filter removes the favourites users already clicked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recsys import interactions_from_arrays, train  # noqa: E402


class World:
    """Planted tastes: P(click) = examination(position) * sigmoid(taste match + quality - 3)."""

    def __init__(self, n_users: int, n_items: int, slate: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.slate = slate
        self.users = rng.normal(size=(n_users, 8)).astype(np.float32) / 2.0
        self.items = rng.normal(size=(n_items, 8)).astype(np.float32) / 2.0
        self.quality = rng.normal(size=n_items).astype(np.float32)
        self.category = rng.integers(0, 20, n_items)
        self.creator = rng.integers(0, 500, n_items)
        self.release = rng.integers(-60, 0, n_items)
        late = rng.random(n_items) < 0.1  # released during the experiment
        self.release[late] = rng.integers(0, 60, int(late.sum()))
        self.examination = 1.0 / (1.0 + np.arange(slate)) ** 0.7

    def visitors(self, n: int) -> np.ndarray:
        return np.sort(self.rng.choice(self.users.shape[0], n, replace=False))

    def logging_slates(self, users: np.ndarray, day: int) -> np.ndarray:
        released = np.flatnonzero(self.release <= day)
        weight = np.exp(0.7 * self.quality[released])
        draws = self.rng.choice(released, size=(users.size, self.slate), p=weight / weight.sum())
        return draws

    def feedback(self, users: np.ndarray, slates: np.ndarray, day: int) -> dict[str, np.ndarray]:
        shown = slates >= 0
        user = np.repeat(users, self.slate).reshape(slates.shape)[shown]
        item = slates[shown]
        position = np.broadcast_to(np.arange(self.slate), slates.shape)[shown]
        match = np.einsum("nd,nd->n", self.users[user], self.items[item])
        logit = 2.0 * match + 0.5 * self.quality[item] - 3.0
        p = self.examination[position] / (1.0 + np.exp(-logit))
        click = self.rng.random(user.size) < p
        return {
            "user": user.astype(np.int32),
            "item": item.astype(np.int32),
            "day": np.full(user.size, day, dtype=np.int32),
            "position": position.astype(np.int16),
            "click": click.astype(np.int8),
            "watch_time": np.where(click, 30.0, 0.0).astype(np.float32),
        }


def write_log(world: World, root: Path, log_days: int, visitors: int) -> None:
    days = [
        world.feedback(u, world.logging_slates(u, d), d)
        for d in range(-log_days, 0)
        for u in [world.visitors(visitors)]
    ]
    arrays = {k: np.concatenate([d[k] for d in days]) for k in days[0]}
    np.savez(root / "interactions.npz", **arrays)
    np.savez(
        root / "items.npz",
        category=world.category,
        creator=world.creator,
        release_day=world.release,
    )
    meta = {
        "n_users": world.users.shape[0],
        "n_items": world.items.shape[0],
        "n_categories": 20,
        "n_creators": 500,
        "first_day": -log_days,
        "last_day": -1,
        "slate_size": world.slate,
    }
    (root / "meta.json").write_text(json.dumps(meta))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--visitors", type=int, default=100_000, help="per day (x10 impressions)")
    parser.add_argument("--log-days", type=int, default=14)
    parser.add_argument("--days", type=int, default=26)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    world = World(args.users, args.items, slate=10, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        write_log(world, Path(tmp), args.log_days, args.visitors)
        start = time.perf_counter()
        model = train(tmp, seed=args.seed)
        train_s = time.perf_counter() - start
    rows = len(model.ctx.dataset.log)
    out = [f"train on {rows} impressions: {train_s:.2f}s {model.train_seconds}"]
    serve_s, update_s, serve_cpu, update_cpu, stages, clicks = [], [], [], [], [], []
    for day in range(args.days):
        users = world.visitors(args.visitors)
        tick, cpu = time.perf_counter(), time.process_time()
        slates = model.serve(users, world.slate, day).items
        serve_s.append(time.perf_counter() - tick)
        serve_cpu.append(time.process_time() - cpu)
        feedback = world.feedback(users, slates, day)
        clicks.append(feedback["click"].mean())
        tick, cpu = time.perf_counter(), time.process_time()
        model.update(interactions_from_arrays(**feedback))
        update_s.append(time.perf_counter() - tick)
        update_cpu.append(time.process_time() - cpu)
        stages.append(model.update_seconds)

    def summary(values: list[float]) -> str:
        return f"median {np.median(values):.3f}s, max {np.max(values):.3f}s"

    per_stage = {k: round(float(np.median([s[k] for s in stages])), 3) for k in stages[0]}
    out += [
        f"serve {args.visitors} users/day: wall {summary(serve_s)}; cpu {summary(serve_cpu)}",
        f"update (interactions_from_arrays + update): wall {summary(update_s)}; "
        f"cpu {summary(update_cpu)}; wall per stage (median) {per_stage}",
        f"CTR first day {clicks[0]:.4f}, last day {clicks[-1]:.4f}",
        f"log after {args.days} days: {len(model.ctx.dataset.log)} rows",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
