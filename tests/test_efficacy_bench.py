"""benchmarks/efficacy.py end to end on the tiny world: the loop, random search and TPE each
run real staged A/Bs, a judge sandbox scores them on ground truth, and the JSON has the
issue's shape with values that hang together."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "efficacy.py"
KEYS = {
    "lift_mean",
    "lift_min",
    "lift_max",
    "pct_of_ceiling",
    "harmful",
    "false_keeps",
    "missed_wins",
    "to_50pct",
    "to_90pct",
    "s_per_experiment",
}
BUDGET = 2


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("efficacy")


@pytest.fixture(scope="module")
def quick(quick_root: Path) -> dict:
    root = quick_root
    out = root / "efficacy.json"
    done = _run(
        "--quick",
        "--budget",
        str(BUDGET),
        "--strategies",
        "agentx",
        "random",
        "tpe",
        "--workdir",
        str(root / "work"),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_quick_run_writes_the_issue_shape(quick: dict) -> None:
    assert set(quick) == {"tiny", "_detail"}
    rows = quick["tiny"]
    assert set(rows) == {"agentx", "random", "tpe", "ceiling"}
    for strategy, row in rows.items():
        assert set(row) == KEYS, strategy
        for count in ("harmful", "false_keeps", "missed_wins"):
            assert isinstance(row[count], int) and row[count] >= 0, (strategy, count)
        assert row["lift_min"] <= row["lift_mean"] <= row["lift_max"], strategy
        assert row["s_per_experiment"] is not None and row["s_per_experiment"] >= 0
        for key in ("to_50pct", "to_90pct"):
            assert row[key] is None or (isinstance(row[key], int) and row[key] >= 1)


def test_quick_run_is_scored_against_the_ceiling(quick: dict) -> None:
    rows = quick["tiny"]
    ceiling = rows["ceiling"]["lift_mean"]
    assert ceiling >= 0.0  # the original baseline itself is a candidate
    for strategy, row in rows.items():
        if row["harmful"] == 0:  # a harmless shipped state is a ceiling candidate
            assert row["lift_max"] <= ceiling + 1e-12, strategy
        if ceiling > 0:
            assert row["pct_of_ceiling"] == pytest.approx(row["lift_mean"] / ceiling)
        else:
            assert row["pct_of_ceiling"] is None
    for strategy in ("agentx", "random", "tpe"):
        if rows[strategy]["to_90pct"] is not None:
            assert rows[strategy]["to_50pct"] is not None
            assert rows[strategy]["to_50pct"] <= rows[strategy]["to_90pct"] <= BUDGET


def test_quick_run_spends_the_budget_on_real_experiments(quick: dict) -> None:
    runs = quick["_detail"]["tiny"]["runs"]
    for strategy in ("random", "tpe"):
        (run,) = runs[strategy]
        assert run["experiments"] == BUDGET, strategy
        assert len(run["trajectory"]) == BUDGET
        # every trial went through the evaluation's verdict
        verdicts = (" -> KEEP", " -> DISCARD", " -> EXTEND")
        assert all(any(v in trial for v in verdicts) for trial in run["trials"])
    (loop,) = runs["agentx"]
    assert 1 <= loop["experiments"] <= BUDGET
    assert not loop["notes"], loop["notes"]  # the rebuilt shipped state matched the loop's repo
    assert loop["wall_s"] > 0


def test_the_judge_takes_over_the_truths_the_loop_computed(quick: dict) -> None:
    """The loop at seed 0 computed its treatments' truths with the judge's arm seed; the
    judge adopts them instead of simulating each again."""
    assert quick["_detail"]["tiny"]["judge_truths_adopted"] >= 1


def test_finished_runs_leave_no_trained_models_behind(quick: dict, quick_root: Path) -> None:
    """A finished run's sandbox keeps its truths and snapshots but not its models (about
    1.2 GB each on `default`); only the judge, which the ceiling still needs, keeps some."""
    world = quick_root / "work" / "tiny"
    finished = [world / "ab-s0", *(world / "workspaces").glob("*/sandbox")]
    assert len(finished) == 2
    for sandbox in finished:
        assert (sandbox / "models").is_dir(), sandbox  # it did train and cache models
        assert not [p for p in (sandbox / "models").iterdir() if p.suffix != ".tmp"], sandbox
    assert [p for p in (world / "judge" / "models").iterdir() if p.suffix != ".tmp"]


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    done = _run("--strategies", "agentx", "hillclimb", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "efficacy: unknown strategy hillclimb; known: agentx, agentx_no_sgpo, "
        "agentx_prefilled, random, tpe, tpe_3x, ceiling"
    ]
    done = _run("--worlds", "atlantis", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "unknown world 'atlantis'" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_conflicting_techniques_share_one_tpe_categorical() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from efficacylib.space import OFF, all_options, conflict_groups, group_choices
    finally:
        sys.path.remove(str(BENCHMARKS))
    from agentx.research.catalog import load_catalog

    catalog = load_catalog()
    groups = conflict_groups(catalog)
    where = {technique: i for i, group in enumerate(groups) for technique in group}
    assert sorted(where) == sorted(t.id for t in catalog.values() if t.recipe)
    for technique in catalog.values():
        for other in technique.conflicts:
            assert where[technique.id] == where[other], (technique.id, other)
    assert any(len(group) > 1 for group in groups)  # the catalog has conflicts
    choices = [group_choices(catalog, group) for group in groups]
    assert all(c[OFF] is None for c in choices)
    # every option is reachable through exactly one categorical value
    assert sum(len(c) - 1 for c in choices) == len(all_options(catalog))


class _Truth:
    """Ground truth by hand: each state's lift against the original and truth classes of
    (state, control) pairs; anything not listed is neutral."""

    def __init__(self, lifts: dict[str, float], classes: dict[tuple[str, str], str]):
        self.lifts, self.classes = lifts, classes

    def lift(self, state: Path, base: Path | None = None) -> float:
        return self.lifts[Path(state).name]

    def classify(self, state: Path, base: Path | None = None) -> tuple[str, list[str]]:
        key = (Path(state).name, Path(base).name if base else "O")
        return self.classes.get(key, "neutral"), []


def _efficacylib():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from efficacylib import scoring, trace
    finally:
        sys.path.remove(str(BENCHMARKS))
    return scoring, trace


def test_scoring_counts_launches_against_the_original_and_misses_against_the_control() -> None:
    scoring, tr = _efficacylib()
    trace = tr.RunTrace("random", "tiny", 0, 4, "/s/O", wall_s=12.0)
    trials = [
        # a true win, kept: a launch, not false; but it leaves the state harmful vs original
        tr.Trial(1, "a", "/s/O", "/s/A", accepted=True, launched=True),
        # a true win against A, rejected: a missed win
        tr.Trial(2, "b", "/s/A", "/s/B"),
        # kept but truly neutral against A: a false keep, harmless vs the original
        tr.Trial(3, "c", "/s/A", "/s/C", accepted=True, launched=True),
        # abandoned before any A/B: neither
        tr.Trial(4, "d", None, None),
    ]
    trace.trials = trials
    trace.shipped = ["/s/A", "/s/A", "/s/C", "/s/C"]
    truth = _Truth(
        {"O": 0.0, "A": 0.05, "B": 0.09, "C": 0.10},
        {("A", "O"): "good", ("B", "A"): "good", ("C", "O"): "good"},
    )
    # A is a true win against its control O ...
    score = scoring.score_run(trace, truth)
    assert (score.harmful, score.false_keeps, score.missed_wins) == (0, 1, 1)
    truth.classes[("A", "O")] = "harmful"  # ... or truly harmful against the original
    score = scoring.score_run(trace, truth)
    assert (score.harmful, score.false_keeps, score.launches) == (1, 2, 2)
    assert score.lift == 0.10 and score.trajectory == [0.05, 0.05, 0.10, 0.10]
    row = scoring.row([score], ceiling=0.2)
    assert row["to_50pct"] == 3 and row["to_90pct"] is None
    assert row["pct_of_ceiling"] == pytest.approx(0.5)
    # the run's wall over its experiments: trials of a wave finish together, so the time
    # between two of them (2, 4, 6, 1 here) is not what one experiment costs
    assert row["s_per_experiment"] == pytest.approx(3.0)
    other = tr.RunTrace("random", "tiny", 1, 4, "/s/O", wall_s=40.0)
    other.trials, other.shipped = trials, trace.shipped
    assert scoring.row([score, scoring.score_run(other, truth)], 0.2)["s_per_experiment"] == 6.5


def test_experiments_to_a_share_is_the_lower_median_over_seeds() -> None:
    scoring, _ = _efficacylib()
    seeds = [[0.0, 0.6, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert scoring.experiments_to(seeds, 0.5) == 2  # firsts 2, never, 1
    assert scoring.experiments_to(seeds[1:], 0.5) == 1  # firsts never, 1: the lower one
    assert scoring.experiments_to([[0.0], [0.0], [1.0]], 0.5) is None  # most never get there
    assert scoring.experiments_to(seeds, 0.0) is None  # no positive ceiling: no target


def _wave_record(index: int, diff: str, control: Path, status: str) -> object:
    from trajectories import make_record

    from agentx.models import ExperimentStatus, Patch, Rollout

    record = make_record(index, f"technique{index}", ExperimentStatus(status), measured=0.01)
    update = {
        "patch": Patch(proposal_id=record.id, branch="b", worktree="/nowhere", diff=diff),
        "rollout": Rollout(experiment_id=record.id),
        "arms": {"control": {"name": "control", "workdir": "/nowhere", "artefact": str(control)}},
    }
    return record.model_copy(update=update)


def _config_diff(old: str, new: str) -> str:
    return (
        "diff --git a/config.toml b/config.toml\n--- a/config.toml\n+++ b/config.toml\n"
        f"@@ -1,3 +1,3 @@\n a = 1\n-b = {old}\n+b = {new}\n c = 3\n"
    )


def _rebuild_setup(tmp_path: Path):
    """The efficacy loop's rebuild, its trace and state store, and a one-file baseline
    ``a = 1, b = 2, c = 3`` adopted as the original state."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from efficacylib.loop import rebuild_trials
        from efficacylib.states import StateStore
        from efficacylib.trace import RunTrace
    finally:
        sys.path.remove(str(BENCHMARKS))
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "config.toml").write_text("a = 1\nb = 2\nc = 3\n")
    states = StateStore(tmp_path / "states")
    return rebuild_trials, RunTrace, states, baseline, states.adopt(baseline)


