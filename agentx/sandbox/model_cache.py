"""Trained models of repository snapshots, so an arm of code that was trained before loads
the model instead of training it again.

Why: every rollout starts a control arm of the current baseline and every arm trains from
the same logs with the same seed, so while the baseline does not change (most experiments
end without shipping) each experiment trained the same control model again, and its ground
truth trained the treatment a second time: on ``default`` about 6.5 CPU seconds each, of
roughly 40 per experiment without the truth. Loading the pickled model takes about 0.2 s.

Safety: the arm that trains a snapshot writes its model into a staging directory of its
own (the only place it may write); the parent seals it under the snapshot's key with an
atomic rename. An arm later only reads the entry of its own key, so code under test can
write the model of its own code only, never the control's. Training is deterministic for a
snapshot, its data and seed, and a pickled model holds the same arrays, so the arm serves
what a freshly trained one would (checked by ``benchmarks/sandbox_fingerprint.py``).

Single flight: arms of one key that start while it is being trained (a rollout's treatment
and its truth, a wave's controls) wait for that training and then load, instead of
training side by side. If the trainer fails or its model cannot be pickled, a waiter
trains itself. Sealed entries beyond ``max_entries`` are removed, least recently used
first: a ``default`` model is about 800 MB (1.2 GB after a pre-period).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

MODEL_FILE = "model.pkl"
DEFAULT_MAX_ENTRIES = 4


@dataclass
class CachePlan:
    """What one arm does about its model: ``load`` a sealed entry, ``train`` and save it
    into ``path`` (a staging directory), or ``wait`` for another arm that trains it."""

    action: Literal["load", "train", "wait"]
    key: str
    path: Path | None = None
    event: threading.Event | None = None


class ModelCache:
    """Sealed trained models under ``root``, one directory per key, shared by the arms of
    one sandbox (threads of one process; processes sharing the root only race on the
    atomic rename, which one of them wins)."""

    def __init__(self, root: Path, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.root = Path(root)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._training: dict[str, threading.Event] = {}

    @staticmethod
    def key(snapshot: Path, data_fingerprint: str, seed: int) -> str:
        """What a trained model depends on: the code (the snapshot's content hash, its
        name), the data, the seed, and the interpreter and numpy that pickled it."""
        parts = [snapshot.name, data_fingerprint, str(seed), sys.version, np.__version__]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]

    def entry(self, key: str) -> Path:
        return self.root / key

    def plan(self, key: str) -> CachePlan:
        """Load if sealed, wait if another arm is training this key, else train and save."""
        with self._lock:
            sealed = self.entry(key) / MODEL_FILE
            if sealed.is_file():
                _touch(self.entry(key))  # recently used: evicted last
                return CachePlan("load", key, path=self.entry(key))
            event = self._training.get(key)
            if event is not None:
                return CachePlan("wait", key, event=event)
            self._training[key] = threading.Event()
            staging = self.root / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                staging.mkdir(parents=True)
            except OSError:  # a full or read-only disk: train without saving
                self._training.pop(key).set()
                return CachePlan("train", key)
            return CachePlan("train", key, path=staging)

    def finish(self, plan: CachePlan, saved: bool) -> None:
        """After a ``train`` plan's arm is ready (or failed): seal what it saved, release
        the arms waiting for it, and keep at most ``max_entries`` entries."""
        staging = plan.path
        try:
            if saved and staging is not None and (staging / MODEL_FILE).is_file():
                try:
                    staging.replace(self.entry(plan.key))
                    _touch(self.entry(plan.key))
                except OSError:  # another process sealed it first
                    pass
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            with self._lock:
                event = self._training.pop(plan.key, None)
            if event is not None:
                event.set()
        self._evict()

    def clear(self) -> None:
        """Remove every sealed model (a workspace done with its sandbox frees its disk: a
        `default` model is about 800 MB); trainings in flight keep their staging."""
        with self._lock:
            for entry in self._sealed():
                shutil.rmtree(entry, ignore_errors=True)

    def discard(self, key: str) -> None:
        """Remove an entry an arm could not load (it trained instead)."""
        shutil.rmtree(self.entry(key), ignore_errors=True)

    def _evict(self) -> None:
        with self._lock:
            entries = sorted(self._sealed(), key=_mtime)
            for old in entries[: max(0, len(entries) - self.max_entries)]:
                shutil.rmtree(old, ignore_errors=True)

    def _sealed(self) -> list[Path]:
        """The sealed entries (not the staging directories of trainings in flight); none
        when the root cannot be read."""
        try:
            return [p for p in self.root.iterdir() if p.is_dir() and p.suffix != ".tmp"]
        except OSError:
            return []


def _touch(path: Path) -> None:
    """Mark ``path`` used now, at the clock's resolution (the file system's own timestamps
    can be a few milliseconds coarse, too coarse to order entries sealed one after another)."""
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except OSError:
        pass


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
