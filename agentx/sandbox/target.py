"""The sandbox as a :class:`~agentx.target.Target`: a real repository and a simulated world.

Layout under the sandbox root::

    repo/            the baseline git repository (copied from the template)
    data/full/       all logged interactions (what arms train on)
    data/train/      logs before the offline hold-out days
    data/sample/     a small sample for dry runs
    arms/<hash>/     a frozen snapshot of each launched repository state (what its arm runs)
    truth/<hash>.json  its ground truth over the horizon (cache)

Arms serve day by day in a closed loop (:mod:`agentx.sandbox.online`): nothing an arm serves
is precomputed, so a collect or a ground truth always runs the snapshot's real code.

Code under test never writes where results live: an arm process may write only its own
private scratch directory, sees its snapshot and the data read-only, and sends numbers over a
pipe; the parent seals ground truths into ``truth/`` (:mod:`agentx.sandbox.cache`: checksummed,
verified on read) and re-hashes snapshots on use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import tomllib
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agentx.models import CheckResult
from agentx.sandbox import cache, model_checks, pytest_report, readouts
from agentx.sandbox.analysis import analyse_log
from agentx.sandbox.arms import ArmFailure, ArmProcess
from agentx.sandbox.host_memory import memory_is_short
from agentx.sandbox.logs import write_data_dir
from agentx.sandbox.model_cache import ModelCache
from agentx.sandbox.online import (
    CONTROL,
    METRIC_DEFINITIONS,
    Phase,
    SandboxWorld,
    Timeline,
    TimelineResult,
    clean_slates,
    load_world_bundle,
    per_user_metrics,
    population_metrics,
)
from agentx.sandbox.pre_period import PrePeriodCache, pre_period_key, pre_period_seed
from agentx.sandbox.ranking_metrics import catalogue_coverage, ndcg_at_k, recall_at_k
from agentx.sandbox.world import WorldParams
from agentx.target.contract import StageTraffic, TargetError
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
from agentx.target.shipping import ShipResult, ship_git_worktree
from agentx.workspace import git
from agentx.workspace.edits import EditError, read_inside
from agentx.workspace.process import (
    TRANSIENT_OUTCOMES,
    ProcessResult,
    classify_text,
    run_confined,
)

HOLDOUT_DAYS = 2
TRUTH_SEED = 900_001
OFFLINE_USERS = 3000
DRY_RUN_USERS = 200
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


# Live rollouts kept between stages (each holds two arm processes): enough for a wave of 8
# experiments side by side; the oldest is closed first (a later stage of it replays).
MAX_LIVE = 8
# ... and fewer when memory runs short: an arm of the 200,000-user `default` holds about
# 0.9 GB, so eight live rollouts are about 15 GB. While less than this share of the
# machine's memory is available, older live rollouts are closed too (a later stage of one
# replays: the same numbers, only slower), never the one that just ran.
LIVE_MEMORY_RESERVE = 0.15


def template_path() -> Path:
    """The recommender template shipped inside the package."""
    return Path(str(resources.files("agentx.sandbox").joinpath("template")))


@functools.cache
def simulator_version() -> str:
    """Hash of the code that generates the world's data: logs made by older code are stale.

    Computed once per process: it is part of every cache key, and the code a process
    simulates with is the code it imported."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in ("world.py", "population.py", "simulator.py", "logs.py", "online.py", "arms.py"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


