"""The contract every target implements.

A target is a git repository plus the means to check, evaluate and experiment on it.
Agents reach a target only through this protocol, so a team's own recommender and
experimentation platform plug in the same way as the bundled sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from agentx.target.models import (
    ArmHandle,
    DataReport,
    GroundTruth,
    OfflineMetrics,
    OnlineReadout,
    SystemDescription,
    WorkspaceCheck,
)
from agentx.target.shipping import ShipResult


class TargetError(RuntimeError):
    """A target operation failed in a way the loop records rather than crashes on."""


@dataclass(frozen=True)
class StageTraffic:
    """An earlier stage of the same rollout: who was in which arm, for how long, which draws.

    Stages follow each other in time: a target replays (or remembers) them before the
    stage it is asked to collect, so users keep their arm and effects that build up or fade
    over days show up as they would in production.
    """

    assignment: np.ndarray
    days: int
    seed: int


@runtime_checkable
class Target(Protocol):
    """What AgentX needs from a system it improves."""

    name: str

    @property
    def repo_path(self) -> Path:
        """The baseline git repository (never edited in place by the agents)."""
        ...

    def describe(self) -> SystemDescription:
        """Architecture, repository map, configuration keys, features, metrics."""
        ...

    def analyse_data(self) -> DataReport:
        """Statistics of the logged interactions."""
        ...

    def verify(self, workdir: Path, timeout_s: float = 300.0) -> WorkspaceCheck:
        """Run the target's own tests and a dry run of train + serve in ``workdir``."""
        ...

    def evaluate_offline(self, workdir: Path, timeout_s: float = 600.0) -> OfflineMetrics:
        """Offline ranking metrics of ``workdir`` on held-out logs."""
        ...

    def launch(self, name: str, workdir: Path) -> ArmHandle:
        """Build an arm from ``workdir`` so it can take traffic."""
        ...

    def collect(
        self,
        control: ArmHandle,
        treatment: ArmHandle,
        assignment: np.ndarray,
        days: int,
        seed: int,
        earlier: Sequence[StageTraffic] = (),
    ) -> OnlineReadout:
        """Run ``days`` of traffic after a pre-period (whose values serve as covariates)
        and after the ``earlier`` stages of the same rollout.

        ``assignment[u]`` is 0 (control), 1 (treatment) or -1 (not enrolled).
        """
        ...

    def rollback(self, arm: ArmHandle) -> None:
        """Stop serving ``arm`` and release what it holds."""
        ...

    def ship(self, workdir: Path, message: str) -> ShipResult:
        """Promote the kept change in ``workdir`` to the baseline, once.

        Idempotent: asked again for a change the baseline already holds (a run resumed
        after shipping, before its checkpoint), it ships nothing and says so. A target
        whose baseline is a local git repository can use
        :func:`agentx.target.shipping.ship_git_worktree`.

        Raises:
            TargetError: the baseline could not take the change.
        """
        ...

    def ground_truth(self, workdir: Path) -> GroundTruth | None:
        """Noise-free expected metrics of ``workdir`` versus the baseline, if known."""
        ...

    def user_ids(self) -> np.ndarray:
        """All user ids that online traffic can reach."""
        ...


@runtime_checkable
class PrefetchesGroundTruth(Protocol):
    """Optional: a target whose ground truth is slow to compute and can start early.

    Why: the sandbox's truth serves the whole population over the truth horizon, about a
    minute of one core on ``default``, while the rollout it follows uses the other. Asked
    when the treatment's arms are up, it runs beside the rollout instead of after it; the
    verdict's :meth:`Target.ground_truth` then reads the same numbers (or waits for them).
    """

    def prefetch_ground_truth(self, workdir: Path) -> None:
        """Start computing ``workdir``'s ground truth in the background; never raises."""
        ...
