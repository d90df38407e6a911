"""The sandbox as a :class:`~agentx.target.Target`: a real repository and a simulated world.

Layout under the sandbox root::

    repo/            the baseline git repository (copied from the template)
    data/full/       all logged interactions (what arms train on)
    data/train/      logs before the offline hold-out days
    data/sample/     a small sample for dry runs
    arms/<hash>.npz  what each distinct repository state serves (cache)
    truth/<hash>.json  its noise-free expected metrics (cache)
    scratch/         one fresh private directory per confined run (its only output)

Code under test never writes into ``arms/`` or ``truth/``: each confined run writes
into its own fresh directory under ``scratch/``, the only one bound writable besides
its worktree, and the parent checks what it wrote and seals it into the cache
(:mod:`agentx.sandbox.cache`: checksummed, verified on read).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from agentx.models import CheckResult
from agentx.sandbox import cache, model_checks, pytest_report
from agentx.sandbox.analysis import analyse_log
from agentx.sandbox.logs import write_data_dir
from agentx.sandbox.online import (
    METRIC_DEFINITIONS,
    ArmServing,
    SandboxWorld,
    load_world_bundle,
    per_user_metrics,
    population_metrics,
)
from agentx.sandbox.ranking_metrics import catalogue_coverage, ndcg_at_k, recall_at_k
from agentx.sandbox.world import WorldParams
from agentx.target.contract import TargetError
from agentx.target.models import (
    ArmHandle,
    DataReport,
    GroundTruth,
    MetricSpec,
    OfflineMetrics,
    OnlineReadout,
    SystemDescription,
    WorkspaceCheck,
)
from agentx.target.repo_map import map_repository, registry_keys
from agentx.workspace import git
from agentx.workspace.edits import EditError, read_inside
from agentx.workspace.process import ProcessResult, run_confined

HOLDOUT_DAYS = 2
TRUTH_REPLICATES = 2
TRUTH_SEED = 900_001
OFFLINE_USERS = 3000
_SKIP = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}

METRICS = [
    MetricSpec(name="watch_time", description="Seconds watched per user over the window."),
    MetricSpec(name="clicks", description="Clicks per user over the window."),
    MetricSpec(name="active_days", description="Days with a visit: return visits (retention)."),
    MetricSpec(
        name="errors", description="Invalid slots served per user.", direction="lower_is_better"
    ),
    MetricSpec(
        name="ctr",
        description="Clicks per impression.",
        kind="ratio",
        numerator="clicks",
        denominator="impressions",
    ),
    MetricSpec(
        name="diversity",
        description="Distinct categories per visit.",
        kind="ratio",
        numerator="distinct_categories",
        denominator="active_days",
    ),
    MetricSpec(
        name="latency_ms",
        description="Modelled serving latency per request.",
        kind="ratio",
        numerator="latency_ms",
        denominator="active_days",
        direction="lower_is_better",
    ),
    MetricSpec(
        name="tail_share",
        description="Share of impressions on long-tail items.",
        kind="ratio",
        numerator="tail_impressions",
        denominator="impressions",
    ),
    MetricSpec(
        name="coverage", description="Share of released items shown at all.", kind="arm_level"
    ),
]


def template_path() -> Path:
    """The recommender template shipped inside the package."""
    return Path(str(resources.files("agentx.sandbox").joinpath("template")))


def simulator_version() -> str:
    """Hash of the code that generates the world's data: logs made by older code are stale."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in ("world.py", "population.py", "simulator.py", "logs.py", "online.py"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


