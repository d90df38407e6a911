"""Re-ranking: turn scored candidates into a slate of ``k`` unique items.

Slates are built greedily, one slot at a time for all users at once (the loop runs over the
``k`` slots, never over users). At each slot every registered rule may add an adjustment to
the candidates' scores (``-inf`` forbids a candidate); the best adjusted candidate is taken,
then each rule observes the pick to update its own state. Rules therefore compose: a hard
category cap and a soft diversity penalty simply add up.

A rule is registered as a factory ``fn(state) -> SlotRule | None``; returning ``None`` means
"disabled by config", so every registered rule runs in registry order whenever it is enabled.

Exploration runs after the greedy pass and replaces the last ``rerank.exploration_slots``
slots with random released items outside the slate head, keyed on (seed, day, user).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .config import RerankConfig
from .context import FeatureContext
from .history import pairs_in
from .randomness import keyed_uniform


@dataclass
class SlateState:
    """The slates under construction, shared by all rules."""

    ctx: FeatureContext
    users: np.ndarray  # int64 [n]
    day: int
    candidates: np.ndarray  # int64 [n, C], -1 = padding
    scores: np.ndarray  # float64 [n, C], ranker scores, -inf on padding
    selected: np.ndarray  # int64 [n, k], items picked so far, -1 = empty
    slot: int = 0  # the slot being filled

    @property
    def config(self) -> RerankConfig:
        return self.ctx.config.rerank

    def candidate_values(self, table: np.ndarray) -> np.ndarray:
        """Look up a per-item table for every candidate: [n, C, ...] (padding reads item 0)."""
        return table[np.maximum(self.candidates, 0)]


class SlotRule(Protocol):
    """Per-slot score adjustment with its own incremental state."""

    def adjust(self, state: SlateState) -> np.ndarray:
        """Additive adjustment [n, C] for the current slot; ``-inf`` forbids a candidate."""
        ...

    def observe(self, state: SlateState, picked: np.ndarray) -> None:
        """``picked[i]`` is the candidate column chosen for row i this slot (-1 = none)."""
        ...


RuleFactory = Callable[[SlateState], SlotRule | None]


class _CategoryCap:
    """Counts, per candidate, the picks so far in its category; forbids it at the cap."""

    def __init__(self, state: SlateState, cap: int) -> None:
        self.cap = cap
        self.categories = state.candidate_values(state.ctx.dataset.items.category)
        self.used = np.zeros(state.candidates.shape, dtype=np.int16)  # picks in own category
        self.penalty = np.zeros(state.candidates.shape)

    def adjust(self, state: SlateState) -> np.ndarray:
        return self.penalty

    def observe(self, state: SlateState, picked: np.ndarray) -> None:
        rows = np.arange(picked.shape[0])
        picked_category = np.where(picked >= 0, self.categories[rows, picked], -1)
        self.used += self.categories == picked_category[:, None]
        self.penalty[self.used >= self.cap] = -np.inf


def category_cap(state: SlateState) -> SlotRule | None:
    """Hard cap of ``rerank.category_cap`` items per category per slate (0 = off).

    If the cap leaves no candidate for a slot, the slot falls back to the best remaining
    candidate: a slate is never left short because of the cap.
    """
    cap = state.config.category_cap
    return _CategoryCap(state, cap) if cap > 0 else None


class _SeenFilter:
    """A fixed per-candidate demotion: clicked before, or shown lately without a click."""

    def __init__(self, state: SlateState, seen: float, recent: float, days: int) -> None:
        ctx, users, candidates = state.ctx, state.users, state.candidates
        self.penalty = np.zeros(candidates.shape)
        clicked = np.zeros(candidates.shape, dtype=bool)
        if seen > 0:
            clicked = pairs_in(ctx.clicks, users, candidates)
            self.penalty[clicked] -= seen
        if recent > 0 and days > 0:
            shown = pairs_in(_shown_lately(ctx, state.day, days), users, candidates)
            self.penalty[shown & ~clicked] -= recent

    def adjust(self, state: SlateState) -> np.ndarray:
        return self.penalty

    def observe(self, state: SlateState, picked: np.ndarray) -> None:
        """Stateless across slots: the user's history does not change while a slate is built."""


def _shown_lately(ctx: FeatureContext, day: int, days: int) -> sp.csr_matrix:
    """(user, item) pairs shown without a click on any of the ``days`` days before ``day``.

    One matrix for the serving day, kept in ``ctx.memo`` (the latest day only), so each batch
    of users makes one lookup instead of one per day of the window.
    """
    cached: dict[tuple[int, int], sp.csr_matrix] = ctx.memo("shown_lately", dict)
    if (day, days) not in cached:
        window = [past.shown for past in ctx.recent if day - days <= past.day < day]
        union = sp.csr_matrix((ctx.n_users, ctx.n_items), dtype=np.int8)
        for shown in window:
            union = union + shown
            union.data[:] = 1  # shown on several days is still "shown" (and cannot overflow)
        union.sort_indices()
        cached.clear()
        cached[(day, days)] = union
    return cached[(day, days)]


