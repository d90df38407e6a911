"""Run the loop end to end: locked, resumable with the run's own settings, with progress
callbacks. The CLI and embedded callers come through :func:`run_loop`."""

from __future__ import annotations

import errno
import shlex
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.constants import INTERRUPT
from langgraph.types import Command
from pydantic import ValidationError

from agentx.graph.builder import build_graph
from agentx.graph.checkpoint import checkpointer_session, serializer
from agentx.graph.context import RunContext
from agentx.graph.gates import GATES, GateAnswerError, PendingGate, parse_answer, pending_gate
from agentx.graph.nodes import SUBGRAPH_NODES
from agentx.graph.postgres import CONNECTION_ERRORS, CheckpointerError, failure
from agentx.graph.resources import Resources, build_resources, isolation_policy
from agentx.graph.tracelog import STREAM_KEY as TRACE_STREAM_KEY
from agentx.llm.probe import LLMUnavailable, check_model
from agentx.memory.store import MemoryStoreError
from agentx.models import ExperimentRecord, TraceEvent
from agentx.settings import Settings
from agentx.settings_sources import Origins
from agentx.summary import RunSummary, summarise_run
from agentx.tracking.langsmith import run_config
from agentx.workspace import isolation
from agentx.workspace.git import GitError
from agentx.workspace.lock import WorkspaceLock
from agentx.workspace.records import (
    WorkspaceRecordError,
    add_run_id,
    check_writable,
    load_run_settings,
    read_run_ids,
    run_defining,
    run_sandbox_path,
    save_run_settings,
    short_of_space,
    with_values,
)


class RunError(RuntimeError):
    """A run cannot start or resume; the message says what to do."""


class RunIdTaken(RunError):
    """The run id is already registered in the workspace (the caller chose a used one)."""


def _known_runs(settings: Settings) -> list[str]:
    try:
        return read_run_ids(settings.workspace)
    except WorkspaceRecordError as error:
        raise RunError(str(error)) from None


def new_run_id(settings: Settings) -> str:
    """Runs in a workspace are numbered: run-1, run-2, ..."""
    return f"run-{len(_known_runs(settings)) + 1}"


def register_run(settings: Settings, run_id: str) -> None:
    """Add ``run_id`` to the workspace's ``runs.json`` (what status and report list).

    Raises:
        RunIdTaken: the id is already taken (its checkpoints would mix with the new run's).
        RunError: ``runs.json`` is unreadable.
    """
    if run_id in _known_runs(settings):
        raise RunIdTaken(f"run id {run_id!r} already exists in {settings.workspace}")
    add_run_id(settings.workspace, run_id)


@dataclass(frozen=True)
class RunPlan:
    """The run about to start or continue: its id and the settings it runs with."""

    settings: Settings
    run_id: str
    resume: bool


def _explicitly_set(settings: Settings, origins: Origins | None) -> Callable[[str], bool]:
    """Which run-defining values the caller chose: from their origins when known (the
    CLI), else a value that differs from its default (embedded callers pass an object)."""
    if origins is not None:
        return origins.explicit
    defaults = run_defining(Settings.model_construct())
    current = run_defining(settings)
    return lambda key: current[key] != defaults[key]


def restore_run_settings(
    settings: Settings, run_id: str, origins: Origins | None = None
) -> Settings:
    """``settings`` with ``run_id``'s stored run-defining values put back.

    Raises:
        RunError: a value chosen now (flag, variable, file or argument) contradicts the
            stored one: a resumed run must be the same run (a different seed or world
            would silently finish another experiment than the one started).
    """
    stored = load_run_settings(settings.workspace, run_id)
    if stored is None:  # a run from before settings were stored: run as configured
        return settings
    current = run_defining(settings)
    chosen = _explicitly_set(settings, origins)
    conflicts = []
    for key, value in stored.items():
        if key in current and chosen(key) and current[key] != value:
            source = f" from {origins.of(key)}" if origins is not None else ""
            conflicts.append(f"{key} {current[key]!r}{source} (the run has {value!r})")
    if conflicts:
        raise RunError(
            f"cannot resume {run_id} with different settings: {'; '.join(conflicts)}; "
            "drop them to resume as started, or start a new run without --resume"
        )
    if stored.get("checkpointer") == "postgres" and settings.postgres.dsn is None:
        raise RunError(
            f"{run_id} is checkpointed in PostgreSQL: set AGENTX_CHECKPOINTER=postgres and "
            "AGENTX_POSTGRES__DSN to the server it ran against to resume it"
        )
    try:
        return Settings.model_validate(with_values(settings.model_dump(), stored))
    except ValidationError as error:
        raise RunError(f"the stored settings of {run_id} are no longer valid: {error}") from None