def _repo_files(root: Path) -> list[tuple[Path, Path]]:
    """(relative path, path) of a repository state's files in sorted order, without git's
    own files and caches: what its content hash and its fingerprint cover."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not any(part in _SKIP for part in rel.parts) and path.is_file():
            files.append((rel, path))
    return files


def _files_fingerprint(root: Path) -> str:
    """Cheap identity of a repository's files (paths, sizes, modification times): changes
    whenever a file is edited, added or removed."""
    digest = hashlib.sha256()
    for rel, path in _repo_files(root):
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def content_hash(root: Path) -> str:
    """Hash of the files of a repository state (excluding git and caches)."""
    digest = hashlib.sha256()
    for rel, path in _repo_files(root):
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
        # Where the time of the last simulated timeline went (benchmarks read it).
        self.last_timing: dict[str, float] = {}
        # Rollouts whose arms are still running, by (roles, phases run): experiments of a
        # wave collect their stages side by side, each continuing its own timeline.
        self._live: dict[tuple[Any, ...], _LiveRollout] = {}
        self._live_lock = threading.Lock()
        self._truth_locks: dict[str, threading.Lock] = {}
        self._description: tuple[str, SystemDescription] | None = None  # see describe()
        # Trained models of snapshots: an arm of code trained before loads it (model_cache).
        self.models = ModelCache(self.root / "models")
        # Pre-periods of baselines, run once per baseline and seed (pre_period); off, every
        # rollout serves its own (the same numbers: benchmarks compare the two).
        self.pre_periods = PrePeriodCache(self.models)
        self.reuse_pre_periods = True
        weakref.finalize(self, _close_all, self._live)

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
            {"world": self.world_params.behaviour(), "simulator": simulator_version()},
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
        """Architecture doc, repository map, config keys, features, data schema, metrics.

        Built once per state of the baseline's files (name, size, modification time): every
        stage, verdict and verification asks for it, and mapping the repository parses every
        module (about 15% of a wave's main-process time before). Callers must not mutate it.
        """
        fingerprint = _files_fingerprint(self.repo_path)
        cached = self._description
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        description = self._describe()
        self._description = (fingerprint, description)
        return description

    def _describe(self) -> SystemDescription:
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
    def _arm(
        self,
        name: str,
        repo: Path,
        data: Path,
        timeout_s: float | None = None,
        cache_key: str | None = None,
        load_model: Path | None = None,
        checkpoint_dir: Path | None = None,
    ) -> ArmProcess:
        """An arm of ``repo``; with ``cache_key`` (only for content-addressed snapshots) it
        loads the model an earlier arm of the same snapshot, data and seed trained; with
        ``load_model`` it starts from that checkpoint instead, and with ``checkpoint_dir``
        it may save one there."""
        params = self.world_params
        limits = {"train_timeout_s": timeout_s, "request_timeout_s": timeout_s} if timeout_s else {}
        return ArmProcess(
            name,
            repo,
            data,
            seed=self.seed,
            slate_size=params.slate_size,
            n_items=params.n_items,
            model_cache=self.models,
            cache_key=cache_key,
            load_model=load_model,
            checkpoint_dir=checkpoint_dir,
            **limits,
        )

    def _private_dir(self) -> Path:
        """A fresh directory for one confined run's output, visible to that run only."""
        scratch = self.root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="run-", dir=scratch))

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
        """Grounding first, then the repository's own unit tests and a closed-loop dry run.

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
        checks.append(self._dry_run(workdir, timeout_s))
        return WorkspaceCheck(checks=checks)

    def _dry_run(self, workdir: Path, timeout_s: float) -> CheckResult:
        """Train on a sample, serve two days with a day of feedback in between."""
        started = time.perf_counter()
        day = self.world.online_start_day
        users = np.arange(min(DRY_RUN_USERS, self.world.population.n_users))
        problem: str | None = None
        transient = False
        try:
            with self._arm("dry-run", workdir, self.root / "data" / "sample", timeout_s) as arm:
                first, _ = arm.serve(day, users)
                arm.update(_synthetic_feedback(users, first, day))
                second, _ = arm.serve(day + 1, users)
                unsound = model_checks.judge(arm.diagnose(day + 1, users.size))
            bad = int(clean_slates(first, day, self.world.population)[1].sum())
            bad += int(clean_slates(second, day + 1, self.world.population)[1].sum())
            if unsound:
                problem = f"dry run: {unsound}"
            elif bad:
                problem = f"dry run served {bad} invalid slots (duplicates/unreleased/out of range)"
        except ArmFailure as error:
            problem = str(error)
            transient = classify_text(problem) in TRANSIENT_OUTCOMES
        return CheckResult(
            dimension="dry_run",
            passed=problem is None,
            detail=problem or "train, serve, learn from a day of feedback, serve again: ok",
            transient=transient,
            data={"seconds": round(time.perf_counter() - started, 2)},
        )

    def evaluate_offline(self, workdir: Path, timeout_s: float = 600.0) -> OfflineMetrics:
        """NDCG/Recall@K on the hold-out days, training on the days before."""
        params, world = self.world_params, self.world
        cutoff = params.log_days - HOLDOUT_DAYS
        users = np.arange(min(OFFLINE_USERS, world.population.n_users))
        try:
            with self._arm("offline", workdir, self.root / "data" / "train", timeout_s) as arm:
                slates, candidates = arm.serve(cutoff, users)
                train_s, serve_s = arm.train_seconds, arm.serve_seconds
        except ArmFailure as error:
            raise TargetError(f"offline evaluation failed: {error}") from None
        log = world.log
        hold = (log.day >= cutoff) & (log.click > 0) & (log.user < users.size)
        relevant: list[set[int]] = [set() for _ in range(users.size)]
        for user, item in zip(log.user[hold], log.item[hold], strict=True):
            relevant[int(user)].add(int(item))
        k = params.slate_size
        released = int((world.population.item_release_day <= cutoff).sum())
        return OfflineMetrics(
            ndcg_at_k=ndcg_at_k(slates, relevant, k),
            recall_at_k=recall_at_k(slates, relevant, k),
            coverage=catalogue_coverage(slates, released),
            k=k,
            n_users=int(users.size),
            train_seconds=train_s,
            serve_ms_per_user=1000.0 * serve_s / users.size,
            latency_ms=params.latency_base_ms
            + params.latency_per_candidate_ms * float(candidates.mean()),
        )

    # ------------------------------------------------------------------ online
    def launch(self, name: str, workdir: Path) -> ArmHandle:
        """Freeze ``workdir`` into a content-addressed snapshot that the arm will run.

        The snapshot lives outside every worktree, so the code under test cannot change
        what its own arm (or the control) runs after launch; it is re-hashed whenever it
        is used.
        """
        try:
            snapshot = self._snapshot(Path(workdir))
        except (OSError, TargetError) as error:
            return ArmHandle(
                name=name, workdir=str(workdir), artefact="", ok=False, error=str(error)
            )
        return ArmHandle(name=name, workdir=str(workdir), artefact=str(snapshot))

    def _snapshot(self, workdir: Path) -> Path:
        key = content_hash(workdir)
        snapshot = self.root / "arms" / key
        if snapshot.exists() and content_hash(snapshot) == key:
            return snapshot
        if snapshot.exists():
            shutil.rmtree(snapshot, ignore_errors=True)  # tampered or half-written: rebuilt
        # a staging directory of its own: experiments launched side by side (threads, or
        # workers sharing the sandbox) may freeze the same baseline at the same moment
        staging = snapshot.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(workdir, staging, ignore=shutil.ignore_patterns(*_SKIP))
        if content_hash(staging) != key:
            shutil.rmtree(staging, ignore_errors=True)
            raise TargetError(f"{workdir} changed while it was being launched")
        try:
            staging.replace(snapshot)
        except OSError:  # another launch put the same content there first
            shutil.rmtree(staging, ignore_errors=True)
            if not (snapshot.exists() and content_hash(snapshot) == key):
                raise
        return snapshot

    def _verified(self, arm: ArmHandle) -> Path:
        if not arm.ok or not arm.artefact:
            raise TargetError(f"arm {arm.name} is not serving: {arm.error}")
        snapshot = Path(arm.artefact)
        if not snapshot.is_dir() or content_hash(snapshot) != snapshot.name:
            raise TargetError(f"arm {arm.name}: its snapshot {snapshot} is missing or was altered")
        return snapshot

    def collect(
        self,
        control: ArmHandle,
        treatment: ArmHandle,
        assignment: np.ndarray,
        days: int,
        seed: int,
        earlier: Sequence[StageTraffic] = (),
    ) -> OnlineReadout:
        """Simulate the pre-period, the ``earlier`` stages, then ``days`` of this stage.

        Stages follow each other in simulated time and users keep their arm; the readout
        covers this stage's days, with the pre-period as covariates.
        """
        if control.name == treatment.name:
            raise TargetError(f"control and treatment arms share the name {control.name!r}")
        phases = [Phase(np.asarray(s.assignment), s.days, s.seed) for s in earlier]
        phases.append(Phase(np.asarray(assignment), days, seed))
        total = self.world_params.pre_days + sum(phase.days for phase in phases)
        if total > self.horizon:
            asked = total - self.world_params.pre_days
            raise TargetError(
                f"at most {self.world_params.horizon_days} experiment days (asked {asked})"
            )
        errors: dict[str, str] = {}
        snapshots: dict[str, Path] = {}
        for arm in (control, treatment):
            try:
                snapshots[arm.name] = self._verified(arm)
            except TargetError as error:
                errors[arm.name] = str(error)
        if not errors:
            names = [control.name, treatment.name]
            roles = {CONTROL: snapshots[control.name], 1: snapshots[treatment.name]}
            entry = self._readout_entry(roles, phases)
            cached = readouts.load(entry, names, days)
            if cached is not None:
                return cached
            try:
                result = self._continue_rollout(roles, phases)
            except ArmFailure as error:
                failed = treatment.name if f"arm {treatment.name}" in str(error) else control.name
                errors[failed] = str(error)
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
        window, pre = result.phases[-1], result.pre
        users, metrics, before = {}, {}, {}
        for index, arm in enumerate((control, treatment)):
            members = np.flatnonzero(np.asarray(assignment) == index)
            users[arm.name] = members
            metrics[arm.name] = per_user_metrics(window.sums, members)
            before[arm.name] = per_user_metrics(pre.sums, members)
        readout = OnlineReadout(
            arms=[control.name, treatment.name], users=users, metrics=metrics, pre=before, days=days
        )
        try:
            readouts.store(entry, readout)
        except OSError:  # a full or read-only disk costs the next replay time, nothing else
            pass
        return readout

    def _readout_entry(self, roles: dict[int, Path], phases: list[Phase]) -> Path:
        """Where the readout of this rollout's last phase is cached (see readouts.py)."""
        key = readouts.readout_key(
            [path.name for path in roles.values()],
            [_phase_key(phase) for phase in phases],
            self.seed,
            simulator_version(),
        )
        return self.root / "readouts" / f"{key}.npz"

    def _start(
        self, snapshots: dict[int, Path], pre_seed: int, *, reuse_pre_period: bool = False
    ) -> tuple[Timeline, ExitStack]:
        """Start one arm process per role (training side by side) and run the pre-period.

        With ``reuse_pre_period`` (rollouts: the control is a baseline every experiment of
        it shares) a pre-period this sandbox recorded for the same control and draws is
        reused, and one it runs is recorded (:mod:`agentx.sandbox.pre_period`)."""
        names = {1: "treatment"}
        data = self.root / "data" / "full"
        data_fingerprint = _files_fingerprint(data)
        model_keys = {
            key: ModelCache.key(path, data_fingerprint, self.seed)
            for key, path in snapshots.items()
        }
        plan, record, saved = None, None, False
        stack = ExitStack()
        started = time.perf_counter()
        try:
            others = {
                key: self._arm(names.get(key, str(key)), path, data, cache_key=model_keys[key])
                for key, path in snapshots.items()
                if key != CONTROL
            }
            trained_first: set[int] = set()

            def train_while_waiting() -> None:
                """Another rollout is serving this pre-period: train this rollout's other
                arms meanwhile. Their trainings end before the wait, so no rollout ever
                waits for a training held up by this wait."""
                for key, arm in others.items():
                    stack.callback(arm.close)
                    arm.spawn()
                    trained_first.add(key)
                for arm in sorted(others.values(), key=lambda arm: arm.waiting_for_model):
                    arm.wait_ready()

            if reuse_pre_period:  # the control starts from the plan: claim it first
                world = json.dumps(self.world_params.behaviour(), sort_keys=True)
                key = pre_period_key(model_keys[CONTROL], pre_seed, world, simulator_version())
                plan = self.pre_periods.claim(key, before_waiting=train_while_waiting)
            restore = {}
            if plan is not None:
                restore = {"load_model": plan.model, "checkpoint_dir": plan.checkpoint_dir}
            control = self._arm(
                "control", snapshots[CONTROL], data, cache_key=model_keys[CONTROL], **restore
            )
            arms = {key: control if key == CONTROL else others[key] for key in snapshots}
            for key, arm in arms.items():  # one process per core
                if key not in trained_first:
                    stack.callback(arm.close)
                    arm.spawn()
            # arms that train come first: an arm waiting for another rollout's training of
            # its model must never hold up a training that rollout may be waiting for
            pending = [arm for key, arm in arms.items() if key not in trained_first]
            for arm in sorted(pending, key=lambda arm: arm.waiting_for_model):
                if _trains_through_pre_period(arm, arms):
                    arm.defer_readiness()
                else:
                    arm.wait_ready()
            ready = time.perf_counter() - started
            if plan is not None and plan.reuse and control.loaded_model:
                learned = frozenset({CONTROL})
                timeline = Timeline(
                    self.world, arms, pre_seed, pre_period=plan.record, learned=learned
                )
            else:
                if plan is not None and plan.reuse:  # unreadable: the control trained afresh
                    self.pre_periods.forget(plan.key)
                timeline = Timeline(self.world, arms, pre_seed, record_pre_period=plan is not None)
                record = timeline.pre_period
                if plan is not None and plan.checkpoint_dir is not None:
                    saved = control.checkpoint()
            timeline.result.wall_seconds["ready"] += ready
            return timeline, stack
        except BaseException:
            stack.close()
            raise
        finally:
            if plan is not None:
                self.pre_periods.finish(plan, record, saved)

    def _simulate(self, snapshots: dict[int, Path], phases: list[Phase]) -> TimelineResult:
        """Run a whole timeline with fresh arm processes, then stop them."""
        started = time.perf_counter()
        timeline, stack = self._start(snapshots, phases[0].seed)
        with stack:
            for phase in phases:
                timeline.run_phase(phase)
        self._record_timing(timeline.result, time.perf_counter() - started)
        return timeline.result

    def _continue_rollout(self, snapshots: dict[int, Path], phases: list[Phase]) -> TimelineResult:
        """The rollout's timeline through its last phase, continuing its live one if it has
        run exactly the earlier phases (the usual case: stages collected in order), else
        replaying them from the start; both give the same numbers.

        Each rollout has its own live timeline (experiments of a wave run side by side); at
        most ``MAX_LIVE`` are kept, the oldest closed first.
        """
        started = time.perf_counter()
        roles = tuple(path.name for path in snapshots.values())
        keys = [_phase_key(phase) for phase in phases]
        with self._live_lock:
            live = self._live.pop((roles, tuple(keys[:-1])), None)
        if live is None:
            pre_seed = pre_period_seed(self.seed)
            reuse = self.reuse_pre_periods
            timeline, stack = self._start(snapshots, pre_seed, reuse_pre_period=reuse)
            live = _LiveRollout(roles=roles, phases=[], timeline=timeline, stack=stack, seconds=0.0)
            todo = phases
        else:
            todo = phases[-1:]
        try:
            for phase in todo:
                live.timeline.run_phase(phase)
                live.phases.append(_phase_key(phase))
        except BaseException:
            live.stack.close()
            raise
        live.seconds += time.perf_counter() - started
        self._record_timing(live.timeline.result, live.seconds)
        with self._live_lock:
            self._live[(roles, tuple(live.phases))] = live
        self._evict_live(keep=live)
        return live.timeline.result

    def _evict_live(self, keep: _LiveRollout) -> None:
        """Close the oldest live rollouts but ``keep`` while more than :data:`MAX_LIVE` are
        live or available memory is below :data:`LIVE_MEMORY_RESERVE` of the machine's (each
        closed one frees its two arms)."""
        while True:
            short = memory_is_short(LIVE_MEMORY_RESERVE)
            with self._live_lock:
                if len(self._live) <= MAX_LIVE and not short:
                    return
                oldest = next((k for k, v in self._live.items() if v is not keep), None)
                if oldest is None:
                    return
                closing = self._live.pop(oldest)
            closing.stack.close()

    def _close_live(self, snapshot: str | None = None) -> None:
        """Stop the arm processes of live rollouts: those treating with ``snapshot``, or
        all of them."""
        with self._live_lock:
            keys = [k for k, live in self._live.items() if snapshot in (None, *live.roles[1:])]
            closing = [self._live.pop(key) for key in keys]
        for live in closing:
            live.stack.close()

    def _record_timing(self, result: TimelineResult, total: float) -> None:
        """Where the wall time of the timeline went: waiting for the arms to be ready (their
        start and training, as far as the rollout waited for it: a treatment trains through
        the pre-period), for all arms to serve and to learn, and simulating."""
        arms = result.arm_seconds.values()
        wall = result.wall_seconds
        self.last_timing = {
            "total_s": total,
            "arms_train_s": wall["ready"],
            "arms_serve_s": wall["serve"],
            "arms_update_s": wall["update"],
            "simulator_s": wall["simulate"],
            "other_s": total - sum(wall.values()),
            # CPU seconds (independent of the machine's load): the slower arm's training, all
            # arms' serving and learning added up, the simulator's own work.
            "arms_train_cpu_s": max((seconds["train_cpu"] for seconds in arms), default=0.0),
            "arms_serve_cpu_s": sum(seconds["serve_cpu"] for seconds in arms),
            "arms_update_cpu_s": sum(seconds["update_cpu"] for seconds in arms),
            "simulator_cpu_s": result.simulate_cpu_seconds,
        }

    def ship(self, workdir: Path, message: str) -> ShipResult:
        """Merge the kept change's branch into the baseline repository (once)."""
        try:
            return ship_git_worktree(self.repo_path, workdir, message)
        except git.GitError as error:
            raise TargetError(f"shipping {workdir.name} failed: {error}") from None

    def rollback(self, arm: ArmHandle) -> None:
        """Stop serving an arm. Snapshots are content-addressed and kept as a cache."""
        arm.ok = False
        self._close_live(Path(arm.artefact).name if arm.artefact else None)

    # ------------------------------------------------------------------ truth
    def truth_of(self, workdir: Path) -> dict[str, float]:
        """Metrics of a repository state serving everyone over the horizon (cached)."""
        return self._truth_record(workdir)["metrics"]

    def truth_series(self, workdir: Path) -> list[float]:
        """Mean watch time per user on each day of the horizon, for ``workdir`` serving all."""
        return list(self._truth_record(workdir)["daily_watch"])

    def prefetch_ground_truth(self, workdir: Path) -> None:
        """Start ``workdir``'s truth in a background thread, beside its rollout.

        The verdict's :meth:`ground_truth` then takes the same per-state lock and reads the
        cached record, or waits for it: the numbers are the ones it would have computed.
        A daemon thread, so an interrupted run does not wait for it at exit (the confined
        arm dies with the process; the cache entry is sealed only when complete).
        """
        thread = threading.Thread(
            target=self._prefetch_truth,
            args=(Path(workdir),),
            name=f"truth-{Path(workdir).name}",
            daemon=True,
        )
        thread.start()

    def compute_truths(self, workdirs: list[Path], jobs: int) -> None:
        """Fill the truth cache for ``workdirs``, ``jobs`` states at a time (benchmarks).

        Why: a truth is one confined arm serving everyone over the horizon, about one core;
        benchmarks that judge dozens of states use the machine this way. Later reads return
        the cached records, so numbers do not depend on ``jobs``; a state whose truth fails
        is computed again, and its error raised, when it is read.
        """
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(self._prefetch_truth, [Path(w) for w in workdirs]))

    def adopt_truths(self, other_root: Path) -> int:
        """Copy into this sandbox's cache the ground truths another sandbox computed that
        are this sandbox's truths too; return how many were copied (benchmarks).

        Why: a benchmark's judge and a loop run with the same arm seed compute the same
        truths (minutes of a core each on `default`). A truth is adopted only when the other
        sandbox was built for the same world and simulator (its ``data/world.json`` equals
        this one's) and the record's key is the one this sandbox would write (same code,
        arm seed, simulator and draws); anything else is left to be computed here.
        """
        other_root = Path(other_root).resolve()
        marker = "data/world.json"
        try:
            same_world = (other_root / marker).read_text() == (self.root / marker).read_text()
        except OSError:
            return 0
        if not same_world or other_root == self.root:
            return 0
        adopted = 0
        for entry in sorted((other_root / "truth").glob("*.json")):
            mine = self.root / "truth" / entry.name
            if cache.read_json(mine) is not None:
                continue
            record = cache.read_json(entry)
            if record is None or record.get("key") != _truth_key(entry.stem, self.seed):
                continue
            cache.write_json(mine, record)
            adopted += 1
        return adopted

    def _prefetch_truth(self, workdir: Path) -> None:
        try:
            self._truth_record(workdir, close_live=False)
        except Exception:  # the verdict asks again and records why it failed
            pass

    def _truth_record(self, workdir: Path, close_live: bool = True) -> dict[str, Any]:
        key = content_hash(workdir)
        if close_live:  # asked by the verdict: the rollout treating with this code is over
            self._close_live(key)
        entry = self.root / "truth" / f"{key}.json"
        record = cache.read_json(entry)  # None when absent or altered since it was sealed
        if record is not None and record.get("key") == _truth_key(key, self.seed):
            return record
        with self._live_lock:
            lock = self._truth_locks.setdefault(key, threading.Lock())
        with lock:  # experiments side by side may ask for the same truth (the baseline's)
            record = cache.read_json(entry)
            if record is not None and record.get("key") == _truth_key(key, self.seed):
                return record
            return self._compute_truth(workdir, key, entry)

    def _compute_truth(self, workdir: Path, key: str, entry: Path) -> dict[str, Any]:
        arm = self.launch("truth", workdir)
        snapshot = self._verified(arm) if arm.ok else None
        if snapshot is None:
            raise TargetError(f"cannot compute ground truth: {arm.error}")
        everyone = np.zeros(self.world.population.n_users, dtype=np.int64)
        phase = Phase(everyone, self.world_params.horizon_days, TRUTH_SEED)
        try:
            result = self._simulate({CONTROL: snapshot}, [phase])
        except ArmFailure as error:
            raise TargetError(f"cannot compute ground truth: {error}") from None
        released = self.world.released_items(self.world.online_start_day + self.horizon)
        window = result.phases[0]
        record = {
            "key": _truth_key(key, self.seed),
            "metrics": population_metrics(window, released),
            "daily_watch": window.daily_watch,
        }
        cache.write_json(entry, record)
        return record

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


