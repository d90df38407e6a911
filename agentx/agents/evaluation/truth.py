"""Verdicts against ground truth: how often the Evaluation Agent ships wins, misses them, or
ships harm. One of the project's headline numbers (benchmark and run report).

Truth classes, from the target's noise-free relative effects (``Verdict.true_effects``):

* **harmful**: the north-star truly falls by more than ``min_effect``, or a severe guardrail is
  truly harmed beyond its tolerance, or a moderate one is and the exchange policy would not
  accept it (its loss above ``max_trade_loss`` or the true exchange score not positive);
* **good**: the north-star truly rises by at least ``min_effect`` and nothing is harmful;
* **neutral**: everything else.

Outcomes: KEEP of a good change is a *true keep*; KEEP of anything else a *false keep* (of
which a KEEP of a harmful change is also a *harmful launch*); not keeping a good change is a
*missed win*; not keeping a harmful one a *harmful launch blocked*; not keeping a neutral one a
*correct discard*. EXTEND counts as not kept. Verdicts without ground truth are *unknown*.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field

from agentx.agents.evaluation.policy import ExchangeSpec
from agentx.models import Decision, Verdict
from agentx.settings import GuardrailSpec

TruthClass = Literal["good", "neutral", "harmful", "unknown"]
Outcome = Literal[
    "true_keep", "false_keep", "missed_win", "harmful_blocked", "correct_discard", "unknown"
]
OUTCOMES: tuple[Outcome, ...] = (
    "true_keep",
    "false_keep",
    "missed_win",
    "harmful_blocked",
    "correct_discard",
    "unknown",
)


class TallyRow(BaseModel):
    """One verdict classified against its ground truth."""

    experiment_id: str
    decision: str
    truth: TruthClass
    outcome: Outcome
    true_north_star: float | None = None
    harmed: list[str] = Field(default_factory=list, description="Guardrails truly harmed.")


class TruthTally(BaseModel):
    """Counts of each outcome, harmful launches, and the rows behind them."""

    counts: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    harmful_launches: int = 0
    rows: list[TallyRow] = Field(default_factory=list)

    @property
    def judged(self) -> int:
        """Verdicts with known truth."""
        return sum(n for key, n in self.counts.items() if key != "unknown")

    def rate(self, outcome: Outcome) -> float:
        """Share of judged verdicts with ``outcome`` (0 when none was judged)."""
        return self.counts.get(outcome, 0) / self.judged if self.judged else 0.0


def true_exchange(
    true_effects: dict[str, float], spec: ExchangeSpec, directions: dict[str, str] | None = None
) -> float | None:
    """The exchange score of the true effects (None if a weighted metric has no truth)."""
    directions = directions or {}
    total = 0.0
    for metric, weight in spec.weights.items():
        if weight == 0:
            continue
        if metric not in true_effects:
            return None
        sign = -1.0 if directions.get(metric) == "lower_is_better" else 1.0
        total += sign * weight * true_effects[metric]
    return total


def classify_truth(
    true_effects: dict[str, float],
    north_star: str,
    guardrails: list[GuardrailSpec],
    min_effect: float,
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better",
    exchange: ExchangeSpec | None = None,
    directions: dict[str, str] | None = None,
) -> tuple[TruthClass, list[str]]:
    """The truth class of a change from its true relative effects, and the guardrails it harms.

    ``exchange`` is the policy's exchange spec (None or inactive: no moderate loss is
    acceptable); ``directions`` maps exchange metrics to their direction (default higher is
    better). A guardrail metric absent from ``true_effects`` is not judged (the target cannot say).
    """
    if north_star not in true_effects:
        return "unknown", []
    net = (
        true_exchange(true_effects, exchange, directions) if exchange and exchange.active else None
    )
    harmed = []
    for spec in guardrails:
        if spec.tier == "observe" or spec.metric not in true_effects:
            continue
        sign = 1.0 if spec.direction == "higher_is_better" else -1.0
        harm = -sign * true_effects[spec.metric]
        if harm <= spec.max_relative_harm:
            continue
        tradeable = (
            spec.tier == "moderate"
            and exchange is not None
            and net is not None
            and net > 0
            and harm <= exchange.max_trade_loss
        )
        if not tradeable:
            harmed.append(spec.metric)
    effect = true_effects[north_star] * (1.0 if direction == "higher_is_better" else -1.0)
    if harmed or effect < -min_effect:
        return "harmful", harmed
    if effect >= min_effect:
        return "good", harmed
    return "neutral", harmed


def outcome_of(decision: Decision, truth: TruthClass) -> Outcome:
    """The tally outcome of a decision given the truth class."""
    if truth == "unknown":
        return "unknown"
    kept = decision == Decision.KEEP
    if kept:
        return "true_keep" if truth == "good" else "false_keep"
    return {"good": "missed_win", "harmful": "harmful_blocked", "neutral": "correct_discard"}[truth]


def tally_verdicts(
    verdicts: Iterable[Verdict],
    north_star: str,
    guardrails: list[GuardrailSpec],
    min_effect: float = 0.005,
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better",
    exchange: ExchangeSpec | None = None,
    directions: dict[str, str] | None = None,
) -> TruthTally:
    """Compare every verdict with the ground truth it carries (``Verdict.true_effects``).

    Pass the policy's ``exchange`` spec so that moderate losses the policy accepts are not
    counted as harm (see :func:`classify_truth`).
    """
    tally = TruthTally()
    for verdict in verdicts:
        truth, harmed = (
            classify_truth(
                verdict.true_effects,
                north_star,
                guardrails,
                min_effect,
                direction,
                exchange,
                directions,
            )
            if verdict.true_effects
            else ("unknown", [])
        )
        outcome = outcome_of(verdict.decision, truth)
        tally.counts[outcome] += 1
        tally.harmful_launches += int(verdict.decision == Decision.KEEP and truth == "harmful")
        tally.rows.append(
            TallyRow(
                experiment_id=verdict.experiment_id,
                decision=verdict.decision.value,
                truth=truth,
                outcome=outcome,
                true_north_star=verdict.true_effects.get(north_star),
                harmed=harmed,
            )
        )
    return tally