def plan_run(
    settings: Settings,
    *,
    resume: bool,
    origins: Origins | None = None,
    check: Callable[[Settings], None] | None = None,
) -> RunPlan:
    """Pick the run id (a new one, or the last for ``resume``) and its settings.

    Call with the workspace lock held: a new run is registered here, after ``check``
    (the model probe) accepted the settings it will run with.
    """
    runs = _known_runs(settings)
    if resume:
        if not runs:
            raise RunError(f"no run to resume in {settings.workspace}; start one without --resume")
        run_id = runs[-1]
        restored = restore_run_settings(settings, run_id, origins)
        if check:
            check(restored)
        return RunPlan(restored, run_id, True)
    if check:
        check(settings)
    run_id = new_run_id(settings)
    save_run_settings(settings.workspace, run_id, settings)
    register_run(settings, run_id)
    return RunPlan(settings, run_id, False)


def resume_command(settings: Settings) -> str:
    """The exact command that continues the workspace's last run."""
    return f"agentx run --workspace {shlex.quote(str(settings.workspace))} --resume"


def _started_node(part: Any) -> tuple[str, int] | None:
    """(node name, experiment index) of a ``tasks`` event that starts a task, else None."""
    if isinstance(part, dict) and part.get("name") in SUBGRAPH_NODES:
        return None  # its own nodes are reported as they start
    if isinstance(part, dict) and "input" in part and "result" not in part:
        state = part["input"] if isinstance(part["input"], dict) else {}
        return str(part.get("name")), int(state.get("iteration") or 0)
    return None


def run_loop(
    settings: Settings,
    *,
    resume: bool = False,
    origins: Origins | None = None,
    on_start: Callable[[RunPlan], None] | None = None,
    on_node: Callable[[str, int], None] | None = None,
    on_trace: Callable[[TraceEvent], None] | None = None,
    on_experiment: Callable[[ExperimentRecord], None] | None = None,
    resources: Resources | None = None,
    answer: Any = None,
    on_gate: Callable[[PendingGate], Any] | None = None,
) -> RunSummary:
    """Run (or resume) the loop and return its summary.

    The workspace is locked for the whole run (a second writer gets
    :class:`~agentx.workspace.lock.WorkspaceBusy`). With ``resume`` the last run of the
    workspace continues from its last checkpoint with the settings it started with;
    experiments and cards already recorded are neither lost nor repeated.

    Args:
        origins: where each setting came from (the CLI passes them), so a resumed run
            can tell a contradicting flag from a default.
        on_start: called once the run id and its effective settings are known.
        on_node: called with each node's name and the experiment index (0-based) as the
            node starts (the progress display).
        answer: with ``resume``, the answer to the gate the run waits at (a
            ``HumanResponse``, see :mod:`agentx.graph.gates`); checked before resuming.
        on_gate: asked for an answer whenever the run pauses at a gate (the CLI asks
            the person at the terminal); returning None leaves the run paused, and the
            summary's ``waiting_at`` says where.

    Raises:
        RunError: nothing to resume, contradicting settings, an unusable model (one
            probe call at start), or the workspace cannot be
            written (read-only, full); nothing is half-written in that case.
        WorkspaceBusy: another process holds the workspace.
    """
    if answer is not None and not resume:
        raise RunError("an answer is for a run paused at a gate: add --resume")
    try:
        check_writable(settings.workspace)  # before anything else writes there
    except WorkspaceRecordError as error:
        raise RunError(str(error)) from None
    isolation.configure(isolation_policy(settings))
    isolation.require()  # refuse in one line before anything runs, not mid-experiment
    with WorkspaceLock(settings.workspace):
        try:
            # Opened before the run is registered: a dead checkpoint server refuses the
            # run in one line and leaves no run without checkpoints behind. A resumed run
            # opens the checkpointer it was started with (its own settings).
            where = _resumed_settings(settings, origins) if resume else settings
            with checkpointer_session(where) as checkpointer:
                return _run_locked(
                    settings, resume, origins, on_start, on_node, on_trace, on_experiment,
                    resources, answer, on_gate, checkpointer,
                )  # fmt: skip
        except CheckpointerError as error:
            raise RunError(str(error)) from None
        except CONNECTION_ERRORS as error:  # the checkpoint server went away mid-run
            lost = failure(settings, error, "write checkpoints")
            raise RunError(
                f"{lost}; the run stopped at its last checkpoint: once the server is back, "
                f"`{resume_command(settings)}`"
            ) from None
        except OSError as error:
            if error.errno not in _STORAGE_ERRNOS:
                raise
            problem = f"cannot write to workspace {settings.workspace}: {error.strerror or error}"
            raise _stopped_for_storage(settings, problem) from None
        except (GitError, MemoryStoreError, sqlite3.Error) as error:
            free = short_of_space(settings.workspace)
            if free is None:  # a fault of that component, not of the disk: its own line
                raise
            reason = " ".join(str(error).split())  # git's or SQLite's words, on one line
            problem = f"workspace {settings.workspace} is full ({free // 1024} KiB free): {reason}"
            raise _stopped_for_storage(settings, problem) from None