@dataclass
class _LiveRollout:
    """A rollout's timeline and arm processes, kept between the collects of its stages."""

    roles: tuple[str, ...]  # snapshot names, control first
    phases: list[tuple[str, int, int]]  # the phases run so far (see _phase_key)
    timeline: Timeline
    stack: ExitStack  # closes the arm processes
    seconds: float  # wall time spent in this rollout's collects so far


def _close_all(live: dict[tuple[Any, ...], _LiveRollout]) -> None:
    """Stop every live rollout's arm processes (the target is going away)."""
    for rollout in list(live.values()):
        rollout.stack.close()
    live.clear()


def _phase_key(phase: Phase) -> tuple[str, int, int]:
    """What identifies a phase: who was in which arm, for how many days, with which draws."""
    digest = hashlib.sha256(np.ascontiguousarray(phase.assignment, dtype=np.int64).tobytes())
    return digest.hexdigest(), int(phase.days), int(phase.seed)


def _truth_key(content: str, seed: int) -> str:
    """What a cached ground truth depends on: the code, the arm's training seed, the
    simulator and the truth's draws."""
    return f"{content}:{seed}:{simulator_version()}:{TRUTH_SEED}"


def _synthetic_feedback(users: np.ndarray, slates: np.ndarray, day: int) -> dict[str, np.ndarray]:
    """A plausible day of impressions for the dry run: every slot shown, the top one clicked."""
    rows, positions = np.nonzero(slates >= 0)
    click = (positions == 0).astype(np.int8)
    return {
        "user": users[rows].astype(np.int32),
        "item": slates[rows, positions].astype(np.int32),
        "day": np.full(rows.size, day, dtype=np.int32),
        "position": positions.astype(np.int16),
        "click": click,
        "watch_time": (30.0 * click).astype(np.float32),
    }


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


def _summary_line(result: ProcessResult) -> str:
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "tests passed"


__all__ = ["METRICS", "METRIC_DEFINITIONS", "SandboxTarget", "content_hash", "template_path"]


def _trains_through_pre_period(arm: ArmProcess, arms: dict[int, ArmProcess]) -> bool:
    """Whether ``arm`` may go on training while the control serves the pre-period: not the
    control itself, and only an arm that trains or loads its own model beside a control
    that does too. An arm waiting for another rollout's training, or beside a control that
    does, is made ready first, so no rollout's pre-period waits on another's (two rollouts
    each waiting for a model the other seals only after its pre-period would deadlock)."""
    control = arms[CONTROL]
    return arm is not control and not arm.waiting_for_model and not control.waiting_for_model
