"""First-look statistics of interaction logs: skew, long tail, cold start, position bias."""

from __future__ import annotations

import numpy as np

from agentx.sandbox.logs import InteractionLog
from agentx.target.models import DataReport


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
        findings=findings,
    )