def seen_filter(state: SlateState) -> SlotRule | None:
    """Demote what the user already watched, and mildly what they just ignored.

    Items the user clicked (historical log and every ``update``) lose ``rerank.seen_penalty``
    (click-logit units; 5 cuts the odds ~150-fold, so they return only when every unseen
    candidate left is far weaker); items shown without a click in the last
    ``rerank.recent_impression_days`` days before the serving day lose
    ``rerank.recent_impression_penalty`` (impression fatigue: a recent skip is weak evidence
    against an item, and a fresh slate is worth more). Finite on
    purpose: ``-inf`` would trip the greedy fallback, which bypasses every rule (the category
    cap included) once all remaining candidates are forbidden. 0 switches either part off.
    """
    config = state.config
    seen, recent = config.seen_penalty, config.recent_impression_penalty
    if seen <= 0 and (recent <= 0 or config.recent_impression_days <= 0):
        return None
    return _SeenFilter(state, seen, recent, config.recent_impression_days)


# <extension:rerank>  (recipes insert new rules above this line)


RERANK_RULES: dict[str, RuleFactory] = {
    "category_cap": category_cap,
    "seen_filter": seen_filter,
    # <registry:rerank>  (recipes insert new entries above this line)
}


def greedy_select(state: SlateState, rules: list[SlotRule], k: int) -> np.ndarray:
    """Fill ``state.selected`` slot by slot; returns it (int64 [n, k], -1 if too few items)."""
    candidates = state.candidates
    rows = np.arange(candidates.shape[0])
    remaining = state.scores.copy()  # -inf marks padding and already-picked candidates
    for slot in range(min(k, candidates.shape[1])):
        state.slot = slot
        adjusted = remaining
        for rule in rules:
            adjusted = adjusted + rule.adjust(state)
        pick = np.argmax(adjusted, axis=1)
        blocked = np.isneginf(adjusted[rows, pick])
        if rules and blocked.any():  # rules forbade everything left: fall back to raw order
            pick = np.where(blocked, np.argmax(remaining, axis=1), pick)
        has = ~np.isneginf(remaining[rows, pick])
        pick = np.where(has, pick, -1)
        state.selected[:, slot] = np.where(has, candidates[rows, pick], -1)
        remaining[rows[has], pick[has]] = -np.inf
        for rule in rules:
            rule.observe(state, pick)
    return state.selected


_MAX_DRAWS = 32  # rejection-sampling rounds per exploration slot before the exact fallback


def explore(state: SlateState, n_slots: int, seed: int) -> np.ndarray:
    """Replace the last ``n_slots`` of each slate with random released items not in the slate.

    Draws are keyed on (seed, day, user, slot, round), so a user's slate does not depend on
    which other users are served in the same batch.
    """
    slate = state.selected
    k = slate.shape[1]
    released = np.flatnonzero(state.ctx.released(state.day))
    n_slots = min(n_slots, k)
    if n_slots == 0 or released.size == 0:
        return slate
    for slot in range(k - n_slots, k):
        chosen = np.full(slate.shape[0], -1, dtype=np.int64)
        pending = np.arange(slate.shape[0])
        for draw_round in range(_MAX_DRAWS):
            u = keyed_uniform(seed, state.day, state.users[pending], slot * _MAX_DRAWS + draw_round)
            draw = released[np.minimum((u * released.size).astype(np.int64), released.size - 1)]
            clash = (slate[pending, :slot] == draw[:, None]).any(axis=1)
            chosen[pending[~clash]] = draw[~clash]
            pending = pending[clash]
            if pending.size == 0:
                break
        for row in pending:  # tiny catalogues only: first released item not yet in the slate
            unused = np.setdiff1d(released, slate[row, :slot], assume_unique=False)
            chosen[row] = unused[0] if unused.size else -1
        slate[:, slot] = chosen
    return slate


def rerank(
    ctx: FeatureContext,
    users: np.ndarray,
    day: int,
    candidates: np.ndarray,
    scores: np.ndarray,
    k: int,
    seed: int,
) -> np.ndarray:
    """Apply every enabled rule greedily, then exploration; int64 [n, k] item ids."""
    state = SlateState(
        ctx=ctx,
        users=users,
        day=day,
        candidates=candidates,
        scores=np.where(candidates >= 0, scores, -np.inf),
        selected=np.full((users.shape[0], k), -1, dtype=np.int64),
    )
    rules = [rule for factory in RERANK_RULES.values() if (rule := factory(state)) is not None]
    greedy_select(state, rules, k)
    return explore(state, ctx.config.rerank.exploration_slots, seed)
