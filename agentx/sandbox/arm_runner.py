"""Child-process entry point: train a repository state and serve requested days.

Run confined (see :mod:`agentx.workspace.process`) as
``python -m agentx.sandbox.arm_runner REPO DATA OUT --first-day D --days N [--users N]
[--diagnose]``. It imports the repository's own ``recsys`` package, so a change under
test runs its real code; the parent only reads the arrays this writes (``OUT`` lies in
a private directory of this run; the parent moves it into the cache). ``--diagnose``
adds the model's numeric diagnostics, which the parent judges
(:mod:`agentx.sandbox.model_checks`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from agentx.sandbox import model_checks


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="arm_runner")
    parser.add_argument("repo", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--first-day", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--users", type=int, default=0, help="Serve only the first N users.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--diagnose", action="store_true", help="Record the model's numeric diagnostics."
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, float]:
    """Train, then serve every requested day in order; write ``out`` (npz)."""
    sys.path.insert(0, str(args.repo.resolve()))
    import recsys  # the repository under test

    meta = json.loads((args.data / "meta.json").read_text())
    n_users = args.users or int(meta["n_users"])
    k = int(meta["slate_size"])
    users = np.arange(n_users)
    started = time.perf_counter()
    model = recsys.train(args.data, seed=args.seed)
    train_seconds = time.perf_counter() - started
    slates = np.full((args.days, n_users, k), -1, dtype=np.int32)
    candidates = np.zeros((args.days, n_users), dtype=np.int32)
    serve_seconds = np.zeros(args.days)
    for t in range(args.days):
        tick = time.perf_counter()
        result = model.serve(users, k, args.first_day + t)
        serve_seconds[t] = time.perf_counter() - tick
        items = np.asarray(result.items)
        if items.shape != (n_users, k):
            raise ValueError(f"serve returned shape {items.shape}, expected {(n_users, k)}")
        slates[t] = items
        candidates[t] = np.asarray(result.candidates_scored)
    diagnostics = {}
    if args.diagnose:  # judged by the parent (agentx.sandbox.model_checks)
        n_items = int(meta.get("n_items", k))
        diagnostics = model_checks.diagnose(model, n_users, n_items, args.first_day)
    np.savez(
        args.out,
        slates=slates,
        candidates=candidates,
        serve_seconds=serve_seconds,
        train_seconds=np.array(train_seconds),
        **diagnostics,
    )
    return {"train_seconds": train_seconds, "serve_seconds": float(serve_seconds.sum())}


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success; on failure print the traceback and exit 2."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        timings = run(args)
    except Exception:  # report any failure of the code under test to the parent
        traceback.print_exc()
        return 2
    sys.stdout.write(json.dumps(timings) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