def test_a_wave_experiment_is_scored_against_the_code_it_was_tested_on(tmp_path: Path) -> None:
    """Two experiments of one wave change the same line of the baseline; the first is kept.
    The second's patch belongs to the wave's baseline, its A/B compared it with that code,
    and so must its truth: rebuilt on its control arm's snapshot, not on the state the
    first one shipped (where its patch does not even apply)."""
    rebuild_trials, RunTrace, states, baseline, original = _rebuild_setup(tmp_path)
    snapshot = tmp_path / "arms" / original.name  # the control arm's frozen copy
    snapshot.parent.mkdir()
    shutil.copytree(baseline, snapshot)
    records = [
        _wave_record(1, _config_diff("2", "5"), snapshot, "kept"),
        _wave_record(2, _config_diff("2", "7"), snapshot, "discarded"),
    ]
    trace = RunTrace("agentx", "tiny", 0, 2, str(original))
    rebuild_trials(trace, records, states)
    assert not trace.notes, trace.notes
    first, second = trace.trials
    assert first.launched and Path(trace.shipped[0]) != original
    assert Path(second.control) == original  # the wave's baseline, not the first's keep
    assert (Path(second.treatment) / "config.toml").read_text() == "a = 1\nb = 7\nc = 3\n"
    assert trace.final == trace.shipped[0]  # a discard ships nothing
    assert (Path(trace.final) / "config.toml").read_text() == "a = 1\nb = 5\nc = 3\n"


