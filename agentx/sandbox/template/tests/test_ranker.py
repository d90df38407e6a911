"""The ranker learns, every registered loss has a correct gradient, weights are sane."""

from __future__ import annotations

import numpy as np
import pytest

from recsys import Config, Model
from recsys.debias import WEIGHTING, sample_weights
from recsys.ranker import LOSSES, LossInput, fit_ranker


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _separable(seed: int, n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slates of 10 rows; clicks depend on two of three features; a third is pure noise."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 3)) * [1.0, 3.0, 1.0] + [0.0, 5.0, 0.0]
    logit = 2.0 * features[:, 0] - 0.5 * (features[:, 1] - 5.0) - 1.0
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    groups = np.arange(n) // 10
    return features, labels, groups


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_ranker_learns_a_planted_signal(config: Config, loss: str) -> None:
    features, labels, groups = _separable(seed=1)
    data = LossInput(labels=labels, weights=np.ones(labels.size), groups=groups, seed=0)
    ranker = fit_ranker(features, data, config.with_overrides({"ranker.loss": loss}).ranker)
    test_features, test_labels, _ = _separable(seed=2)
    assert _auc(ranker.score(test_features), test_labels) > 0.8
    assert ranker.weights[0] > 0 and ranker.weights[1] < 0
    assert ranker.loss_history[-1] < ranker.loss_history[0]


def test_pointwise_scores_are_calibrated_logits(config: Config) -> None:
    features, labels, groups = _separable(seed=3)
    data = LossInput(labels=labels, weights=np.ones(labels.size), groups=groups, seed=0)
    ranker = fit_ranker(features, data, config.ranker)
    predicted = 1.0 / (1.0 + np.exp(-ranker.score(features)))
    assert abs(predicted.mean() - labels.mean()) < 0.01


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loss_gradient_matches_finite_differences(loss: str) -> None:
    rng = np.random.default_rng(0)
    n = 60
    labels = (rng.random(n) < 0.3).astype(np.float64)
    labels[::10] = 1.0  # every slate of 10 has a click and a non-click
    labels[1::10] = 0.0
    data = LossInput(labels, rng.uniform(0.5, 2.0, n), np.arange(n) // 10, seed=0)
    loss_fn = LOSSES[loss](data)
    scores = rng.normal(size=n)
    value, grad = loss_fn(scores)
    assert np.isfinite(value) and grad.shape == (n,)
    eps = 1e-6
    for i in range(0, n, 7):
        bumped = scores.copy()
        bumped[i] += eps
        numeric = (loss_fn(bumped)[0] - value) / eps
        assert numeric == pytest.approx(grad[i], abs=1e-5)


@pytest.mark.parametrize("name", sorted(WEIGHTING))
def test_weighting_is_positive_finite_mean_one(model: Model, config: Config, name: str) -> None:
    log = model.ctx.dataset.log
    weights = sample_weights(log, config.with_overrides({"ranker.debias": name}))
    assert weights.shape == (len(log),)
    assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
    assert weights.mean() == pytest.approx(1.0)


def test_score_folds_standardisation(model: Model) -> None:
    ranker = model.ranker
    rows = np.random.default_rng(0).normal(size=(5, ranker.weights.size))
    expected = ((rows - ranker.mean) / ranker.scale) @ ranker.weights + ranker.bias
    np.testing.assert_allclose(ranker.score(rows), expected)
