"""CUPED and compare_metric: variance reduction ~ rho^2, unbiased effects, honest intervals."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agentx.stats import StatsError, compare_metric, cuped_adjust, welch_effect

pytestmark = pytest.mark.filterwarnings("error")

RHO = 0.7
X_MEAN = 5.0  # non-zero on purpose: forgetting to centre x would bias the adjusted means
Y_MEAN = 10.0
EFFECT = 0.1


def _correlated(
    rng: np.random.Generator, shape: tuple[int, ...], effect: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-period x and outcome y with corr(x, y) = RHO and unit variances."""
    x = rng.normal(size=shape)
    y = RHO * x + math.sqrt(1 - RHO**2) * rng.normal(size=shape)
    return X_MEAN + x, Y_MEAN + effect + y


@pytest.fixture(scope="module")
def sims() -> dict[str, np.ndarray]:
    """1000 experiments with 1000 users per arm and a true effect of EFFECT."""
    rng = np.random.default_rng(123)
    n_sims, n = 1000, 1000
    xc, yc = _correlated(rng, (n_sims, n))
    xt, yt = _correlated(rng, (n_sims, n), effect=EFFECT)
    out: dict[str, list[float]] = {k: [] for k in ("raw", "cup", "red", "cmean", "hit", "rhit")}
    for i in range(n_sims):
        raw = compare_metric(yc[i], yt[i])
        cup = compare_metric(yc[i], yt[i], xc[i], xt[i])
        out["raw"].append(raw.absolute)
        out["cup"].append(cup.absolute)
        out["red"].append(cup.variance_reduction)
        out["cmean"].append(cup.control_mean)
        out["hit"].append(cup.ci_low_abs <= EFFECT <= cup.ci_high_abs)
        out["rhit"].append(cup.ci_low_rel <= EFFECT / Y_MEAN <= cup.ci_high_rel)
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def test_variance_reduction_close_to_rho_squared(sims: dict[str, np.ndarray]) -> None:
    assert np.mean(sims["red"]) == pytest.approx(RHO**2, abs=0.01)
    # The sampling sd of the effect shrinks by sqrt(1 - rho^2), not just the reported number.
    ratio = np.std(sims["cup"]) / np.std(sims["raw"])
    assert ratio == pytest.approx(math.sqrt(1 - RHO**2), abs=0.05)


def test_cuped_effect_and_means_are_unbiased(sims: dict[str, np.ndarray]) -> None:
    se_of_mean = np.std(sims["cup"]) / math.sqrt(sims["cup"].size)
    assert abs(np.mean(sims["cup"]) - EFFECT) < 4 * se_of_mean
    se_cmean = np.std(sims["cmean"]) / math.sqrt(sims["cmean"].size)
    assert abs(np.mean(sims["cmean"]) - Y_MEAN) < 4 * se_cmean


def test_cuped_intervals_cover(sims: dict[str, np.ndarray]) -> None:
    n = sims["hit"].size
    tol = 3.9 * math.sqrt(0.95 * 0.05 / n)
    assert abs(np.mean(sims["hit"]) - 0.95) <= tol
    assert abs(np.mean(sims["rhit"]) - 0.95) <= tol


def test_theta_is_pooled_ols_slope_and_means_preserved() -> None:
    rng = np.random.default_rng(4)
    xc, yc = _correlated(rng, (300,))
    xt, yt = _correlated(rng, (200,), effect=0.5)
    res = cuped_adjust(yc, xc, yt, xt)
    slope = np.polyfit(np.concatenate([xc, xt]), np.concatenate([yc, yt]), 1)[0]
    assert res.theta == pytest.approx(slope, rel=1e-10)
    x_bar = np.concatenate([xc, xt]).mean()
    assert res.y_control_adj == pytest.approx(yc - slope * (xc - x_bar))
    pooled_raw = np.concatenate([yc, yt])
    pooled_adj = np.concatenate([res.y_control_adj, res.y_treatment_adj])
    assert pooled_adj.mean() == pytest.approx(pooled_raw.mean(), rel=1e-12)
    assert res.variance_reduction == pytest.approx(1 - pooled_adj.var() / pooled_raw.var())


def test_constant_covariate_is_a_no_op() -> None:
    y_c, y_t = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 3.0])
    res = cuped_adjust(y_c, np.full(3, 7.0), y_t, np.full(3, 7.0))
    assert res.theta == 0.0 and res.variance_reduction == 0.0
    assert np.array_equal(res.y_control_adj, y_c) and np.array_equal(res.y_treatment_adj, y_t)
    est = compare_metric(y_c, y_t, np.full(3, 7.0), np.full(3, 7.0))
    ref = welch_effect(y_c, y_t)
    assert est.method == "cuped+welch"
    assert dataclasses.replace(est, method="welch") == ref


def test_compare_without_covariates_is_welch() -> None:
    rng = np.random.default_rng(8)
    c, t = rng.normal(size=100), rng.normal(0.2, size=120)
    assert compare_metric(c, t, alpha=0.1) == welch_effect(c, t, alpha=0.1)


def test_relative_is_against_unadjusted_control_mean() -> None:
    rng = np.random.default_rng(6)
    xc, yc = _correlated(rng, (500,))
    xt, yt = _correlated(rng, (500,), effect=0.3)
    est = compare_metric(yc, yt, xc, xt)
    assert est.relative == pytest.approx(est.absolute / yc.mean(), rel=1e-12)
    assert est.ci_low_rel < est.relative < est.ci_high_rel
    assert est.variance_reduction > 0.3


def test_zero_variance_outcomes_with_covariate() -> None:
    est = compare_metric(np.ones(10), np.ones(12), np.arange(10.0), np.arange(12.0))
    assert est.p_value == 1.0 and est.absolute == 0.0


def test_cuped_bad_input() -> None:
    y = np.arange(5.0)
    with pytest.raises(StatsError, match="same length"):
        cuped_adjust(y, y[:4], y, y)
    with pytest.raises(StatsError, match="x_treatment contains 1 NaN"):
        cuped_adjust(y, y, y, np.array([0.0, 1.0, np.nan, 3.0, 4.0]))
    with pytest.raises(StatsError, match="both pre_control and pre_treatment"):
        compare_metric(y, y, pre_control=y)
    with pytest.raises(StatsError, match="pre_treatment needs at least 2"):
        compare_metric(y, y, pre_control=y, pre_treatment=np.array([]))
