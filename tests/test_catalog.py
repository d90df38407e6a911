"""The technique catalog (knowledge/research) is well-formed and its recipes really work.

The offline Developing Agent applies these recipes verbatim, and the Brainstorm Agent treats
a recipe that does not apply as infeasible, so a broken note silently removes a technique
from the loop. These tests pin the contract the agents rely on: every note loads with sane
fields, every recipe applies to the pristine template with every listed parameter value,
code-level recipes compose in any order, refuse to apply twice, and the composed repository
still passes its own test suite and trains and serves.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from agentx.models import Maturity
from agentx.research.catalog import Technique, default_research_dir, load_catalog
from agentx.sandbox.target import template_path
from agentx.workspace.edits import EditError, apply_edits

CATALOG = load_catalog()
TEMPLATE = template_path()
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

# What the brief of the catalog promises to cover (ids are stable: cards refer to them;
# user_category_affinity left when the baseline adopted that feature, see docs/techniques.md).
REQUIRED_IDS = {
    "recency_feature",
    "category_affinity_window",
    "creator_affinity",
    "pairwise_loss",
    "ips_debiasing",
    "mf_embedding_dim",
    "mf_regularisation",
    "candidate_pool_size",
    "freshness_channel",
    "exploration_slots",
    "mmr_diversity",
    "category_cap_strength",
    "popular_pool_size",
    "seen_item_filter",
}
METRICS = {
    "watch_time",
    "clicks",
    "active_days",
    "ctr",
    "diversity",
    "latency_ms",
    "tail_share",
    "errors",
    "coverage",
}
SIGNALS = {
    "position_bias_eta",
    "tail_impression_share",
    "cold_start_item_share",
    "item_popularity_gini",
    "user_activity_gini",
    "segment_mix",
    "ctr",
}
SECTIONS = (
    "## Mechanism",
    "## Expected effect",
    "## Risks",
    "## When it helps / hurts",
    "## Code recipe",
)


def _is_code_level(technique: Technique) -> bool:
    """Code-level techniques change Python code, not only a config value."""
    return any(edit.path.endswith(".py") for edit in technique.recipe)


def _variants(technique: Technique) -> list[dict[str, Any]]:
    """The default parameters, then each listed value of each parameter."""
    default = technique.default_params()
    out = [default]
    for param in technique.params:
        out.extend({**default, param.name: value} for value in param.values)
    return out


VARIANTS = [
    pytest.param(t.id, params, id=f"{t.id}-{json.dumps(params, sort_keys=True)}")
    for t in CATALOG.values()
    for params in _variants(t)
]
CODE_LEVEL = sorted(t.id for t in CATALOG.values() if _is_code_level(t))
PARAM_ONLY = sorted(t.id for t in CATALOG.values() if not _is_code_level(t))


def _compatible(ids: list[str]) -> list[str]:
    """Drop, in sorted order, every technique that conflicts with one already kept."""
    kept: list[str] = []
    for technique_id in sorted(ids):
        if not any(other in CATALOG[technique_id].conflicts for other in kept):
            kept.append(technique_id)
    return kept


def _copy_template(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache", "*.pyc")
    return Path(shutil.copytree(TEMPLATE, dest, ignore=ignore))


def _toml_values(repo: Path) -> dict[str, Any]:
    raw = tomllib.loads((repo / "config.toml").read_text())
    return {f"{s}.{k}": v for s, table in raw.items() for k, v in table.items()}


def _run(repo: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


# ---------------------------------------------------------------------------- the notes


def test_catalog_loads_with_enough_unique_techniques() -> None:
    files = sorted(default_research_dir().glob("*.md"))
    assert len(CATALOG) >= 13
    assert len(CATALOG) == len(files), "one technique per note, ids unique"
    assert REQUIRED_IDS <= set(CATALOG), REQUIRED_IDS - set(CATALOG)
    for path in files:  # the file name is the id, so a card's technique finds its note
        assert path.stem in CATALOG, f"{path.name} does not define id {path.stem!r}"


@pytest.mark.parametrize("technique_id", sorted(CATALOG))
def test_note_fields_are_consistent(technique_id: str) -> None:
    technique = CATALOG[technique_id]
    assert technique.maturity in set(Maturity)
    assert set(technique.metrics_moved) <= METRICS
    assert "watch_time" in technique.metrics_moved, "the north star direction must be stated"
    assert set(technique.guardrails) <= METRICS and technique.guardrails
    assert technique.signals and set(technique.signals) <= SIGNALS
    assert technique.locations and all(
        (TEMPLATE / location).exists() for location in technique.locations
    )
    assert technique.recipe, "every technique must be implementable offline"
    assert abs(technique.prior_effect) < 0.2 and 0 < technique.prior_sd <= 0.1
    for other in technique.conflicts:
        assert other in CATALOG, f"unknown conflict {other!r}"
        assert technique_id in CATALOG[other].conflicts, f"{other} must list {technique_id}"
    for section in SECTIONS:
        assert section in technique.body, f"missing {section!r}"
        after = technique.body.split(section, 1)[1].split("\n## ", 1)[0]
        assert len(after.split()) >= 12, f"{section!r} is too thin"


@pytest.mark.parametrize("technique_id", sorted(CATALOG))
def test_params_and_placeholders(technique_id: str) -> None:
    technique = CATALOG[technique_id]
    names = [p.name for p in technique.params]
    assert len(names) == len(set(names))
    for param in technique.params:
        assert param.default in param.values, f"{param.name}: default not among values"
        assert len(param.values) == len(set(map(json.dumps, param.values)))
        if all(isinstance(v, int | float) for v in param.values):
            # Listed mild -> strong: one direction away from the baseline, never back and forth.
            steps = [b - a for a, b in pairwise(param.values)]
            assert all(d > 0 for d in steps) or all(d < 0 for d in steps), param.values
    used = {
        name
        for edit in technique.recipe
        for text in (edit.search, edit.replace)
        for name in PLACEHOLDER.findall(text)
    }
    assert used <= set(names), f"unknown placeholder(s) {used - set(names)}"
    assert set(names) <= used, f"parameter(s) {set(names) - used} never reach the code"
    for edit in technique.render_recipe({}):
        assert not PLACEHOLDER.search(edit.search + edit.replace)
        if edit.regex:
            re.compile(edit.search, re.MULTILINE)


def test_conflicting_techniques_really_collide(tmp_path: Path) -> None:
    """A declared conflict is real: the second recipe fails or overwrites the first one."""
    pairs = {tuple(sorted((t.id, o))) for t in CATALOG.values() for o in t.conflicts}
    assert pairs, "the catalog has mutually exclusive techniques (e.g. two debias weightings)"
    for first, second in sorted(pairs):
        repo = _copy_template(tmp_path / f"{first}-{second}")
        apply_edits(repo, CATALOG[first].render_recipe({}))
        after_first = _toml_values(repo)
        try:
            apply_edits(repo, CATALOG[second].render_recipe({}))
        except EditError:
            continue
        after_second = _toml_values(repo)
        baseline = _toml_values(TEMPLATE)
        changed_by_first = {k for k in after_first if after_first[k] != baseline.get(k)}
        assert any(after_second[k] != after_first[k] for k in changed_by_first), (first, second)


# ---------------------------------------------------------------------------- recipes apply


@pytest.mark.parametrize(("technique_id", "params"), VARIANTS)
def test_recipe_applies_to_a_fresh_template(
    technique_id: str, params: dict[str, Any], tmp_path: Path
) -> None:
    technique = CATALOG[technique_id]
    repo = _copy_template(tmp_path / "repo")
    before = _toml_values(repo)
    changed = apply_edits(repo, technique.render_recipe(params))
    assert changed
    for name in changed:  # the result is still valid TOML / Python
        if name.endswith(".py"):
            ast.parse((repo / name).read_text(), filename=name)
    after = _toml_values(repo)
    diff = {k: v for k, v in after.items() if v != before.get(k)}
    for name, value in params.items():  # each value reaches config.toml as a TOML value
        assert value in diff.values(), f"{name}={value!r} not in the changed config {diff}"
    if not _is_code_level(technique):  # a parameter recipe changes exactly one key
        assert len(diff) == 1, diff


@pytest.mark.parametrize("technique_id", CODE_LEVEL)
def test_code_recipe_refuses_to_apply_twice(technique_id: str, tmp_path: Path) -> None:
    """Once merged into the baseline, a code-level technique is infeasible, not a duplicate."""
    repo = _copy_template(tmp_path / "repo")
    edits = CATALOG[technique_id].render_recipe({})
    apply_edits(repo, edits)
    snapshot = {p: p.read_text() for p in repo.rglob("*") if p.is_file()}
    with pytest.raises(EditError):
        apply_edits(repo, edits)
    assert snapshot == {p: p.read_text() for p in repo.rglob("*") if p.is_file()}


@pytest.mark.parametrize("technique_id", PARAM_ONLY)
def test_param_recipe_reapplies_over_any_value(technique_id: str, tmp_path: Path) -> None:
    """Parameter recipes are regexes: they retune a value a kept experiment already changed."""
    technique = CATALOG[technique_id]
    repo = _copy_template(tmp_path / "repo")
    (param,) = technique.params  # one knob per parameter technique
    baseline = _toml_values(repo)
    variants = _variants(technique)
    for params in variants + variants[::-1]:
        apply_edits(repo, technique.render_recipe(params))
        values = _toml_values(repo)
        (key,) = [k for k in values if values[k] != baseline[k]]
        assert values[key] == params[param.name]


# ---------------------------------------------------------------------------- composition

SMOKE = """
import json, sys
import numpy as np
sys.path.insert(0, "tests")
from synthetic import write_synthetic
from recsys import interactions_from_arrays, load_config, train

