"""Pre-periods of a baseline, run once and reused by every rollout of that baseline.

Why: before its first stage every rollout has the control serve the whole population for
the pre-period (five days of all 200,000 users on ``default``), and every experiment at
one baseline served the same days again: the same code, world and draws give the same
days. That was about half of a rollout's serving, and all of it on one core (the
treatment only learns then). A pre-period's draws are keyed by the baseline and the run's
seed, not by the experiment, as in production, where every experiment starts from the
one history all users share.

What is reused, and why it is exact:

* the parent's side (:class:`~agentx.sandbox.online.PrePeriod`): the users' state at its end,
  its per-user totals (the readouts' covariates) and each day's impressions, for the
  treatment, which learns them as it would have while the control served them;
* the control's side: its model after serving and learning the pre-period, pickled by its
  own arm process (:meth:`ArmProcess.checkpoint`) and sealed in the sandbox's
  :class:`~agentx.sandbox.model_cache.ModelCache` under the pre-period's key. A control
  that loads it is in exactly the state it reached, whatever its code did while serving.

The parent's side is kept in memory (the last :data:`KEEP` pre-periods; a ``default`` one
is a few hundred MB), the model on disk. A process that has the model but not the
record (a resumed run, a second worker) runs the pre-period again and records it; either
way the numbers are the same. Single flight: rollouts that start together at one baseline
(a wave) wait for the first one's pre-period instead of serving it side by side. Before
they wait they train their treatments (and let their other arms finish training), so the
wait costs no time and a rollout that runs the pre-period never waits on them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentx.sandbox.model_cache import MODEL_FILE, CachePlan, ModelCache
from agentx.sandbox.online import PrePeriod

#: Pre-periods kept in memory (the baseline of running experiments and the one before).
KEEP = 2
#: Longest wait for another rollout's pre-period before running it too.
WAIT_TIMEOUT_S = 1800.0


@dataclass
class PrePeriodPlan:
    """What one rollout does about its pre-period: reuse ``record`` with the control
    starting from ``model``, or run it (and, with ``checkpoint``, save the control's model
    into that staging entry for :meth:`PrePeriodCache.finish` to seal)."""

    key: str
    record: PrePeriod | None = None
    model: Path | None = None
    checkpoint: CachePlan | None = None

    @property
    def reuse(self) -> bool:
        return self.record is not None and self.model is not None

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where the control saves its model after the pre-period (None: it does not)."""
        return self.checkpoint.path if self.checkpoint is not None else None


class PrePeriodCache:
    """Recorded pre-periods of one sandbox, by key (see :func:`pre_period_key`)."""

    def __init__(self, models: ModelCache, keep: int = KEEP) -> None:
        self.models = models
        self.keep = keep
        self._records: OrderedDict[str, PrePeriod] = OrderedDict()
        self._lock = threading.Lock()

    def claim(
        self,
        key: str,
        before_waiting: Callable[[], None] | None = None,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> PrePeriodPlan:
        """Reuse the pre-period if it was recorded and its model sealed; wait while another
        rollout of this process runs it (calling ``before_waiting`` once first: work the
        caller can do meanwhile); else run it. Every plan goes to :meth:`finish`."""
        deadline = time.monotonic() + timeout_s
        while True:
            plan = self.models.plan(key)
            if plan.action == "wait":
                assert plan.event is not None
                if before_waiting is not None:
                    before_waiting()
                    before_waiting = None
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not plan.event.wait(remaining):
                    return PrePeriodPlan(key)  # run it too, without saving
                continue
            if plan.action == "load":
                assert plan.path is not None
                with self._lock:
                    record = self._records.get(key)
                    if record is not None:
                        self._records.move_to_end(key)
                model = plan.path / MODEL_FILE if record is not None else None
                return PrePeriodPlan(key, record=record, model=model)
            return PrePeriodPlan(key, checkpoint=plan)

    def finish(self, plan: PrePeriodPlan, record: PrePeriod | None, saved: bool) -> None:
        """After the rollout's pre-period (or its failure): keep the record, seal the
        control's checkpoint, and wake the rollouts waiting for it."""
        try:
            self._remember(plan.key, record)  # reused only once its model is sealed too
        finally:
            if plan.checkpoint is not None:
                self.models.finish(plan.checkpoint, saved)

    def clear(self) -> None:
        """Drop every record (the models stay sealed): as a freshly started process would
        have it, so the next rollout of each baseline runs its pre-period again."""
        with self._lock:
            self._records.clear()

    def forget(self, key: str) -> None:
        """Drop a pre-period whose model could not be loaded (it will be run again)."""
        with self._lock:
            self._records.pop(key, None)
        self.models.discard(key)

    def _remember(self, key: str, record: PrePeriod | None) -> None:
        if record is None:
            return
        with self._lock:
            self._records[key] = record
            self._records.move_to_end(key)
            while len(self._records) > self.keep:
                self._records.popitem(last=False)


def pre_period_key(control_model_key: str, pre_seed: int, world: str, simulator: str) -> str:
    """What a pre-period depends on: the control's trained model (its code, data, seed,
    interpreter and numpy), the pre-period's draws, the world's behaviour and the
    simulator's code."""
    parts = ["pre-period", control_model_key, str(pre_seed), world, simulator]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def pre_period_seed(run_seed: int) -> int:
    """The draws of every rollout's pre-period in a run: one per run seed, whatever the
    experiment (the stages' draws stay per experiment and stage)."""
    digest = hashlib.sha256(f"pre-period\0{run_seed}".encode()).hexdigest()
    return int(digest[:8], 16)
