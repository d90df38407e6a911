"""Offline ranking metrics and data analysis against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from agentx.sandbox.analysis import fit_position_bias, gini
from agentx.sandbox.ranking_metrics import catalogue_coverage, ndcg_at_k, recall_at_k
from agentx.sandbox.target import SandboxTarget


def test_ndcg_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k = 40, 30, 5
    ranked = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    relevant = [
        set(rng.choice(n_items, size=rng.integers(1, 6), replace=False).tolist())
        for _ in range(n_users)
    ]
    # sklearn scores every item; give ranked items descending scores and the rest zero.
    scores = np.zeros((n_users, n_items))
    truth = np.zeros((n_users, n_items))
    for u in range(n_users):
        scores[u, ranked[u]] = np.arange(k, 0, -1)
        truth[u, list(relevant[u])] = 1.0
    expected = ndcg_score(truth, scores, k=k)
    assert abs(ndcg_at_k(ranked, relevant, k) - expected) < 1e-9


def test_recall_and_coverage_by_hand() -> None:
    ranked = np.array([[0, 1, 2], [3, 4, 5]])
    relevant = [{1, 9}, {7}]
    assert recall_at_k(ranked, relevant, 3) == (0.5 + 0.0) / 2
    assert catalogue_coverage(ranked, 12) == 0.5


def test_gini_and_position_bias() -> None:
    assert gini(np.ones(10)) == 0.0
    assert gini(np.r_[np.zeros(99), 1.0]) > 0.98
    ranks = np.arange(10)
    assert abs(fit_position_bias(0.2 * (1 + ranks) ** -0.8) - 0.8) < 1e-9


def test_data_report_and_offline_metrics(tiny_target: SandboxTarget) -> None:
    report = tiny_target.analyse_data()
    assert report.n_impressions > 0 and 0 < report.ctr < 1
    assert report.position_ctr[0] > report.position_ctr[-1]  # logs carry position bias
    assert 0 < report.tail_impression_share < 1
    assert any("position-bias" in finding for finding in report.findings)
    # between-user noise of the north star over the logged window, every user counted
    world = tiny_target.world_params
    noise = report.metric_noise["watch_time"]
    assert (noise.users, noise.days) == (world.n_users, world.log_days)
    watch = np.bincount(
        tiny_target.world.log.user, tiny_target.world.log.watch_time, minlength=world.n_users
    )
    assert noise.sd_relative == pytest.approx(watch.std(ddof=1) / watch.mean())
    offline = tiny_target.evaluate_offline(tiny_target.repo_path)
    assert 0 < offline.ndcg_at_k <= 1 and 0 < offline.recall_at_k <= 1
    assert offline.latency_ms > 0
