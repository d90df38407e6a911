"""The offline brainstorm policy: Bayesian evidence over techniques, Thompson sampling.

Priors come from the research notes (each technique's prior effect and spread); each
past experiment with the same technique updates the prior like a noisy measurement
(cards from other worlds count with a reduced weight); guardrail breaches push the
belief down; defective readouts and launches refused by a reviewer teach nothing. A
Thompson draw from each posterior makes the policy explore early and exploit what has
worked in this world once evidence accumulates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentx.models import KnowledgeCard
from agentx.research.catalog import Technique

# Outcomes that say nothing about a technique's effect: a defective change or readout, and a
# launch a reviewer refused past the canary (a human decision, not a measurement).
UNINFORMATIVE_CAUSES = frozenset({"implementation_defect", "launch_refused"})


@dataclass(frozen=True)
class Belief:
    """Posterior belief about a technique's relative effect on the objective."""

    mean: float
    sd: float
    n_same_world: int
    n_other_world: int
    harms: int

    def prob_positive(self) -> float:
        """Posterior probability that the effect is positive."""
        return 0.5 * (1.0 + math.erf(self.mean / (self.sd * math.sqrt(2.0))))


def combo_key(technique: str, params: dict[str, Any]) -> str:
    """Identity of a technique with its parameters, used by the avoid set."""
    return f"{technique}:{json.dumps(params, sort_keys=True)}"


def belief_for(
    technique: Technique,
    cards: list[KnowledgeCard],
    world: str,
    policy: dict[str, float],
) -> Belief:
    """Gaussian update of the technique's prior with past outcomes."""
    precision = 1.0 / technique.prior_sd**2
    weighted = technique.prior_effect * precision
    obs_precision = 1.0 / float(policy["observation_sd"]) ** 2
    same = other = harms = 0
    for card in cards:
        if card.technique != technique.id or card.root_cause in UNINFORMATIVE_CAUSES:
            continue
        weight = 1.0 if card.world == world else float(policy["similar_world_weight"])
        if weight <= 0:
            continue
        same += card.world == world
        other += card.world != world
        effect = card.effect
        if card.root_cause == "guardrail_harm":
            harms += 1
            effect -= float(policy["harm_penalty"])
        precision += weight * obs_precision
        weighted += weight * obs_precision * effect
    mean = weighted / precision
    return Belief(mean, 1.0 / math.sqrt(precision), same, other, harms)


def thompson_draw(belief: Belief, rng: np.random.Generator) -> float:
    """One draw of the effect from the posterior."""
    return float(rng.normal(belief.mean, belief.sd))


def choose_params(
    technique: Technique, tested: set[str], kept_cards: list[KnowledgeCard]
) -> dict[str, Any] | None:
    """Untested parameters: the default first, then values near what won before."""
    default = technique.default_params()
    if not technique.params:
        return None if combo_key(technique.id, default) in tested else default
    candidates: list[dict[str, Any]] = [default]
    for param in technique.params:
        for value in param.values:
            candidates.append({**default, param.name: value})
    wins = [c.params for c in kept_cards if c.technique == technique.id]
    if wins:
        anchor = wins[-1]
        candidates.sort(key=lambda c: sum(c.get(k) != v for k, v in anchor.items()))
    for params in candidates:
        if combo_key(technique.id, params) not in tested:
            return params
    return None
