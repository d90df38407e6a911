"""Smoke run: ``python -m recsys DATA_DIR [--day D] [--k K] [--seed S]``.

Trains on the data directory, serves every user once and reports timings and slate stats,
so an edit can be sanity-checked end to end without the experiment harness.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .pipeline import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys", description=__doc__)
    parser.add_argument("data_dir")
    parser.add_argument("--day", type=int, default=None, help="serving day (default last+1)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = train(args.data_dir, seed=args.seed)
    meta = model.ctx.dataset.meta
    day = args.day if args.day is not None else meta.last_day + 1
    start = time.perf_counter()
    result = model.serve(np.arange(meta.n_users), args.k, day)
    serve_s = time.perf_counter() - start
    shown = result.items[result.items >= 0]
    ranker = model.ranker
    weights = dict(zip(ranker.feature_names, ranker.weights.round(3).tolist(), strict=True))
    lines = [
        f"train seconds: { {k: round(v, 3) for k, v in model.train_seconds.items()} }",
        f"ranker weights: {weights}",
        f"train loss: first {ranker.loss_history[:1]}, last {ranker.loss_history[-1:]}",
        f"serve {meta.n_users} users, k={args.k}, day={day}: {serve_s:.3f}s",
        f"mean candidates scored: {result.candidates_scored.mean():.1f}",
        f"catalogue coverage: {np.unique(shown).size}/{meta.n_items} items",
        f"empty slots: {int((result.items < 0).sum())}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
