"""Daily incremental retraining on the model's own traffic (``Model.update``).

A production recommender does not serve one frozen model for weeks: every night it folds the
day's impressions and clicks of its own traffic into its statistics and embeddings, so
tomorrow's slates reflect today's clicks (and do not re-serve what the user just watched).
A full refit every day would cost as much as ``train()`` (seconds to minutes at 200k users),
so the update is incremental and costs O(one day of traffic):

* counts (item / user clicks and impressions, global CTR): the day's counts are added, so
  they equal exactly what ``train()`` would count on the concatenated log;
* the click-count matrix (ALS input and the seen-item filter) gains the day's clicks, and the
  recent-impression window drops its oldest day and gains this one;
* ALS fold-in: every user with a new click is re-solved (one user half-step, whole
  accumulated click row, item factors fixed); every item that had no clicks when the factors
  were last fully fitted (a new release) and got clicks today is re-solved against the
  updated user factors. Items known to the last full fit keep their factors, and the linear
  ranker keeps its weights, until the next ``train()``;
* a new item's implicit negatives are the users this model served since the item's release
  (who could have seen it), not every user it knows: counting users who never had the
  chance shrinks the factors of items whose audience was small. A model that serves a 5%
  arm of an A/B saw its new items as if 95% of the users had passed them over, so they
  never reached its MF channel, and the arm read a change that relies on new items
  (the freshness channel) as a loss that serving everyone would not have;
* the log in ``ctx.dataset`` grows through an amortised buffer, and the ``ctx.memo`` cache is
  cleared, so memoised tables (e.g. of recipes' features) are rebuilt from the longer log.

Arrays of the context are replaced, never written in place, so a copy of an earlier context
keeps seeing its own consistent state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .context import FeatureContext
from .data import DataError, Dataset, Interactions, LogBuffer, check_log, interactions_from_arrays
from .history import DayImpressions, click_matrix, shown_without_click
from .mf import Factors, fold_in
from .timing import Laps

# Spare log capacity reserved at the start, as a multiple of the log. np.empty only commits
# pages when they are written, so unused spare costs address space, not memory; 3x lets a
# 14-day log take 42 more days before the one regrowth copy (a spike of ~1 s at 30M rows).
LOG_SPARE = 3.0
NEVER_SEEN = -(2**62)  # ``OnlineState.last_seen`` of a user the model never served


@dataclass
class OnlineState:
    """What ``update()`` keeps beyond the :class:`FeatureContext`."""

    buffer: LogBuffer  # owns the rows of ``ctx.dataset.log``
    fitted_items: np.ndarray  # bool [n_items]: items with clicks at the last full ALS fit
    last_seen: np.ndarray  # int64 [n_users]: last day the user was served (NEVER_SEEN if not)

    @classmethod
    def start(cls, ctx: FeatureContext) -> OnlineState:
        """State right after a full fit; points ``ctx.dataset.log`` at the buffer's rows."""
        log = ctx.dataset.log
        buffer = LogBuffer(log, spare_rows=int(len(log) * LOG_SPARE))
        ctx.dataset = dataclasses.replace(ctx.dataset, log=buffer.log)
        last_seen = np.full(ctx.dataset.meta.n_users, NEVER_SEEN, dtype=np.int64)
        np.maximum.at(last_seen, log.user, log.day.astype(np.int64))
        return cls(buffer=buffer, fitted_items=ctx.item_clicks > 0, last_seen=last_seen)


def check_feedback(feedback: Interactions, dataset: Dataset) -> Interactions:
    """Normalised feedback of one new day; :class:`DataError` on anything else.

    Rows must share one day, later than every day the model has seen (``meta.last_day``),
    with ids in range and items released by that day: the same contract as the loaded log.
    """
    if not isinstance(feedback, Interactions):
        raise DataError(
            f"feedback must be a recsys.data.Interactions (see interactions_from_arrays), "
            f"got {type(feedback).__name__}"
        )
    fields = {f.name: getattr(feedback, f.name) for f in dataclasses.fields(Interactions)}
    log = interactions_from_arrays(**fields)
    if len(log) == 0:
        return log
    day = int(log.day.min())
    if int(log.day.max()) != day:
        raise DataError(f"feedback must hold one day, got days {day}..{int(log.day.max())}")
    if day <= dataset.meta.last_day:
        raise DataError(
            f"feedback day {day} is not after the last day the model has seen "
            f"({dataset.meta.last_day})"
        )
    check_log(log, dataset.meta, dataset.items, "feedback")
    return log