def _stopped_for_storage(settings: Settings, problem: str) -> RunError:
    """The one line of a run the workspace's storage stopped, with the way to go on."""
    return RunError(
        f"{problem}; the run stopped at its last checkpoint: free space, then "
        f"`{resume_command(settings)}`"
    )


def _resumed_settings(settings: Settings, origins: Origins | None) -> Settings:
    """The settings the workspace's last run resumes with (``settings`` when none)."""
    runs = _known_runs(settings)
    return restore_run_settings(settings, runs[-1], origins) if runs else settings


def _check_model(settings: Settings) -> None:
    """Stop before any work when the configured model cannot serve the run."""
    try:
        check_model(settings.llm)
    except LLMUnavailable as error:
        raise RunError(str(error)) from None


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES})


def _run_locked(
    settings: Settings,
    resume: bool,
    origins: Origins | None,
    on_start: Callable[[RunPlan], None] | None,
    on_node: Callable[[str, int], None] | None,
    on_trace: Callable[[TraceEvent], None] | None,
    on_experiment: Callable[[ExperimentRecord], None] | None,
    resources: Resources | None,
    answer: Any,
    on_gate: Callable[[PendingGate], Any] | None,
    checkpointer: Any,
) -> RunSummary:
    check = None if resources is not None else _check_model  # a caller's model is theirs
    plan = plan_run(settings, resume=resume, origins=origins, check=check)
    settings, run_id = plan.settings, plan.run_id
    if answer is not None:  # refuse a wrong answer before anything is built or printed
        paused = pending_gate_of(settings, run_id)
        if paused is None:
            raise RunError(f"{run_id} is not waiting at a gate; nothing to answer")
        answer = _checked_answer(paused, answer)
    if on_start:
        on_start(plan)
    checkpointer = checkpointer or InMemorySaver(serde=serializer())
    # a resumed run opens the sandbox it started in (a served run's may not be the default)
    sandbox = run_sandbox_path(settings.workspace, run_id) if resume else None
    resources = resources or build_resources(settings, sandbox_root=sandbox)
    graph = build_graph(settings, checkpointer=checkpointer, resources=resources)
    config = run_config(settings, run_id, resources.world_name)  # LangSmith name, tags, metadata

    def summary() -> RunSummary:
        snapshot = graph.get_state(config)
        done = summarise_run(
            snapshot.values, resources.world_name, settings.seed, settings.north_star
        )
        waiting = waiting_gate(run_id, snapshot)
        done = done.model_copy(update={"waiting_at": waiting.model_dump() if waiting else None})
        if settings.tracking.mlflow_uri:  # opt-in: the run and each experiment as MLflow runs
            from agentx.tracking.mlflow_log import publish_snapshot

            publish_snapshot(settings, run_id, snapshot, done)
        return done

    stream_input: Any = {"goal_text": settings.goal, "iterations": settings.iterations}
    if resume and checkpointer is not None:
        snapshot = graph.get_state(config)
        waiting = waiting_gate(run_id, snapshot)
        if answer is not None:
            if waiting is None:
                raise RunError(f"{run_id} is not waiting at a gate; nothing to answer")
            stream_input = Command(resume=_checked_answer(waiting, answer))
        elif not snapshot.tasks:  # finished (``next`` also omits a task whose writes are
            # saved but not yet checkpointed, e.g. an experiment done when Ctrl-C came)
            return summary()
        elif waiting is not None:
            chosen = on_gate(waiting) if on_gate else None
            if chosen is None:
                return summary()
            stream_input = Command(resume=_checked_answer(waiting, chosen))
        else:
            stream_input = None
    while True:
        _stream(
            graph, stream_input, config, RunContext.of(settings), on_node, on_trace, on_experiment
        )
        waiting = waiting_gate(run_id, graph.get_state(config))
        chosen = on_gate(waiting) if waiting is not None and on_gate else None
        if chosen is None:
            return summary()
        stream_input = Command(resume=_checked_answer(waiting, chosen))


