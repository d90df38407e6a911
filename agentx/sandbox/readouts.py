"""The stage readout cache: a collected stage is simulated once, then read back.

``SandboxTarget.collect`` is a pure function of the two arms' code, who was in which arm
on every stage so far, the stages' days and draws, the arms' training seed and the
simulator. Harness evolution replays recorded rollouts under candidate harnesses again and
again (the evaluation replay scores every recorded rollout for every candidate, at every
step), and without this cache each replay re-simulates every stage: tens of seconds per
rollout on the ``default`` world, growing with the number of recorded experiments. With
it, a replay of the traffic an experiment actually had costs a file read.

Entries are sealed like the arms and truth caches (checksummed, written only by the
trusted parent, discarded when altered), hold the per-user arrays at full precision (a
cached readout is bit for bit the simulated one), and the directory is kept under a byte
budget by removing the least recently used entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agentx.sandbox import cache
from agentx.target.models import OnlineReadout

BUDGET_BYTES = 1 << 30  # the directory's size cap; older entries go first
_ROLES = ("control", "treatment")
_EVICT = threading.Lock()


def readout_key(
    snapshots: Sequence[str], phases: Sequence[tuple[str, int, int]], seed: int, simulator: str
) -> str:
    """What a stage readout depends on: the arms' code (control first), every phase so far
    (assignment digest, days, draws), the arms' training seed and the simulator version."""
    identity = {
        "snapshots": list(snapshots),
        "phases": [list(phase) for phase in phases],
        "seed": int(seed),
        "simulator": simulator,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def load(entry: Path, arms: Sequence[str], days: int) -> OnlineReadout | None:
    """The cached readout with the caller's arm names (control, treatment), or None when
    absent or altered (an altered entry is discarded)."""
    data = cache.read(entry)
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        users: dict[str, np.ndarray] = {}
        metrics: dict[str, dict[str, np.ndarray]] = {}
        pre: dict[str, dict[str, np.ndarray]] = {}
        for role, arm in zip(_ROLES, arms, strict=True):
            users[arm] = arrays[f"users/{role}"]
            metrics[arm] = _section(arrays, f"metrics/{role}/")
            pre[arm] = _section(arrays, f"pre/{role}/")
    except (OSError, ValueError, KeyError):  # not a readout this code wrote: simulate again
        cache.discard(entry)
        return None
    try:
        os.utime(entry)  # recently used: evicted last
    except OSError:  # a read-only workspace still reads its cache
        pass
    return OnlineReadout(arms=list(arms), users=users, metrics=metrics, pre=pre, days=days)


def store(entry: Path, readout: OnlineReadout) -> None:
    """Seal ``readout`` (its arms in control, treatment order) as ``entry``, then keep the
    directory under :data:`BUDGET_BYTES`."""
    arrays: dict[str, np.ndarray] = {}
    for role, arm in zip(_ROLES, readout.arms, strict=True):
        arrays[f"users/{role}"] = readout.users[arm]
        arrays.update({f"metrics/{role}/{k}": v for k, v in readout.metrics[arm].items()})
        arrays.update({f"pre/{role}/{k}": v for k, v in readout.pre[arm].items()})
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = entry.with_name(f"{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with staging.open("wb") as handle:
            np.savez_compressed(handle, **arrays)
        cache.seal(staging, entry)
    finally:
        staging.unlink(missing_ok=True)
    evict(entry.parent, BUDGET_BYTES)


def evict(directory: Path, budget: int) -> None:
    """Remove the least recently used entries until the directory holds at most ``budget``
    bytes (an entry and its checksum go together)."""
    with _EVICT:
        entries = []
        for path in directory.glob("*.npz"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= budget:
                break
            cache.discard(path)
            total -= size


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix) :]: value for name, value in arrays.items() if name.startswith(prefix)}