def content_hash(root: Path) -> str:
    """Hash of the files of a repository state (excluding git and caches)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP for part in rel.parts) or not path.is_file():
            continue
        digest.update(str(rel).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class SandboxTarget:
    """The bundled recommender plus its simulated online world."""

    name = "sandbox"
    # collect() is a pure function of (arms, assignment, days, seed): harness evolution may
    # replay a recorded rollout's traffic exactly.
    supports_replay = True

    def __init__(self, root: Path, world: WorldParams, seed: int = 0):
        self.root = Path(root).resolve()
        self.world_params = world
        self.seed = seed
        self._world: SandboxWorld | None = None

    # ------------------------------------------------------------------ setup
    @classmethod
    def create(cls, root: Path, world: WorldParams, seed: int = 0) -> SandboxTarget:
        """Open the sandbox at ``root``, initialising repository and data if missing."""
        target = cls(root, world, seed)
        target.ensure_ready()
        return target

    @property
    def world(self) -> SandboxWorld:
        """The simulated world (built lazily, deterministic)."""
        if self._world is None:
            self._world = load_world_bundle(self.world_params)
        return self._world

    @property
    def repo_path(self) -> Path:
        """The baseline repository."""
        return self.root / "repo"

    @property
    def horizon(self) -> int:
        """Online days each arm serves: the pre-period plus the longest window."""
        return self.world_params.pre_days + self.world_params.horizon_days

    def ensure_ready(self) -> None:
        """Create the baseline repository and the data directories when missing."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.repo_path / ".git").exists():
            if self.repo_path.exists():
                shutil.rmtree(self.repo_path)
            shutil.copytree(
                template_path(),
                self.repo_path,
                ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache"),
            )
            git.init_repository(self.repo_path, "Baseline recommender from the AgentX template")
        marker = self.root / "data" / "world.json"
        expected = json.dumps(
            {"world": self.world_params.model_dump(), "simulator": simulator_version()},
            sort_keys=True,
        )
        if marker.exists() and marker.read_text() != expected:
            built = json.loads(marker.read_text()).get("world", {})
            if built.get("name") != self.world_params.name:
                raise TargetError(
                    f"{self.root} holds the sandbox of world {built.get('name', '?')!r}, not "
                    f"{self.world_params.name!r}: its baseline and memory belong to that world. "
                    f"Use --world {built.get('name', '?')} (or AGENTX_WORLD), or another workspace"
                )
        if not marker.exists() or marker.read_text() != expected:
            self._write_data()  # new sandbox, or the simulator or the world's file changed
            marker.write_text(expected)

    def _write_data(self) -> None:
        world, params = self.world, self.world_params
        data = self.root / "data"
        write_data_dir(data / "full", params, world.population, world.log)
        cutoff = params.log_days - HOLDOUT_DAYS
        write_data_dir(
            data / "train", params, world.population, world.log.select(world.log.day < cutoff)
        )
        sample_users = max(50, world.population.n_users // 10)
        write_data_dir(
            data / "sample",
            params,
            world.population,
            world.log.select(world.log.user < sample_users),
        )

    # ------------------------------------------------------------------ knowledge
    def describe(self) -> SystemDescription:
        """Architecture doc, repository map, config keys, features, data schema, metrics."""
        repo = self.repo_path
        arch = repo / "docs" / "ARCHITECTURE.md"
        config_file = repo / "config.toml"
        config = tomllib.loads(config_file.read_text()) if config_file.exists() else {}
        flat = {
            f"{section}.{key}": value
            for section, values in config.items()
            if isinstance(values, dict)
            for key, value in values.items()
        }
        return SystemDescription(
            name="sandbox recommender",
            architecture=arch.read_text() if arch.exists() else "",
            files=map_repository(repo),
            config_keys=flat,
            features=registry_keys(repo / "recsys" / "features.py", "FEATURES"),
            data_fields={
                "interactions": ["user", "item", "day", "position", "click", "watch_time"],
                "items": ["category", "creator", "release_day"],
            },
            metrics=METRICS,
            # The tests and everything that configures how pytest runs them: a change
            # that may edit them can make the tests dimension pass by not testing.
            protected_paths=[
                "tests/",
                "data/",
                ".git/",
                "conftest.py",
                "pytest.ini",
                ".pytest.ini",
                "pyproject.toml",
                "setup.cfg",
                "tox.ini",
            ],
            latency_budget_ms=self.world_params.latency_budget_ms,
        )

    def analyse_data(self) -> DataReport:
        """Statistics of the logged interactions."""
        world = self.world
        return analyse_log(
            world.log,
            world.population.n_users,
            world.population.n_items,
            world.population.item_category,
            self.world_params.slate_size,
        )

    def user_ids(self) -> np.ndarray:
        """All user ids."""
        return self.world.user_ids

    # ------------------------------------------------------------------ running code
    def _private_dir(self) -> Path:
        """A fresh directory for one confined run's output, visible to that run only."""
        scratch = self.root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="run-", dir=scratch))

    def _run_arm(
        self,
        workdir: Path,
        data: Path,
        out: Path,
        first_day: int,
        days: int,
        users: int = 0,
        timeout_s: float = 600.0,
        diagnose: bool = False,
    ) -> ProcessResult:
        """Train and serve ``workdir`` confined; on success the parent moves the result to ``out``.

        The run may write only a fresh private directory; its worktree and ``data`` are
        visible read-only. ``out`` is never visible to it, so a treatment cannot touch a
        control's results. With ``diagnose`` the model's diagnostics are recorded too.
        """
        private = self._private_dir()
        produced = private / "out.npz"
        args = [
            "-m",
            "agentx.sandbox.arm_runner",
            str(workdir),
            str(data),
            str(produced),
            "--first-day",
            str(first_day),
            "--days",
            str(days),
            "--seed",
            str(self.seed),
        ]
        if users:
            args += ["--users", str(users)]
        if diagnose:
            args.append("--diagnose")
        try:
            result = run_confined(
                args,
                cwd=workdir,
                timeout_s=timeout_s,
                allow_write=[private],
                readable=[data],
                cwd_writable=False,  # the baseline is launched too: it must not change itself
            )
            if result.ok:
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    cache.seal(produced, out)
                except OSError as error:
                    note = f"the arm runner left no usable output: {error}"
                    result = replace(result, returncode=2, stderr=f"{result.stderr}\n{note}")
            return result
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def _run_tests(self, workdir: Path, timeout_s: float) -> tuple[ProcessResult, str | None]:
        """The repository's tests, confined; and why they do not count as passing, if so.

        The exit status alone is not trusted: AgentX's pytest plugin records how many
        tests were collected, passed, skipped, deselected or expected to fail, into a
        private directory of this run.
        """
        private = self._private_dir()
        summary = private / "pytest.json"
        try:
            result = run_confined(
                [
                    "-m",
                    "pytest",
                    "-q",
                    "-x",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "agentx.sandbox.pytest_report",
                    "tests",
                ],
                cwd=workdir,
                timeout_s=timeout_s,
                allow_write=[private],
                env={pytest_report.ENV: str(summary)},
            )
            counts = None
            if summary.is_file() and not summary.is_symlink():
                try:
                    counts = json.loads(summary.read_text()[:10_000])
                except (json.JSONDecodeError, UnicodeDecodeError):
                    counts = None
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return result, pytest_report.judge(counts) if result.ok else None

    def verify(self, workdir: Path, timeout_s: float = 300.0) -> WorkspaceCheck:
        """Grounding first, then the repository's own unit tests and a dry run.

        A configuration that names a feature, loss or weighting the code does not define
        is caught before any of its code runs. Tests pass only when every collected test
        ran and passed; the dry run passes only with valid slates from a numerically
        sound model (:mod:`agentx.sandbox.model_checks`).
        """
        grounding = grounding_check(workdir)
        if not grounding.passed:
            return WorkspaceCheck(checks=[grounding])
        checks: list[CheckResult] = [grounding]
        tests, not_tested = self._run_tests(workdir, timeout_s)
        detail = _summary_line(tests) if tests.ok else tests.tail()
        checks.append(
            CheckResult(
                dimension="unit_tests",
                passed=tests.ok and not_tested is None,
                detail=not_tested or detail,
                transient=tests.transient,
                data={
                    "seconds": round(tests.duration_s, 2),
                    "outcome": tests.outcome.value,
                    "violation": tests.violation or "",
                },
            )
        )
        scratch = self.root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix="dry-", dir=scratch)) / "dry.npz"
        dry = self._run_arm(
            workdir,
            self.root / "data" / "sample",
            out,
            self.world.online_start_day,
            2,
            users=200,
            timeout_s=timeout_s,
            diagnose=True,
        )
        detail = "train + serve on a sample succeeded" if dry.ok else dry.tail()
        if dry.ok:
            detail = self._check_slates(out) or detail
        checks.append(
            CheckResult(
                dimension="dry_run",
                passed=dry.ok and detail.startswith("train"),
                detail=detail,
                transient=dry.transient,
                data={
                    "seconds": round(dry.duration_s, 2),
                    "outcome": dry.outcome.value,
                    "violation": dry.violation or "",
                },
            )
        )
        shutil.rmtree(out.parent, ignore_errors=True)
        return WorkspaceCheck(checks=checks)

    def _check_slates(self, path: Path) -> str | None:
        with np.load(path, allow_pickle=False) as data:
            slates = data["slates"]
            unsound = model_checks.judge({k: data[k] for k in data.files})
        if unsound:
            return f"dry run: {unsound}"
        serving = self._validate(slates)
        bad = int(serving.errors.sum())
        return (
            f"dry run served {bad} invalid slots (duplicates/unreleased/out of range)"
            if bad
            else None
        )

    def evaluate_offline(self, workdir: Path, timeout_s: float = 600.0) -> OfflineMetrics:
        """NDCG/Recall@K on the hold-out days, training on the days before."""
        params, world = self.world_params, self.world
        cutoff = params.log_days - HOLDOUT_DAYS
        users = min(OFFLINE_USERS, world.population.n_users)
        scratch = self.root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix="offline-", dir=scratch)) / "offline.npz"
        result = self._run_arm(
            workdir, self.root / "data" / "train", out, cutoff, 1, users=users, timeout_s=timeout_s
        )
        if not result.ok:
            shutil.rmtree(out.parent, ignore_errors=True)
            raise TargetError(f"offline evaluation failed: {result.violation or result.tail(8)}")
        with np.load(out, allow_pickle=False) as data:
            slates = data["slates"][0]
            candidates = float(data["candidates"][0].mean())
            train_s = float(data["train_seconds"])
            serve_s = float(data["serve_seconds"].sum())
        shutil.rmtree(out.parent, ignore_errors=True)
        log = world.log
        hold = (log.day >= cutoff) & (log.click > 0) & (log.user < users)
        relevant: list[set[int]] = [set() for _ in range(users)]
        for user, item in zip(log.user[hold], log.item[hold], strict=True):
            relevant[int(user)].add(int(item))
        k = params.slate_size
        released = int((world.population.item_release_day <= cutoff).sum())
        return OfflineMetrics(
            ndcg_at_k=ndcg_at_k(slates, relevant, k),
            recall_at_k=recall_at_k(slates, relevant, k),
            coverage=catalogue_coverage(slates, released),
            k=k,
            n_users=users,
            train_seconds=train_s,
            serve_ms_per_user=1000.0 * serve_s / users,
            latency_ms=params.latency_base_ms + params.latency_per_candidate_ms * candidates,
        )

    # ------------------------------------------------------------------ online
    def _validate(self, slates: np.ndarray) -> ArmServing:
        """Blank out invalid slots (counted as errors) and model the latency."""
        pop = self.world.population
        h = slates.shape[0]
        slates = slates.astype(np.int64)
        days = self.world.online_start_day + np.arange(h)[:, None, None]
        in_range = (slates >= 0) & (slates < pop.n_items)
        safe = np.where(in_range, slates, 0)
        released = pop.item_release_day[safe] <= days
        ordered = np.sort(np.where(in_range, slates, -1 - np.arange(slates.shape[2])), axis=2)
        dup_sorted = np.zeros_like(ordered, dtype=bool)
        dup_sorted[:, :, 1:] = ordered[:, :, 1:] == ordered[:, :, :-1]
        n_dups = dup_sorted.sum(axis=2)
        valid = in_range & released
        errors = (slates >= 0).sum(axis=2) - valid.sum(axis=2) + n_dups
        clean = np.where(valid, slates, -1)
        if n_dups.any():
            clean = _drop_duplicates(clean)
        return ArmServing(
            slates=clean,
            latency_ms=np.zeros(clean.shape[:2], np.float32),
            errors=errors.astype(np.float32),
        )

    def launch(self, name: str, workdir: Path) -> ArmHandle:
        """Train ``workdir`` and precompute what it serves for every online day."""
        key = content_hash(workdir)
        artefact = self.root / "arms" / f"{key}.npz"
        if not cache.verified(artefact):  # absent, or altered since it was sealed
            result = self._run_arm(
                workdir,
                self.root / "data" / "full",
                artefact,
                self.world.online_start_day,
                self.horizon,
            )
            if not result.ok:
                reason = result.describe()
                return ArmHandle(
                    name=name, workdir=str(workdir), artefact="", ok=False, error=reason
                )
        with np.load(artefact) as data:
            serve_s = float(data["serve_seconds"].mean())
        per_user_ms = 1000.0 * serve_s / self.world.population.n_users
        return ArmHandle(
            name=name, workdir=str(workdir), artefact=str(artefact), measured_serve_ms=per_user_ms
        )

    def _serving(self, arm: ArmHandle) -> ArmServing:
        if not arm.ok or not arm.artefact:
            raise TargetError(f"arm {arm.name} is not serving: {arm.error}")
        with np.load(arm.artefact) as data:
            slates, candidates = data["slates"], data["candidates"]
        serving = self._validate(slates)
        params = self.world_params
        latency = params.latency_base_ms + params.latency_per_candidate_ms * candidates
        return ArmServing(serving.slates, latency.astype(np.float32), serving.errors)

    def collect(
        self,
        control: ArmHandle,
        treatment: ArmHandle,
        assignment: np.ndarray,
        days: int,
        seed: int,
    ) -> OnlineReadout:
        """Simulate ``days`` of traffic after a pre-period; per-user metrics per arm."""
        if control.name == treatment.name:
            raise TargetError(f"control and treatment arms share the name {control.name!r}")
        if days + self.world_params.pre_days > self.horizon:
            raise TargetError(f"at most {self.world_params.horizon_days} experiment days")
        errors: dict[str, str] = {}
        for arm in (control, treatment):
            if not arm.ok:
                errors[arm.name] = arm.error or "crashed"
        if errors:
            empty = {control.name: {}, treatment.name: {}}
            return OnlineReadout(
                arms=[control.name, treatment.name],
                users={},
                metrics=empty,
                pre=empty,
                days=days,
                errors=errors,
            )
        arms = [self._serving(control), self._serving(treatment)]
        result = self.world.run_window(arms, np.asarray(assignment), days, seed=seed)
        users, metrics, pre = {}, {}, {}
        for index, arm in enumerate((control, treatment)):
            members = np.flatnonzero(assignment == index)
            users[arm.name] = members
            metrics[arm.name] = per_user_metrics(result.window.sampled, members)
            pre[arm.name] = per_user_metrics(result.pre.sampled, members)
        return OnlineReadout(
            arms=[control.name, treatment.name], users=users, metrics=metrics, pre=pre, days=days
        )

    def rollback(self, arm: ArmHandle) -> None:
        """Stop serving an arm. Artefacts are content-addressed and kept as a cache."""
        arm.ok = False

    # ------------------------------------------------------------------ truth
    def truth_of(self, workdir: Path) -> dict[str, float]:
        """Expected metrics of a repository state at full traffic (noise-free, cached)."""
        key = content_hash(workdir)
        entry = self.root / "truth" / f"{key}.json"
        cached = cache.read_json(entry)  # None when absent or altered since it was sealed
        if cached is not None:
            return cached
        arm = self.launch("truth", workdir)
        if not arm.ok:
            raise TargetError(f"cannot compute ground truth: {arm.error}")
        baseline_arm = self.launch("baseline", self.repo_path)
        serving = [self._serving(baseline_arm), self._serving(arm)]
        n_users = self.world.population.n_users
        everyone = np.ones(n_users, dtype=np.int64)
        days = self.world_params.horizon_days
        released = self.world.released_items(self.world.online_start_day + self.horizon)
        totals: dict[str, float] = {}
        for replicate in range(TRUTH_REPLICATES):
            window = self.world.run_window(serving, everyone, days, TRUTH_SEED, replicate).window
            for name, value in population_metrics(window, released, expected=True).items():
                totals[name] = totals.get(name, 0.0) + value / TRUTH_REPLICATES
        cache.write_json(entry, totals)
        return totals

    def ground_truth(self, workdir: Path) -> GroundTruth:
        """True metrics of ``workdir`` and relative effects versus the current baseline."""
        treated = self.truth_of(workdir)
        base = self.truth_of(self.repo_path)
        # A metric whose baseline is zero (e.g. errors) reports its absolute change.
        relative = {
            name: (treated[name] / base[name] - 1.0) if base.get(name) else treated[name]
            for name in treated
        }
        return GroundTruth(metrics=treated, baseline=base, relative=relative)