def waiting_gate(run_id: str, snapshot: Any) -> PendingGate | None:
    """The gate a run's state snapshot waits at, or None."""
    values = [i.value for task in snapshot.tasks for i in (task.interrupts or ())]
    return pending_gate(run_id, values)


def pending_gate_of(settings: Settings, run_id: str | None = None) -> PendingGate | None:
    """The gate ``run_id`` (default: the workspace's last run) waits at, read from its
    checkpoint without building the sandbox or taking the lock (a read-only look).

    Raises:
        RunError: the workspace has no runs.
    """
    runs = _known_runs(settings)
    if not runs:
        raise RunError(f"no runs in {settings.workspace}; start one with `agentx run`")
    run_id = run_id or runs[-1]
    stored = load_run_settings(settings.workspace, run_id) or {}
    kind = stored.get("checkpointer")
    if kind in ("sqlite", "postgres") and kind != settings.checkpointer:  # kept elsewhere
        how = f"AGENTX_CHECKPOINTER={kind}" + (
            " and AGENTX_POSTGRES__DSN" if kind == "postgres" else ""
        )
        raise RunError(
            f"{run_id} is checkpointed in {kind}, not {settings.checkpointer}: set {how}"
        )
    try:
        with checkpointer_session(settings, read_only=True) as checkpointer:
            if checkpointer is None:
                return None
            saved = checkpointer.get_tuple(
                {"configurable": {"thread_id": run_id, "checkpoint_ns": ""}}
            )
    except CheckpointerError as error:
        raise RunError(str(error)) from None
    if saved is None:
        return None
    values = [
        getattr(item, "value", item)
        for _task, channel, value in saved.pending_writes or []
        if channel == INTERRUPT
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return pending_gate(run_id, values)


def _checked_answer(waiting: PendingGate, answer: Any) -> dict[str, Any]:
    """``answer`` as the gate's ``HumanResponse``, refused in one line if not understood
    (before the graph resumes, so nothing changes)."""
    try:
        parsed = parse_answer(GATES[waiting.gate], answer)
    except GateAnswerError as error:
        raise RunError(str(error)) from None
    return parsed.model_dump(exclude_none=True)


def _stream(
    graph: Any,
    stream_input: Any,
    config: dict[str, Any],
    context: RunContext,
    on_node: Callable[[str, int], None] | None,
    on_trace: Callable[[TraceEvent], None] | None,
    on_experiment: Callable[[ExperimentRecord], None] | None,
) -> None:
    modes = ["tasks", "updates", "custom"]
    for _namespace, mode, part in graph.stream(
        stream_input, config, stream_mode=modes, subgraphs=True, context=context
    ):
        if mode == "tasks":
            started = _started_node(part)
            if started and on_node:
                on_node(*started)
            continue
        if mode == "custom":  # the trace log's live copy (agentx.graph.tracelog)
            if on_trace and isinstance(part, dict):
                for event in part.get(TRACE_STREAM_KEY, []) or []:
                    on_trace(event)
            continue
        if _namespace:  # a subgraph's own updates: the run records experiments at its top
            continue
        for _node, change in part.items():
            if not isinstance(change, dict):
                continue
            for record in change.get("experiments", []) or []:
                if on_experiment:
                    on_experiment(record)