def apply_day(ctx: FeatureContext, state: OnlineState, day_log: Interactions) -> dict[str, float]:
    """Fold one validated, non-empty day into ``ctx``; returns wall seconds per stage."""
    lap = Laps()

    meta = ctx.dataset.meta
    n_users, n_items = meta.n_users, meta.n_items
    day = int(day_log.day[0])
    click = day_log.click.astype(np.float64)
    ctx.item_clicks = ctx.item_clicks + np.bincount(day_log.item, click, n_items)
    ctx.item_impressions = ctx.item_impressions + np.bincount(day_log.item, minlength=n_items)
    ctx.user_clicks = ctx.user_clicks + np.bincount(day_log.user, click, n_users)
    ctx.user_impressions = ctx.user_impressions + np.bincount(day_log.user, minlength=n_users)
    ctx.global_ctr = float(ctx.item_clicks.sum() / ctx.item_impressions.sum())
    state.last_seen[day_log.user] = day
    lap("counts")

    ctx.clicks = ctx.clicks + click_matrix(day_log, n_users, n_items)
    ctx.clicks.sort_indices()  # a no-op when scipy already returned sorted indices
    window = ctx.config.rerank.recent_impression_days
    kept = tuple(past for past in ctx.recent if past.day > day - window)
    if window > 0:
        kept += (DayImpressions(day=day, shown=shown_without_click(day_log, n_users, n_items)),)
    ctx.recent = kept
    lap("history")

    state.buffer.append(day_log)
    ctx.dataset = Dataset(
        meta=dataclasses.replace(meta, last_day=day),
        items=ctx.dataset.items,
        log=state.buffer.log,
    )
    ctx.clear_memo()
    lap("log")

    ctx.factors = _fold_in_day(ctx, state, day_log)
    lap("mf")
    return lap.seconds


def _fold_in_day(ctx: FeatureContext, state: OnlineState, day_log: Interactions) -> Factors:
    """Re-solve the users who clicked today, then the new items clicked today."""
    rc = ctx.config.retrieval
    clicked = day_log.click == 1
    users = np.unique(day_log.user[clicked])
    items = np.unique(day_log.item[clicked])
    items = items[~state.fitted_items[items]]
    user_factors, item_factors = ctx.factors.user, ctx.factors.item
    if users.size:
        user_factors = user_factors.copy()
        solved = fold_in(ctx.clicks[users], item_factors, rc.mf_reg, rc.mf_alpha)
        user_factors[users] = solved.astype(user_factors.dtype)
    if items.size:
        item_factors = item_factors.copy()
        released = ctx.dataset.items.release_day[items]
        days = np.unique(released)
        grams = served_since(user_factors, state.last_seen, days)
        for day, gram in zip(days, grams, strict=True):
            group = items[released == day]
            clickers = ctx.clicks[:, group].T.tocsr()  # [new items, n_users]
            solved = fold_in(clickers, user_factors, rc.mf_reg, rc.mf_alpha, gram)
            item_factors[group] = solved.astype(item_factors.dtype)
    return Factors(user=user_factors, item=item_factors)


def served_since(factors: np.ndarray, last_seen: np.ndarray, days: np.ndarray) -> np.ndarray:
    """``F^T F`` over the users last served on or after each of ``days`` (ascending), float64
    [len(days), dim, dim]: the implicit negatives of items released on those days.

    Users are sorted once by which of the days their last visit follows (a stable sort, so
    each segment keeps the users' order), each segment's outer products summed, and the sums
    accumulated from the latest day back: one pass over the users however many release days
    there are.
    """
    dim = factors.shape[1]
    segment = np.searchsorted(days, last_seen, side="right") - 1  # -1: before every day
    order = np.argsort(segment, kind="stable")
    bounds = np.searchsorted(segment[order], np.arange(days.size + 1))
    ordered = np.asarray(factors, dtype=np.float64)[order]
    grams = np.zeros((days.size, dim, dim))
    for index in range(days.size):
        rows = ordered[bounds[index] : bounds[index + 1]]
        grams[index] = rows.T @ rows
    return np.cumsum(grams[::-1], axis=0)[::-1]