data = write_synthetic("smoke-data", n_users=400, n_items=150, n_days=6, seed=5)
config = load_config()
users = np.arange(400)


def run(overrides):
    model = train(data, config.with_overrides(overrides), seed=1)
    log = model.ctx.dataset.log
    clicked = log.user[log.click == 1] * 150 + log.item[log.click == 1]
    slates = [model.serve(users, 10, day) for day in (7, 8)]
    items = slates[0].items
    head = 10 - config.rerank.exploration_slots
    seen = np.isin(users[:, None] * 150 + items, clicked).mean()
    day7, day8 = slates[0].items, slates[1].items
    turnover = np.mean([np.setdiff1d(a[:head], b).size / head for a, b in zip(day7, day8)])
    history = model.ranker.loss_history
    # The daily loop: fold day 8's served slates (with planted-free random clicks) into the
    # model, then serve day 9: every recipe must keep working on the updated model.
    rng = np.random.default_rng(0)
    shown = slates[1].items
    clicks = (rng.random(shown.shape) < 0.2).astype(np.int8)
    model.update(interactions_from_arrays(
        user=np.repeat(users, 10), item=shown.ravel(), day=np.full(shown.size, 8),
        position=np.tile(np.arange(10), users.size), click=clicks.ravel(),
        watch_time=30.0 * clicks.ravel(),
    ))
    after = model.serve(users, 10, 9).items
    clicked_pairs = (users[:, None] * 150 + shown)[clicks == 1]
    rewatched = np.isin(users[:, None] * 150 + after, clicked_pairs).mean()
    return {
        "updated_ok": bool(
            after.min() >= 0
            and all(np.unique(r).size == r.size for r in after)
            and np.all(model.ctx.dataset.items.release_day[after] <= 9)
            and len(model.ctx.dataset.log) == len(log) + shown.size
        ),
        "rewatched_after_update": float(rewatched),
        "shape": list(items.shape),
        "min": int(min(s.items.min() for s in slates)),
        "unique": all(np.unique(r).size == r.size for s in slates for r in s.items),
        "released": all(
            bool(np.all(model.ctx.dataset.items.release_day[s.items] <= d))
            for s, d in zip(slates, (7, 8))
        ),
        "seen_share": float(seen),
        "turnover": float(turnover),
        "loss_drop": history[-1] < history[0],
        "finite": bool(np.all(np.isfinite(model.ranker.weights))),
        "scored": int(slates[0].candidates_scored.min()),
    }


