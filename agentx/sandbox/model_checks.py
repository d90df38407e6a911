"""Is a trained model numerically sound? Finite weights, finite scores, a falling loss.

A model trained to NaN (``learning_rate = 1e300``) still serves slates: ``argsort`` of
NaN scores is some order, and offline metrics of an arbitrary order can even beat the
baseline. So the dry run records the model's diagnostics through the template's public
API (``Model.ranker``: a ``LinearRanker`` with ``weights``, ``bias`` and
``loss_history``; ``Model.score``) and the trusted parent judges them.

Split in two on purpose: :func:`diagnose` runs inside the confined process (it needs the
model object) and only *measures*; :func:`judge` runs in the parent on the arrays the
child wrote, so the verdict is not the child's to make.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

PREFIX = "model_"  # keys of the diagnostics in the dry run's npz
SCORED_USERS = 50
SCORED_ITEMS = 40


def diagnose(model: Any, n_users: int, n_items: int, day: int) -> dict[str, np.ndarray]:
    """Weights, bias, loss history and a sample of served scores of a trained model.

    Missing attributes (a repository whose model is not the template's) give empty
    arrays, which :func:`judge` reports as such instead of crashing the run.
    """
    ranker = getattr(model, "ranker", None)
    weights = np.asarray(getattr(ranker, "weights", []), dtype=np.float64).ravel()
    bias = np.asarray([getattr(ranker, "bias", np.nan)], dtype=np.float64)
    history = np.asarray(getattr(ranker, "loss_history", ()), dtype=np.float64).ravel()
    users = np.arange(min(SCORED_USERS, n_users), dtype=np.int64)
    items = np.arange(min(SCORED_ITEMS, n_items), dtype=np.int64)
    pairs_u, pairs_i = np.repeat(users, items.size), np.tile(items, users.size)
    scores = np.asarray(model.score(pairs_u, pairs_i, day), dtype=np.float64).ravel()
    return {
        f"{PREFIX}weights": weights,
        f"{PREFIX}bias": bias,
        f"{PREFIX}loss_history": history,
        f"{PREFIX}scores": scores,
    }


def judge(arrays: Mapping[str, np.ndarray]) -> str | None:
    """One line naming what is unsound, or None when the model is sound.

    Sound: every weight, the bias and every sampled score finite; a loss history that is
    finite and ends lower than it starts (momentum may bump it in between).
    """
    needed = [f"{PREFIX}{name}" for name in ("weights", "bias", "loss_history", "scores")]
    missing = [name for name in needed if name not in arrays]
    if missing:
        return f"the dry run recorded no model diagnostics ({', '.join(missing)})"
    weights = np.asarray(arrays[f"{PREFIX}weights"], dtype=np.float64)
    bias = np.asarray(arrays[f"{PREFIX}bias"], dtype=np.float64)
    history = np.asarray(arrays[f"{PREFIX}loss_history"], dtype=np.float64)
    scores = np.asarray(arrays[f"{PREFIX}scores"], dtype=np.float64)
    if not np.isfinite(weights).all() or not np.isfinite(bias).all():
        bad = int((~np.isfinite(weights)).sum()) + int((~np.isfinite(bias)).sum())
        return f"the trained ranker has {bad} non-finite parameter(s) (NaN or infinite)"
    if scores.size == 0 or not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        return f"the model served {bad} of {scores.size} sampled scores non-finite"
    if history.size < 2:
        return f"the training loss history has {history.size} value(s): cannot see it fall"
    if not np.isfinite(history).all():
        first = int(np.flatnonzero(~np.isfinite(history))[0])
        return f"the training loss is not finite from epoch {first + 1}"
    if not history[-1] < history[0]:
        return (
            f"the training loss did not decrease ({history[0]:.6g} at the first epoch, "
            f"{history[-1]:.6g} at the last)"
        )
    return None
