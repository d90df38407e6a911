"""The offline brainstorm policy: Bayesian evidence over techniques, Thompson sampling.

Priors come from the research notes (each technique's prior effect and spread); each
past experiment with the same technique updates the prior like a noisy measurement
(cards from other worlds count with a reduced weight). What a card teaches follows its
typed root cause (:func:`agentx.models.lesson_of`): a measured A/B result counts as a
measurement; a change that was wrong at its value (guardrail harm, offline regression,
latency over budget) pushes the belief down *and* rules out that value and every stronger
one; defective code, broken readouts, refused launches and infrastructure failures teach
nothing. A Thompson draw from each posterior makes the policy explore early and exploit
what has worked in this world once evidence accumulates.

Parameter values are listed mild to strong; the next value follows the last outcome's
direction (a win or a promising null goes stronger, a harm or loss goes milder) instead of
always starting at the default.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentx.models import KnowledgeCard, Lesson, lesson_of
from agentx.research.catalog import Technique

# Lessons that say something about a technique's effect; the others (defective code or
# readouts, a refused launch, an infrastructure failure) are left out of the beliefs.
INFORMATIVE = frozenset({Lesson.MEASURED, Lesson.CHANGE_WRONG})


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
    retune: bool = False,
) -> Belief:
    """Gaussian update of the technique's prior with past outcomes.

    Two different effects, kept apart: adding the technique to a baseline without it (its
    research prior, updated by outcomes of applying it), and, with ``retune``, moving the
    parameters of the technique once merged (prior: no gain either way, with the technique's
    uncertainty; updated only by earlier retunes). A retune's -7% against a kept setting says
    nothing against the technique itself, and the technique's +8% when added says nothing
    about whether another value beats the kept one.
    """
    prior_mean = 0.0 if retune else technique.prior_effect
    precision = 1.0 / technique.prior_sd**2
    weighted = prior_mean * precision
    obs_precision = 1.0 / float(policy["observation_sd"]) ** 2
    same = other = harms = 0
    for card in cards:
        lesson = lesson_of(card.root_cause)
        if card.technique != technique.id or lesson not in INFORMATIVE:
            continue
        if card.retune != retune:
            continue
        weight = 1.0 if card.world == world else float(policy["similar_world_weight"])
        if weight <= 0:
            continue
        same += card.world == world
        other += card.world != world
        effect = card.effect
        if lesson == Lesson.CHANGE_WRONG:
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
    technique: Technique,
    tested: set[str],
    cards: list[KnowledgeCard],
    kept_elsewhere: list[KnowledgeCard] | None = None,
) -> dict[str, Any] | None:
    """The next untested parameters, following what this world's cards taught.

    ``cards`` are this world's cards of this repository's lineage (any technique). With no
    outcome of the technique yet, the default comes first, then values by distance from it.
    After an outcome, the first parameter with evidence is stepped in the direction the
    outcome points (see :func:`value_order`); values at or beyond one that was wrong are
    never proposed. ``kept_elsewhere`` are KEEP cards of the same world from other
    workspaces (a shared or pre-filled memory): a setting another team shipped, not yet
    tried here, comes first, the best measured first.
    """
    default = technique.default_params()
    shipped = sorted(
        (c for c in kept_elsewhere or [] if c.technique == technique.id),
        key=lambda c: (-c.effect, combo_key(c.technique, c.params)),
    )
    for card in shipped:
        params = {**default, **card.params}
        if combo_key(technique.id, params) not in tested:
            return params
    if not technique.params:
        return None if combo_key(technique.id, default) in tested else default
    own = [c for c in cards if c.technique == technique.id]
    for param in technique.params:
        for value in value_order(technique, param.name, own):
            params = {**default, param.name: value}
            if combo_key(technique.id, params) not in tested:
                return params
    return None


def value_order(technique: Technique, name: str, cards: list[KnowledgeCard]) -> list[Any]:
    """Values of parameter ``name`` in the order to try them, given this technique's cards.

    - a value that was wrong (harm, offline regression, latency) caps the parameter: only
      milder values remain, nearest first;
    - after a kept value, the next stronger one is tried first (the kept change may not be
      at its best yet), then milder ones;
    - after a measured gain that was not kept (inconclusive), stronger first too; after a
      measured loss, milder first;
    - beyond a measured value that did worse than the best one measured, on either side,
      nothing is tried: a parameter's effect is taken to rise and fall once over its range
      (the usual shape of a strength), so after +0.6% at 12 dimensions and -1.2% at 8, 6
      would only spend an experiment on a value the trend already argues against;
    - without evidence: the default, then values by distance from it (mild side first).
    """
    param = next(p for p in technique.params if p.name == name)
    values = list(param.values)
    default = technique.default_params()[name]

    def index(card: KnowledgeCard) -> int | None:
        value = card.params.get(name)
        return values.index(value) if value in values else None

    wrong = [
        i
        for c in cards
        if lesson_of(c.root_cause) == Lesson.CHANGE_WRONG
        if (i := index(c)) is not None
    ]
    cap = min(wrong) if wrong else len(values)
    measured = [
        (i, c)
        for c in cards
        if lesson_of(c.root_cause) == Lesson.MEASURED
        if (i := index(c)) is not None
    ]
    kept = [i for i, c in measured if c.decision == "KEEP"]
    gains = [i for i, c in measured if c.decision != "KEEP" and c.effect > 0]
    losses = [i for i, c in measured if c.decision != "KEEP" and c.effect <= 0]
    low, high = _unimodal_window(measured, kept)
    cap = min(cap, high + 1)
    if kept:
        anchor, step = max(kept), 1
    elif gains:
        anchor, step = max(gains), 1
    elif losses:
        anchor, step = min(losses), -1
    elif wrong:
        anchor, step = cap, -1
    else:
        anchor = values.index(default) if default in values else 0
        order = sorted(range(len(values)), key=lambda i: (abs(i - anchor), i))
        return [values[i] for i in order if i < cap]
    ahead = list(range(anchor + step, len(values) if step > 0 else -1, step))
    behind = list(range(anchor - step, -1 if step > 0 else len(values), -step))
    return [values[i] for i in [*ahead, *behind] if low <= i < cap]


def _unimodal_window(measured: list[tuple[int, KnowledgeCard]], kept: list[int]) -> tuple[int, int]:
    """The range of value indices worth trying, ``(low, high)`` inclusive: bounded on each
    side of the best measured value (the strongest kept one, else the highest mean effect)
    by the nearest measured value that did worse (``-1`` and a large index where no
    measured value bounds a side)."""
    effects: dict[int, list[float]] = {}
    for i, card in measured:
        effects.setdefault(i, []).append(card.effect)
    if not effects:
        return -1, 1 << 30
    mean = {i: sum(v) / len(v) for i, v in effects.items()}
    best = max(kept) if kept else max(mean, key=lambda i: (mean[i], -i))
    worse = [i for i in mean if mean[i] < mean[best]]
    high = min((i for i in worse if i > best), default=1 << 30)
    low = max((i for i in worse if i < best), default=-1)
    return low, high
