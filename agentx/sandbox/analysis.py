"""First-look statistics of interaction logs: skew, long tail, cold start, position bias."""

from __future__ import annotations

import numpy as np

from agentx.sandbox.logs import InteractionLog
from agentx.target.models import DataReport, MetricNoise


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal, 1 = one holder)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    n = x.size
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def fit_position_bias(position_ctr: np.ndarray) -> float:
    """Slope eta of log CTR = a - eta log(1 + rank), by least squares."""
    ranks = np.arange(position_ctr.size)
    ok = position_ctr > 0
    if ok.sum() < 2:
        return 0.0
    slope = np.polyfit(np.log1p(ranks[ok]), np.log(position_ctr[ok]), 1)[0]
    return float(-slope)


def analyse_log(
    log: InteractionLog, n_users: int, n_items: int, item_category: np.ndarray, slate_size: int
) -> DataReport:
    """What a recommender engineer looks at first, with plain-language findings."""
    impressions_per_user = np.bincount(log.user, minlength=n_users)
    impressions_per_item = np.bincount(log.item, minlength=n_items)
    clicks_per_item = np.bincount(log.item, weights=log.click, minlength=n_items)
    order = np.argsort(-impressions_per_item, kind="stable")
    head = order[: int(round(0.2 * n_items))]
    tail_share = 1.0 - impressions_per_item[head].sum() / max(impressions_per_item.sum(), 1)
    cold = float((impressions_per_item == 0).mean())
    categories = np.bincount(item_category[log.item], minlength=int(item_category.max()) + 1)
    mix = {
        f"category_{c}": round(float(n / max(log.item.size, 1)), 4)
        for c, n in enumerate(categories)
    }
    shown = np.bincount(log.position, minlength=slate_size).astype(np.float64)
    clicked = np.bincount(log.position, weights=log.click, minlength=slate_size)
    position_ctr = np.divide(clicked, shown, out=np.zeros_like(clicked), where=shown > 0)
    eta = fit_position_bias(position_ctr)
    ctr = float(log.click.mean()) if log.click.size else 0.0
    findings = [
        f"tail items (the 80% least shown) get {tail_share:.1%} of impressions",
        f"{cold:.1%} of items have no logged impression (cold start)",
        f"CTR falls from {position_ctr[0]:.3f} at rank 1 to {position_ctr[-1]:.3f} at rank "
        f"{slate_size} (position-bias exponent ~{eta:.2f})",
        f"item popularity Gini {gini(clicks_per_item):.2f}, user activity Gini "
        f"{gini(impressions_per_user):.2f}",
    ]
    segments = segment_mix(log, item_category, impressions_per_user)
    findings.append(
        f"{segments['new']:.0%} of logged users are new (first seen after the first two days), "
        f"heavy users (top 20% by impressions) see {segments['heavy_impression_share']:.0%} of "
        f"impressions; {segments['focused']:.0%} of clicking users concentrate on one category, "
        f"{segments['broad']:.0%} spread their clicks: a change can help one group and hurt another"
    )
    return DataReport(
        n_users=n_users,
        n_items=n_items,
        n_impressions=int(log.item.size),
        n_clicks=int(log.click.sum()),
        ctr=ctr,
        user_activity_gini=gini(impressions_per_user),
        item_popularity_gini=gini(clicks_per_item),
        tail_impression_share=float(tail_share),
        cold_start_item_share=cold,
        category_mix=mix,
        position_ctr=[round(float(v), 5) for v in position_ctr],
        position_bias_eta=eta,
        segment_mix=segments,
        findings=findings,
        metric_noise=metric_noise(log, n_users),
    )


def metric_noise(log: InteractionLog, n_users: int) -> dict[str, MetricNoise]:
    """Per-user sums of the logged window's sum metrics (every user, inactive ones at 0):
    their sd over their mean. Without CUPED and over the log's window, which is no longer
    than an experiment's final stage, this overstates a final stage's noise: traffic sized
    with it errs towards fewer experiments side by side."""
    if log.day.size == 0 or n_users < 2:
        return {}
    days = int(log.day.max()) - int(log.day.min()) + 1
    sums = {
        "watch_time": np.bincount(log.user, weights=log.watch_time, minlength=n_users),
        "clicks": np.bincount(log.user, weights=log.click, minlength=n_users),
        "impressions": np.bincount(log.user, minlength=n_users).astype(np.float64),
    }
    noise = {}
    for name, values in sums.items():
        mean = float(values.mean())
        sd = float(values.std(ddof=1))
        if mean > 0.0 and sd > 0.0:
            noise[name] = MetricNoise(sd_relative=sd / mean, users=n_users, days=days)
    return noise


def segment_mix(
    log: InteractionLog, item_category: np.ndarray, impressions_per_user: np.ndarray
) -> dict[str, float]:
    """Observable user segments of the log: new vs established, heavy vs light, focused vs
    broad tastes (share of a user's clicks in their top category, users with 3+ clicks)."""
    logged = np.flatnonzero(impressions_per_user > 0)
    if logged.size == 0 or log.day.size == 0:
        return {"new": 0.0, "heavy_impression_share": 0.0, "focused": 0.0, "broad": 0.0}
    first_day = np.full(impressions_per_user.size, np.iinfo(np.int64).max)
    np.minimum.at(first_day, log.user, log.day.astype(np.int64))
    new = float((first_day[logged] > int(log.day.min()) + 1).mean())
    per_user = impressions_per_user[logged]
    heavy = per_user >= np.quantile(per_user, 0.8)
    heavy_share = float(per_user[heavy].sum() / per_user.sum())
    clicked = log.click > 0
    n_cat = int(item_category.max()) + 1
    pairs = log.user[clicked].astype(np.int64) * n_cat + item_category[log.item[clicked]]
    counts = np.bincount(pairs, minlength=impressions_per_user.size * n_cat).reshape(-1, n_cat)
    totals = counts.sum(axis=1)
    judged = totals >= 3
    top_share = counts[judged].max(axis=1) / totals[judged]
    focused = float((top_share >= 0.5).mean()) if judged.any() else 0.0
    return {
        "new": round(new, 4),
        "heavy_impression_share": round(heavy_share, 4),
        "focused": round(focused, 4),
        "broad": round(1.0 - focused if judged.any() else 0.0, 4),
    }
