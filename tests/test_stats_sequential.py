"""mSPRT: closed form, always-valid under peeking at every look, contrast with naive peeking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from agentx.stats import (
    DEFAULT_MIN_N,
    StatsError,
    default_tau2,
    msprt_p_values,
    msprt_test,
    welch_effect,
)
from agentx.stats.sequential import log_mixture_lr

pytestmark = pytest.mark.filterwarnings("error")

ALPHA = 0.05
N_SIMS = 2000
N_PER_ARM = 1000


def _upper_bound(n_sims: int, p: float, tail: float = 1e-4) -> float:
    """Largest rejection rate consistent (one-sided, prob 1 - tail) with a true rate of p."""
    return float(stats.binom.isf(tail, n_sims, p)) / n_sims


@pytest.fixture(scope="module")
def aa_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240601)
    return rng.normal(size=(N_SIMS, N_PER_ARM)), rng.normal(size=(N_SIMS, N_PER_ARM))


@pytest.mark.parametrize(("delta", "var", "tau2"), [(0.3, 0.02, 0.05), (-1.2, 0.5, 2.0)])
def test_closed_form_equals_mixture_integral(delta: float, var: float, tau2: float) -> None:
    def integrand(theta: float) -> float:
        lr = math.exp((theta * delta - theta**2 / 2) / var)  # N(d; theta, V) / N(d; 0, V)
        return lr * stats.norm.pdf(theta, scale=math.sqrt(tau2))

    numeric, _ = integrate.quad(integrand, -np.inf, np.inf)
    closed = log_mixture_lr(np.array([delta]), np.array([var]), tau2)[0]
    assert closed == pytest.approx(math.log(numeric), rel=1e-8)


def test_p_values_match_a_naive_loop() -> None:
    """The vectorised running means/variances equal plain per-prefix numpy statistics."""
    rng = np.random.default_rng(1)
    c, t = rng.normal(50.0, 3.0, 150), rng.normal(51.0, 4.0, 150)
    tau2 = 0.5
    p = msprt_p_values(c, t, tau2=tau2, min_n=5)
    expected, running = [], 1.0
    for n in range(1, 151):
        if n >= 5:
            v = (c[:n].var(ddof=1) + t[:n].var(ddof=1)) / n
            d = t[:n].mean() - c[:n].mean()
            lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d**2 / (2 * v * (v + tau2)))
            running = min(running, 1.0 / lam)
        expected.append(running)
    assert p == pytest.approx(np.array(expected), rel=1e-8)


def test_p_values_monotone_and_looks_index_the_series() -> None:
    rng = np.random.default_rng(2)
    c, t = rng.normal(size=800), rng.normal(0.2, size=800)
    full = msprt_p_values(c, t)
    assert full.shape == (800,)
    assert np.all(np.diff(full) <= 0) and np.all((full >= 0) & (full <= 1))
    assert np.all(full[: DEFAULT_MIN_N - 1] == 1.0)  # burn-in carries no evidence
    looks = [50, 100, 400, 800]
    assert np.array_equal(msprt_p_values(c, t, looks=looks), full[np.array(looks) - 1])
    assert full[-1] < ALPHA  # a 0.2 sd effect over 800 users per arm is detected


def test_default_tau2_scales_with_variance_and_size() -> None:
    rng = np.random.default_rng(3)
    c, t = rng.normal(size=400), rng.normal(size=400)
    mult = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2
    assert default_tau2(c, t) == pytest.approx(mult * (c.var(ddof=1) + t.var(ddof=1)) / 400)
    assert default_tau2(3 * c, 3 * t) == pytest.approx(9 * default_tau2(c, t))
    # The p-values do not depend on the unit of measurement.
    assert msprt_p_values(3 * c + 7, 3 * t + 7) == pytest.approx(msprt_p_values(c, t))


def test_aa_fixed_horizon_fpr_near_alpha(aa_data: tuple[np.ndarray, np.ndarray]) -> None:
    c, t = aa_data
    rejections = sum(welch_effect(c[i], t[i]).p_value < ALPHA for i in range(N_SIMS))
    lo = stats.binom.ppf(1e-4, N_SIMS, ALPHA) / N_SIMS
    assert lo <= rejections / N_SIMS <= _upper_bound(N_SIMS, ALPHA)


def test_msprt_peeking_every_look_keeps_fpr(aa_data: tuple[np.ndarray, np.ndarray]) -> None:
    c, t = aa_data
    results = [msprt_test(c[i], t[i], alpha=ALPHA) for i in range(N_SIMS)]
    fpr = np.mean([r.reject for r in results])
    assert fpr <= _upper_bound(N_SIMS, ALPHA)
    # Ever-rejected == rejected at the end, because the p-value never increases.
    assert all((r.n_at_stop is not None) == r.reject for r in results)
    # Why the burn-in exists: plug-in variances from 2-3 users make early looks overconfident.
    no_burn_in = np.mean([msprt_test(c[i], t[i], min_n=2).reject for i in range(N_SIMS)])
    assert no_burn_in > fpr + 0.01


def test_naive_peeking_inflates_fpr(aa_data: tuple[np.ndarray, np.ndarray]) -> None:
    """Same data, same looks (every n from DEFAULT_MIN_N on), but a Welch t-test at each."""
    c, t = aa_data
    ns = np.arange(1, N_PER_ARM + 1)
    mc, mt = np.cumsum(c, axis=1) / ns, np.cumsum(t, axis=1) / ns
    looks = slice(DEFAULT_MIN_N - 1, None)
    vc = (np.cumsum(c**2, axis=1) - ns * mc**2)[:, looks] / (ns[looks] - 1)
    vt = (np.cumsum(t**2, axis=1) - ns * mt**2)[:, looks] / (ns[looks] - 1)
    se2c, se2t = vc / ns[looks], vt / ns[looks]
    df = (se2c + se2t) ** 2 / (se2c**2 / (ns[looks] - 1) + se2t**2 / (ns[looks] - 1))
    tstat = (mt - mc)[:, looks] / np.sqrt(se2c + se2t)
    p = 2 * stats.t.sf(np.abs(tstat), df)
    naive_fpr = np.mean((p < ALPHA).any(axis=1))
    assert naive_fpr > 4 * ALPHA  # typically ~0.4 at 1000 looks
    msprt_fpr = np.mean([msprt_test(c[i], t[i]).reject for i in range(500)])
    assert naive_fpr > 3 * msprt_fpr + 0.1


def test_msprt_has_power_and_stops_early() -> None:
    rng = np.random.default_rng(5)
    n_sims = 400
    c = rng.normal(size=(n_sims, N_PER_ARM))
    t = rng.normal(0.2, size=(n_sims, N_PER_ARM))
    results = [msprt_test(c[i], t[i]) for i in range(n_sims)]
    power = np.mean([r.reject for r in results])
    assert power > 0.8  # fixed-horizon power here is 0.99; mSPRT pays a price but not all of it
    stops = [r.n_at_stop for r in results if r.n_at_stop is not None]
    assert np.median(stops) < 0.6 * N_PER_ARM


def test_constant_arms() -> None:
    same = msprt_test(np.full(100, 2.0), np.full(100, 2.0))
    assert same.p_value == 1.0 and not same.reject and same.n_at_stop is None
    diff = msprt_test(np.zeros(100), np.ones(100))
    assert diff.p_value == 0.0 and diff.reject and diff.n_at_stop == DEFAULT_MIN_N
    # Binary metric whose first users are all zeros: no spurious evidence from 0/0 variances.
    c = np.zeros(200)
    t = np.zeros(200)
    t[150] = 1.0
    assert msprt_test(c, t).p_value > 0.5


def test_rounding_noise_between_constant_arms_is_not_evidence() -> None:
    assert msprt_test(np.full(100, 0.3), np.full(100, 0.1 + 0.2)).p_value == 1.0


def test_unequal_lengths_use_common_prefix() -> None:
    rng = np.random.default_rng(6)
    c, t = rng.normal(size=300), rng.normal(size=320)
    assert np.array_equal(msprt_p_values(c, t), msprt_p_values(c, t[:300]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau2": 0.0}, "tau2"),
        ({"tau2": float("nan")}, "tau2"),
        ({"looks": []}, "non-empty"),
        ({"looks": [10, 5]}, "strictly increasing"),
        ({"looks": [0, 5]}, r"in \[1, 50\]"),
        ({"looks": [10, 51]}, r"in \[1, 50\]"),
        ({"looks": [1.5, 3.0]}, "integers"),
        ({"min_n": 1}, "min_n"),
    ],
)
def test_bad_sequential_input(kwargs: dict, message: str) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(StatsError, match=message):
        msprt_p_values(rng.normal(size=50), rng.normal(size=60), **kwargs)


def test_bad_sequential_data() -> None:
    with pytest.raises(StatsError, match="control contains 1 NaN"):
        msprt_test(np.array([1.0, np.nan, 2.0]), np.ones(3))
    with pytest.raises(StatsError, match="treatment needs at least 2"):
        msprt_test(np.ones(3), np.array([]))
    with pytest.raises(StatsError, match="alpha"):
        msprt_test(np.ones(3), np.ones(3), alpha=1.0)