report = {
    "features": list(config.ranker.features),
    "loss": config.ranker.loss,
    "debias": config.ranker.debias,
    "all": run({}),
    "no_seen_filter": run({"rerank.seen_penalty": 0.0}),
    "no_rotation": run({"rerank.rotation_temperature": 0.0}),
}
print(json.dumps(report))
"""


def _strongest(technique: Technique) -> dict[str, Any]:
    """Each parameter at its last (strongest) listed value."""
    return {p.name: p.values[-1] for p in technique.params}


def _apply_all(repo: Path, ids: list[str]) -> None:
    """Apply the techniques one after another, each as its own atomic batch."""
    for technique_id in ids:
        apply_edits(repo, CATALOG[technique_id].render_recipe({}))


def test_code_recipes_compose_in_any_order(tmp_path: Path) -> None:
    ids = _compatible(CODE_LEVEL)
    assert len(ids) >= 6
    orders = [ids, ids[::-1], random.Random(7).sample(ids, len(ids))]
    results = []
    for index, order in enumerate(orders):
        repo = _copy_template(tmp_path / f"order{index}")
        _apply_all(repo, order)
        results.append(_toml_values(repo))
    # Whatever the order, the same configuration results (lists compared as sets).
    normalised = [
        {k: sorted(v) if isinstance(v, list) else v for k, v in result.items()}
        for result in results
    ]
    assert normalised[0] == normalised[1] == normalised[2]


@pytest.mark.slow
@pytest.mark.parametrize("technique_id", CODE_LEVEL)
def test_each_code_recipe_alone_passes_the_template_suite(
    technique_id: str, tmp_path: Path
) -> None:
    """What the Developing Agent's verification runs: the repository's own (protected) tests.

    Strongest parameters, because they are the likeliest to break a behavioural test (a
    seen-item exclusion, for instance, fails the template's planted-appeal test).
    """
    repo = _copy_template(tmp_path / "repo")
    technique = CATALOG[technique_id]
    apply_edits(repo, technique.render_recipe(_strongest(technique)))
    tests = _run(
        repo, sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests"
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]


@pytest.mark.slow
def test_everything_together_passes_the_template_suite_and_serves(tmp_path: Path) -> None:
    """All compatible recipes (code and parameters) at once: tests, lint, train + serve."""
    repo = _copy_template(tmp_path / "repo")
    ids = _compatible(CODE_LEVEL) + _compatible(PARAM_ONLY)
    _apply_all(repo, random.Random(3).sample(ids, len(ids)))

    tests = _run(repo, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.exists():  # the template's own lint configuration (E, F, I, UP, B, T201)
        lint = _run(repo, str(ruff), "check", "--no-cache", "recsys")
        assert lint.returncode == 0, lint.stdout[-3000:]

    smoke = _run(repo, sys.executable, "-c", SMOKE)
    assert smoke.returncode == 0, smoke.stderr[-4000:]
    report = json.loads(smoke.stdout.strip().splitlines()[-1])
    features = {"item_age", "user_category_affinity", "creator_affinity"}
    assert features <= set(report["features"])
    assert report["loss"] == "pairwise" and report["debias"] == "ips"
    everything = report["all"]
    assert everything["shape"] == [400, 10] and everything["min"] >= 0
    assert everything["unique"] and everything["released"], everything
    assert everything["loss_drop"] and everything["finite"], everything
    assert everything["updated_ok"], everything  # recipes keep working after Model.update
    assert everything["rewatched_after_update"] < 0.01, everything  # day 8 clicks filtered
    # The rules are live in the composed system, not neutralised by each other: without the
    # seen filter more slots repeat clicked items; without rotation slates repeat across days.
    seen, unseen = everything["seen_share"], report["no_seen_filter"]["seen_share"]
    assert unseen > 0.05 and seen < 0.6 * unseen, report
    assert everything["turnover"] > report["no_rotation"]["turnover"] + 0.15, report