def test_a_patch_the_ledger_cut_short_is_scored_from_its_arm_snapshot(tmp_path: Path) -> None:
    """The ledger keeps the first 20,000 characters of a diff; a longer change's recorded
    patch does not apply, and its treatment arm's frozen snapshot is what the judge scores."""
    rebuild_trials, RunTrace, states, baseline, original = _rebuild_setup(tmp_path)
    served = tmp_path / "arms" / "treatment"
    shutil.copytree(baseline, served)
    (served / "config.toml").write_text("a = 1\nb = 9\nc = 3\n")
    cut = _config_diff("2", "9")[:-12]  # the hunk ends mid-line
    record = _wave_record(1, cut, baseline, "discarded")
    record.arms["treatment"] = {"name": "treatment", "workdir": "/nowhere", "artefact": str(served)}
    trace = RunTrace("agentx", "tiny", 0, 1, str(original))
    rebuild_trials(trace, [record], states)
    (trial,) = trace.trials
    assert (Path(trial.treatment) / "config.toml").read_text() == "a = 1\nb = 9\nc = 3\n"
    assert "its arm's snapshot scored" in trace.notes[0]


def test_random_search_retunes_a_technique_a_keep_already_merged(tmp_path: Path) -> None:
    """After a KEEP merged `category_channel(size=40)`, another size of it is a retune of the
    merged code (what the loop's developer does), not the recipe applied a second time, which
    its guard refuses: random search used to skip such draws with 'edits do not apply'."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from efficacylib.space import Option, option_edits, recipe
        from efficacylib.states import StateError, StateStore
    finally:
        sys.path.remove(str(BENCHMARKS))
    from agentx.research.catalog import load_catalog
    from agentx.sandbox.target import template_path

    catalog = load_catalog()
    states = StateStore(tmp_path / "states")
    original = states.adopt(template_path())
    kept = states.with_edits(
        original, option_edits(catalog, Option("category_channel", (("size", 40),)), original)
    )
    other = Option("category_channel", (("size", 120),))
    with pytest.raises(StateError):
        states.with_edits(kept, recipe(catalog, other))
    retuned = states.with_edits(kept, option_edits(catalog, other, kept))
    assert "120" in (retuned / "config.toml").read_text()
    assert "120" not in (kept / "config.toml").read_text()