def grounding_check(workdir: Path) -> CheckResult:
    """Configuration may only name features, losses and weightings the code registers."""
    try:
        config = tomllib.loads(read_inside(workdir, "config.toml"))
    except (OSError, EditError, tomllib.TOMLDecodeError) as error:
        return CheckResult(dimension="grounding", passed=False, detail=f"config.toml: {error}")
    ranker = config.get("ranker", {})
    registries = {
        "features": registry_keys(workdir / "recsys" / "features.py", "FEATURES"),
        "loss": registry_keys(workdir / "recsys" / "ranker.py", "LOSSES"),
        "debias": registry_keys(workdir / "recsys" / "debias.py", "WEIGHTING"),
    }
    problems = []
    for key, known in registries.items():
        wanted = ranker.get(key, [])
        for name in [wanted] if isinstance(wanted, str) else wanted:
            if name not in known:
                problems.append(
                    f"ranker.{key} names {name!r}, which the code does not define "
                    f"(known: {', '.join(known)})"
                )
    return CheckResult(
        dimension="grounding",
        passed=not problems,
        detail="; ".join(problems) or "every configured feature, loss and weighting exists",
    )


def _drop_duplicates(slates: np.ndarray) -> np.ndarray:
    """Replace repeated items within a slate by -1, keeping the first occurrence."""
    out = slates.copy()
    k = slates.shape[-1]
    for j in range(1, k):
        repeated = (out[..., j : j + 1] == out[..., :j]).any(axis=-1) & (out[..., j] >= 0)
        out[..., j] = np.where(repeated, -1, out[..., j])
    return out


def _summary_line(result: ProcessResult) -> str:
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "tests passed"


__all__ = ["METRICS", "METRIC_DEFINITIONS", "SandboxTarget", "content_hash", "template_path"]
