"""The bundled sandbox recommender template: its own suite passes, and recipes compose on it.

The template (agentx/sandbox/template) is copied into workspaces as a standalone repository,
so its tests are not collected by this suite (testpaths = ["tests"]); they run here from a
copy in tmp_path, in a subprocess, exactly as an agent's workspace would run them.

The recipes below are written the way technique recipes are: strict search/replace pairs,
each search string occurring exactly once, anchored on the template's extension markers. They
prove the markers let new mechanisms be added as small, independent, composable insertions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent / "agentx" / "sandbox" / "template"

Edit = tuple[str, str, str]  # (relative path, search, replace)

ITEM_AGE: list[Edit] = [
    (
        "recsys/features.py",
        "# <extension:features>",
        textwrap.dedent(
            '''\
            def item_age(
                ctx: FeatureContext, users: np.ndarray, items: np.ndarray, day: np.ndarray
            ) -> np.ndarray:
                """log(1 + days since release): lets the ranker learn how appeal decays."""
                age = day - ctx.dataset.items.release_day[items]
                return np.log1p(np.maximum(age, 0)).astype(np.float64)


            # <extension:features>'''
        ),
    ),
    (
        "recsys/features.py",
        "    # <registry:features>",
        '    "item_age": item_age,\n    # <registry:features>',
    ),
    ("config.toml", "features = [", 'features = ["item_age", '),
]

PAIRWISE: list[Edit] = [
    (
        "recsys/ranker.py",
        "# <extension:losses>",
        textwrap.dedent(
            '''\
            def pairwise(data: LossInput) -> LossFn:
                """BPR: -log sigmoid(s_clicked - s_unclicked) over every such pair in a slate."""
                order = np.argsort(data.groups, kind="stable")
                positives = order[data.labels[order] == 1]
                negatives = order[data.labels[order] == 0]
                n_groups = int(data.groups.max(initial=-1)) + 1
                neg_groups = data.groups[negatives]
                neg_start = np.searchsorted(neg_groups, np.arange(n_groups))
                repeats = np.bincount(neg_groups, minlength=n_groups)[data.groups[positives]]
                left = np.repeat(positives, repeats)
                offsets = np.arange(left.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
                right = negatives[np.repeat(neg_start[data.groups[positives]], repeats) + offsets]
                pair_weights = data.weights[left]
                total = float(pair_weights.sum()) or 1.0
                n_rows = data.labels.size

                def loss(scores: np.ndarray) -> tuple[float, np.ndarray]:
                    diff = scores[left] - scores[right]
                    value = float(np.dot(pair_weights, np.logaddexp(0.0, -diff))) / total
                    pair_grad = -pair_weights * _sigmoid(-diff) / total
                    grad = np.bincount(left, pair_grad, n_rows)
                    grad -= np.bincount(right, pair_grad, n_rows)
                    return value, grad

                return loss


            # <extension:losses>'''
        ),
    ),
    (
        "recsys/ranker.py",
        "    # <registry:losses>",
        '    "pairwise": pairwise,\n    # <registry:losses>',
    ),
    ("config.toml", 'loss = "pointwise"', 'loss = "pairwise"'),
]

IPS: list[Edit] = [
    (
        "recsys/debias.py",
        "# <extension:weighting>",
        textwrap.dedent(
            '''\
            def ips(log: Interactions, config: Config) -> np.ndarray:
                """Clicks weighted by 1 / P(examined | position), estimated as CTR(pos) / CTR(0)."""
                n_positions = int(log.position.max(initial=0)) + 1
                clicks = np.bincount(log.position, weights=log.click, minlength=n_positions)
                shown = np.bincount(log.position, minlength=n_positions)
                ctr = clicks / np.maximum(shown, 1)
                floor = 1.0 / config.ranker.ips_max_weight
                propensity = np.clip(ctr / max(float(ctr[0]), 1e-12), floor, 1.0)
                return np.where(log.click == 1, 1.0 / propensity[log.position], 1.0)


            # <extension:weighting>'''
        ),
    ),
    (
        "recsys/debias.py",
        "    # <registry:weighting>",
        '    "ips": ips,\n    # <registry:weighting>',
    ),
    ("recsys/config.py", "# <config:ranker>", "ips_max_weight: float\n    # <config:ranker>"),
    (
        "config.toml",
        "# <config:ranker>",
        "ips_max_weight = 10.0  # clip of inverse-propensity weights\n# <config:ranker>",
    ),
    ("config.toml", 'debias = "none"', 'debias = "ips"'),
]

DIVERSITY: list[Edit] = [
    (
        "recsys/rerank.py",
        "# <extension:rerank>",
        textwrap.dedent(
            '''\
            class _Diversity:
                def __init__(self, state: SlateState, strength: float) -> None:
                    vectors = state.candidate_values(state.ctx.factors.item).astype(np.float32)
                    norms = np.linalg.norm(vectors, axis=2, keepdims=True)
                    self.vectors = vectors / np.maximum(norms, 1e-12)
                    self.strength = strength
                    self.max_similarity = np.zeros(state.candidates.shape, dtype=np.float32)

                def adjust(self, state: SlateState) -> np.ndarray:
                    return -self.strength * self.max_similarity

                def observe(self, state: SlateState, picked: np.ndarray) -> None:
                    rows = np.arange(picked.shape[0])
                    chosen = self.vectors[rows, np.maximum(picked, 0)]
                    similarity = np.einsum("ncd,nd->nc", self.vectors, chosen)
                    similarity[picked < 0] = 0.0
                    np.maximum(self.max_similarity, similarity, out=self.max_similarity)


            def diversity(state: SlateState) -> SlotRule | None:
                """MMR: score - diversity_lambda * max cosine similarity to the slate so far."""
                strength = state.config.diversity_lambda
                return _Diversity(state, strength) if strength > 0 else None


            # <extension:rerank>'''
        ),
    ),
    (
        "recsys/rerank.py",
        "    # <registry:rerank>",
        '    "diversity": diversity,\n    # <registry:rerank>',
    ),
    ("recsys/config.py", "# <config:rerank>", "diversity_lambda: float\n    # <config:rerank>"),
    (
        "config.toml",
        "# <config:rerank>",
        "diversity_lambda = 0.5  # MMR redundancy penalty, 0 = off\n# <config:rerank>",
    ),
]

RECIPES = {"item_age": ITEM_AGE, "pairwise": PAIRWISE, "ips": IPS, "diversity": DIVERSITY}


def _copy_template(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache", "*.pyc")
    return Path(shutil.copytree(TEMPLATE, dest, ignore=ignore))


def _apply(repo: Path, edits: list[Edit]) -> None:
    for relative, search, replace in edits:
        path = repo / relative
        text = path.read_text()
        assert text.count(search) == 1, f"{relative}: {search!r} occurs {text.count(search)}x"
        path.write_text(text.replace(search, replace))


def _run(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _run_template_tests(repo: Path) -> str:
    proc = _run(repo, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


SMOKE = """
import json, sys
import numpy as np
sys.path.insert(0, "tests")
from synthetic import write_synthetic
from recsys import interactions_from_arrays, train, load_config
data = write_synthetic("smoke-data", n_users=400, n_items=150, n_days=6, seed=5)
config = load_config()
model = train(data, seed=1)
result = model.serve(np.arange(400), 10, 7)
items = result.items
rows_unique = all(np.unique(r).size == r.size for r in items)
released = bool(np.all(model.ctx.dataset.items.release_day[items] <= 7))
clicks = (np.random.default_rng(0).random(items.shape) < 0.2).astype(np.int8)
model.update(interactions_from_arrays(
    user=np.repeat(np.arange(400), 10), item=items.ravel(), day=np.full(items.size, 7),
    position=np.tile(np.arange(10), 400), click=clicks.ravel(), watch_time=30.0 * clicks.ravel(),
))
after = model.serve(np.arange(400), 10, 8).items
updated = bool(after.min() >= 0 and all(np.unique(r).size == r.size for r in after))
print(json.dumps({
    "features": list(config.ranker.features), "loss": config.ranker.loss,
    "debias": config.ranker.debias, "shape": list(items.shape), "min": int(items.min()),
    "unique": rows_unique, "released": released, "updated": updated,
    "scored": int(result.candidates_scored.min()),
    "loss_drop": model.ranker.loss_history[-1] < model.ranker.loss_history[0],
}))
"""


def test_template_is_standalone() -> None:
    """The template is copied out as its own repo: it must not depend on agentx."""
    for path in TEMPLATE.rglob("*.py"):
        text = path.read_text()
        assert "import agentx" not in text and "from agentx" not in text, path
    assert (TEMPLATE / "config.toml").is_file() and (TEMPLATE / "docs/ARCHITECTURE.md").is_file()


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_search_strings_are_unique_in_pristine_template(name: str) -> None:
    for relative, search, _ in RECIPES[name]:
        assert (TEMPLATE / relative).read_text().count(search) == 1, (relative, search)


def test_template_suite_passes_on_a_copy(tmp_path: Path) -> None:
    repo = _copy_template(tmp_path / "repo")
    out = _run_template_tests(repo)
    assert " passed" in out.strip().splitlines()[-1]


@pytest.mark.slow
def test_recipes_compose_and_the_repo_still_works(tmp_path: Path) -> None:
    repo = _copy_template(tmp_path / "repo")
    for name in ["ips", "item_age", "diversity", "pairwise"]:  # not registry order on purpose
        _apply(repo, RECIPES[name])
    _run_template_tests(repo)  # registry-wide tests now cover the new entries too
    proc = _run(repo, "-c", SMOKE)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["features"][0] == "item_age"
    assert (report["loss"], report["debias"]) == ("pairwise", "ips")
    assert report["shape"] == [400, 10] and report["min"] >= 0
    assert report["unique"] and report["released"] and report["loss_drop"]
    assert report["updated"]  # the composed repository still folds in a day and serves
    assert report["scored"] >= 60
