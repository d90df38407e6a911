"""The ground-truth judge of one world: true metrics of repository states, and their class.

Every strategy's states are judged by one sandbox per world whose arms train with seed 0
(the recommender's own training noise is part of a state's truth, so one judge seed keeps
all strategies and seeds on the same scale). Truths are cached by content hash in the
judge's sandbox, so ``--workdir`` makes re-runs cheap.
"""

from __future__ import annotations

import time
from pathlib import Path

from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.agents.evaluation.truth import TruthClass, classify_truth
from agentx.sandbox.target import METRICS, SandboxTarget
from agentx.sandbox.world import WorldParams
from agentx.settings import Settings
from agentx.target.contract import TargetError

JUDGE_SEED = 0


class Judge:
    """True metrics and truth classes of states of one world."""

    def __init__(
        self, world: WorldParams, root: Path, settings: Settings, policy: EvaluationPolicy
    ):
        self.target = SandboxTarget.create(Path(root), world, JUDGE_SEED)
        self.settings = settings
        self.policy = policy
        self.directions = {m.name: m.direction for m in METRICS}
        self.seconds = 0.0
        self.evaluations = 0

    @property
    def original(self) -> Path:
        """The original baseline (the template every sandbox starts from)."""
        return self.target.repo_path

    def metrics(self, state: Path) -> dict[str, float] | None:
        """True metrics of ``state`` serving everyone over the horizon; None if it cannot
        serve (a crash is no truth)."""
        started = time.perf_counter()
        try:
            return self.target.truth_of(Path(state))
        except TargetError:
            return None
        finally:
            self.seconds += time.perf_counter() - started
            self.evaluations += 1

    def prefetch(self, states: list[Path], jobs: int) -> None:
        """Compute the truths of ``states`` ``jobs`` at a time, into the judge's cache.

        Why: a truth is one confined arm serving everyone over the horizon, about one core
        (two minutes on `default`); a greedy round judges dozens of states. The later reads
        return the cached records, so results do not depend on ``jobs``; a state that
        cannot serve is judged (None) when it is read.
        """
        started = time.perf_counter()
        self.target.compute_truths(states, jobs)
        self.seconds += time.perf_counter() - started

    def adopt_truths(self, sandboxes: list[Path]) -> int:
        """Take over the truths the strategies' own sandboxes already computed with the
        judge's arm seed (the loop's and the A/B sandbox at seed 0): the same numbers, not
        computed twice. Returns how many were adopted."""
        return sum(self.target.adopt_truths(root) for root in sandboxes)

    def relative(self, state: Path, base: Path) -> dict[str, float] | None:
        """True relative effects of ``state`` against ``base`` (as ``ground_truth`` computes
        them: absolute change for a metric whose base is zero)."""
        treated, reference = self.metrics(state), self.metrics(base)
        if treated is None or reference is None:
            return None
        return {
            name: (treated[name] / reference[name] - 1.0) if reference.get(name) else treated[name]
            for name in treated
        }

    def lift(self, state: Path, base: Path | None = None) -> float | None:
        """True relative north-star effect of ``state`` against ``base`` (default: the
        original baseline)."""
        relative = self.relative(state, base or self.original)
        return None if relative is None else relative[self.settings.north_star]

    def classify(self, state: Path, base: Path | None = None) -> tuple[TruthClass, list[str]]:
        """Truth class of ``state`` against ``base`` with the Evaluation Agent's own rule
        (:func:`classify_truth`: tolerances, exchange policy, least interesting effect)."""
        relative = self.relative(state, base or self.original)
        if relative is None:
            return "unknown", []
        return classify_truth(
            relative,
            self.settings.north_star,
            self.settings.guardrails,
            self.policy.min_interesting_effect,
            exchange=self.policy.exchange,
            directions=self.directions,
        )
