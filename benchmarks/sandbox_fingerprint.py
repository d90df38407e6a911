"""Does a change to the sandbox keep its semantics? Record a fingerprint, compare later.

Usage:
  python benchmarks/sandbox_fingerprint.py record [--out benchmarks/results/fingerprint.json]
  python benchmarks/sandbox_fingerprint.py compare [--against benchmarks/results/fingerprint.json]

The worlds were calibrated by hand for hours, so a speed-up of the simulator, the arm protocol
or the template must leave every seeded result as it was. A fingerprint holds, for the
``tiny`` world and a small slice of ``default`` (its first users, same parameters otherwise):

* a hash and sums of the logged interactions (the logging period of the simulator);
* the per-arm per-user metric sums of every stage of a seeded staged A/A rollout;
* the ground-truth metrics and daily watch series of the baseline and of a few techniques
  applied through their recipes (a ranking loss, a debiasing weight, a re-ranking rule,
  a retrieval pool, a feature).

``compare`` recomputes everything and prints, per number, the largest relative difference;
it exits 1 when any differs beyond ``--tolerance`` (default 1e-9 relative: float round-off).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sandbox_bench import aa_rollout

from agentx.research.catalog import load_catalog
from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldParams, load_world
from agentx.settings import default_stages, load_settings
from agentx.workspace import git
from agentx.workspace.edits import apply_edits

RESULTS = Path(__file__).parent / "results" / "fingerprint.json"
TECHNIQUES = (
    "pairwise_loss",
    "ips_debiasing",
    "mmr_diversity",
    "candidate_pool_size",
    "recency_feature",
    "impression_fatigue",
)
SLICE_USERS = 6000


def worlds() -> list[WorldParams]:
    """The tiny world and a slice of the default world."""
    default = load_world("default")
    sliced = default.model_copy(update={"n_users": SLICE_USERS, "name": "default-slice"})
    return [load_world("tiny"), WorldParams.model_validate(sliced.model_dump())]


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def log_fingerprint(target: SandboxTarget) -> dict:
    log = target.world.log
    fields = ("user", "item", "day", "position", "click", "watch_time")
    return {
        "rows": int(log.user.size),
        "hash": _digest(*(getattr(log, name) for name in fields)),
        "clicks": int(log.click.sum()),
        "watch_time": float(np.asarray(log.watch_time, dtype=np.float64).sum()),
    }


def rollout_fingerprint(target: SandboxTarget) -> dict:
    out: dict = {}
    # the settings' own stages, whatever the world declares: records stay comparable when
    # a world's allocation changes
    stages = [stage.model_dump() for stage in default_stages()]
    settings = load_settings(workspace=target.root / "unused", stages=stages)
    for stage, readout in aa_rollout(target, settings, "fingerprint"):
        assert not readout.errors, readout.errors
        out[stage] = {
            arm: {name: float(values.sum()) for name, values in metrics.items()}
            for arm, metrics in readout.metrics.items()
        }
    return out


def truth_fingerprint(target: SandboxTarget) -> dict:
    catalog = load_catalog()
    out = {"baseline": _truth(target, target.repo_path)}
    for technique_id in TECHNIQUES:
        technique = catalog[technique_id]
        path = target.root / "variants" / technique_id
        git.add_worktree(target.repo_path, path, f"fingerprint/{technique_id}")
        apply_edits(path, technique.render_recipe(technique.default_params()))
        out[technique_id] = _truth(target, path)
    return out


def _truth(target: SandboxTarget, path: Path) -> dict:
    return {"metrics": target.truth_of(path), "daily_watch": target.truth_series(path)}


def fingerprint() -> dict:
    out: dict = {}
    for world in worlds():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            target = SandboxTarget.create(Path(tmp) / world.name, world)
            out[world.name] = {
                "log": log_fingerprint(target),
                "rollout": rollout_fingerprint(target),
                "truth": truth_fingerprint(target),
            }
        print(f"{world.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return out


def _leaves(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}/{key}"))
        return out
    if isinstance(tree, list):
        return {f"{prefix}[{i}]": value for i, value in enumerate(tree)}
    return {prefix: tree}


def compare(recorded: dict, now: dict, tolerance: float) -> int:
    old, new = _leaves(recorded), _leaves(now)
    worst = 0.0
    bad = 0
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, float | int) and isinstance(b, float | int):
            diff = abs(a - b) / max(abs(a), abs(b), 1e-300) if a != b else 0.0
            worst = max(worst, diff)
            if diff > tolerance:
                bad += 1
                print(f"  DIFF {key}: {a!r} -> {b!r} (relative {diff:.2e})")
        elif a != b:
            bad += 1
            print(f"  DIFF {key}: {a!r} -> {b!r}")
    print(f"{len(old)} numbers compared; largest relative difference {worst:.3e}; {bad} differ")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("--out", "--against", dest="path", type=Path, default=RESULTS)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args()
    now = fingerprint()
    if args.mode == "record":
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(json.dumps(now, indent=1))
        print(f"written {args.path}")
        return 0
    return compare(json.loads(args.path.read_text()), now, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
