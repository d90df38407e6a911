"""Checks on a target's readout before any statistic is read from it.

Why: a readout comes from someone else's experimentation platform (or a crashed arm), so it
can be malformed in ways numpy would happily compute on — a metric array one user short, a
NaN that turns every mean into NaN, an arm with nobody in it. Each problem must become a clear
recorded outcome (halt with a reason, metric marked not measurable), never an exception deep
inside the loop and never a silently wrong effect.
"""

from __future__ import annotations

import numpy as np

from agentx.stats import StatsError
from agentx.target.models import OnlineReadout


def readout_defect(readout: OnlineReadout) -> str | None:
    """Why the readout as a whole is unusable (two arms with user lists), or None if usable."""
    arms = list(readout.arms)
    if len(arms) != 2 or arms[0] == arms[1]:
        return f"expected two distinct arms (control, treatment), got {arms}"
    for arm in arms:
        users = readout.users.get(arm)
        if users is None:
            return f"no user list for arm {arm!r}"
        if np.ndim(users) != 1:
            return f"user list of arm {arm!r} is not one-dimensional"
    return None


def arm_sizes(readout: OnlineReadout) -> list[int]:
    """Users per arm, in ``readout.arms`` order (call after :func:`readout_defect`)."""
    return [int(np.size(readout.users[arm])) for arm in readout.arms]


def metric_array(readout: OnlineReadout, arm: str, key: str) -> np.ndarray:
    """The per-user values ``key`` of ``arm``, checked: present, one per user, finite.

    Raises StatsError with a message naming the metric, the arm and the problem.
    """
    values = readout.metrics.get(arm, {}).get(key)
    if values is None:
        raise StatsError(f"{key!r} is missing from the {arm} arm's readout")
    return _checked(values, arm, key, int(np.size(readout.users[arm])))


def pre_array(readout: OnlineReadout, arm: str, key: str) -> np.ndarray | None:
    """The pre-period covariate ``key`` of ``arm``, or None if absent or unusable.

    A bad covariate only costs variance reduction (CUPED is skipped), so it is not an error.
    """
    values = readout.pre.get(arm, {}).get(key)
    if values is None:
        return None
    try:
        return _checked(values, arm, key, int(np.size(readout.users[arm])))
    except StatsError:
        return None


def _checked(values: object, arm: str, key: str, n_users: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise StatsError(f"{key!r} of the {arm} arm is not numeric: {error}") from None
    if arr.ndim != 1 or arr.size != n_users:
        raise StatsError(
            f"{key!r} of the {arm} arm has {arr.size} values for {n_users} users "
            "(one value per user expected)"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise StatsError(
            f"{key!r} of the {arm} arm has {int(bad.sum())} NaN/inf value(s) of {arr.size}"
        )
    return arr
