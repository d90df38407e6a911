"""Hash assignment: deterministic, on-target shares, disjoint layers, independent salts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from agentx.stats import CONTROL, NOT_ENROLLED, TREATMENT, StatsError, assign_arms, bucket_of

pytestmark = pytest.mark.filterwarnings("error")

N_IDS = 100_000


def _binom_bounds(n: int, p: float, tail: float = 1e-6) -> tuple[int, int]:
    """Counts outside these bounds happen with probability ``tail`` under a correct split."""
    return int(stats.binom.ppf(tail / 2, n, p)), int(stats.binom.isf(tail / 2, n, p))


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.arange(N_IDS, dtype=np.int64)


def test_bucket_matches_reference_hash_and_golden_values() -> None:
    ids = np.array([0, 42, 123456789])
    expected = [
        int.from_bytes(hashlib.blake2b(f"exp-1:{u}".encode(), digest_size=8).digest(), "big") % 1000
        for u in ids.tolist()
    ]
    assert bucket_of(ids, "exp-1").tolist() == expected
    # Pinned values: a change of hash, key format or byte order breaks every running experiment.
    assert bucket_of(np.array([0, 42]), "exp-1").tolist() == [491, 522]
    assert bucket_of(np.array(["user-7"]), "exp-1").tolist() == [180]
    assert bucket_of(np.array([123456789]), "layer").tolist() == [600]


def test_bucket_is_stable_across_processes() -> None:
    """Python's own hash() is salted per process; the assignment must not depend on it."""
    code = (
        "import numpy as np; from agentx.stats import bucket_of; "
        "print(bucket_of(np.arange(50), 'xproc', 97).tolist())"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(out.stdout.strip())
    assert outputs == {str(bucket_of(np.arange(50), "xproc", 97).tolist())}


def test_int_and_string_ids_share_buckets() -> None:
    ints = np.arange(1000)
    assert np.array_equal(bucket_of(ints, "s"), bucket_of(ints.astype(str), "s"))


def test_assignment_is_deterministic(ids: np.ndarray) -> None:
    a = assign_arms(ids, "exp-42", treatment_share=0.25)
    b = assign_arms(ids.copy(), "exp-42", treatment_share=0.25)
    assert a.dtype == np.int8
    assert np.array_equal(a, b)
    assert set(np.unique(a).tolist()) == {NOT_ENROLLED, CONTROL, TREATMENT}


@pytest.mark.parametrize(("t_share", "c_share"), [(0.1, None), (0.2, 0.3), (0.5, 0.5)])
def test_shares_close_to_targets(ids: np.ndarray, t_share: float, c_share: float | None) -> None:
    arms = assign_arms(ids, "share-test", treatment_share=t_share, control_share=c_share)
    c_share = t_share if c_share is None else c_share
    for arm, share in ((TREATMENT, t_share), (CONTROL, c_share)):
        lo, hi = _binom_bounds(N_IDS, share)
        assert lo <= int(np.sum(arms == arm)) <= hi


def test_buckets_are_uniform(ids: np.ndarray) -> None:
    counts = np.bincount(bucket_of(ids, "uniform", n_buckets=100), minlength=100)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_disjoint_ranges_never_overlap(ids: np.ndarray) -> None:
    # Three concurrent experiments in one layer (same salt), consecutive bucket ranges.
    a = assign_arms(ids, "layer-1", treatment_share=0.2, bucket_offset=0)  # [0, 400)
    b = assign_arms(ids, "layer-1", treatment_share=0.15, control_share=0.25, bucket_offset=400)
    c = assign_arms(ids, "layer-1", treatment_share=0.1, bucket_offset=800)  # [800, 1000)
    enrolled = np.stack([a, b, c]) != NOT_ENROLLED
    assert enrolled.sum(axis=0).max() == 1  # nobody in two experiments
    assert enrolled.any(axis=0).all()  # the three ranges tile all 1000 buckets
    buckets = bucket_of(ids, "layer-1")
    assert np.all(buckets[b == CONTROL] >= 400) and np.all(buckets[b == CONTROL] < 650)
    assert np.all(buckets[b == TREATMENT] >= 650) and np.all(buckets[b == TREATMENT] < 800)


def test_different_salts_split_independently(ids: np.ndarray) -> None:
    a = assign_arms(ids, "layer-A", treatment_share=0.5)
    b = assign_arms(ids, "layer-B", treatment_share=0.5)
    table = np.array([[np.sum((a == i) & (b == j)) for j in (0, 1)] for i in (0, 1)])
    assert stats.chi2_contingency(table).pvalue > 1e-4
    lo, hi = _binom_bounds(N_IDS, 0.5)
    assert lo <= int(np.sum(a == b)) <= hi


def test_empty_ids_give_empty_assignment() -> None:
    assert assign_arms(np.array([], dtype=np.int64), "s", 0.5).size == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"treatment_share": 0.6}, "exceed n_buckets"),
        ({"treatment_share": 0.3, "bucket_offset": 500}, "exceed n_buckets"),
        ({"treatment_share": 0.0}, "treatment_share"),
        ({"treatment_share": 1.5}, "treatment_share"),
        ({"treatment_share": float("nan")}, "treatment_share"),
        ({"treatment_share": 0.0001}, "less than one bucket"),
        ({"treatment_share": 0.1, "control_share": -0.1}, "control_share"),
        ({"treatment_share": 0.1, "bucket_offset": -1}, "bucket_offset"),
        ({"treatment_share": 0.1, "n_buckets": 0}, "n_buckets"),
    ],
)
def test_bad_assignment_config_raises(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(StatsError, match=message):
        assign_arms(np.arange(10), "s", **kwargs)


def test_bad_ids_or_salt_raise() -> None:
    with pytest.raises(StatsError, match="not floats"):
        bucket_of(np.arange(5, dtype=np.float64), "s")
    with pytest.raises(StatsError, match="1-D"):
        bucket_of(np.arange(6).reshape(2, 3), "s")
    with pytest.raises(StatsError, match="salt"):
        bucket_of(np.arange(5), 7)  # type: ignore[arg-type]
