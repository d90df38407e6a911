"""Run the loop end to end with a checkpointer, resumably, with progress callbacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from agentx.graph.builder import build_graph
from agentx.graph.checkpoint import open_checkpointer, serializer
from agentx.graph.resources import Resources, build_resources, isolation_policy
from agentx.models import ExperimentRecord, TraceEvent
from agentx.settings import Settings
from agentx.summary import RunSummary, summarise_run
from agentx.tracking.langsmith import run_config
from agentx.workspace import isolation


class RunError(RuntimeError):
    """A run cannot start or resume; the message says what to do."""


def _runs_file(settings: Settings) -> Path:
    return Path(settings.workspace) / "runs.json"


def _known_runs(settings: Settings) -> list[str]:
    path = _runs_file(settings)
    return json.loads(path.read_text()) if path.exists() else []


def new_run_id(settings: Settings) -> str:
    """Runs in a workspace are numbered: run-1, run-2, ..."""
    return f"run-{len(_known_runs(settings)) + 1}"


def register_run(settings: Settings, run_id: str) -> None:
    """Add ``run_id`` to the workspace's ``runs.json`` (what status and report list).

    Raises:
        RunError: the id is already taken (its checkpoints would mix with the new run's).
    """
    runs = _known_runs(settings)
    if run_id in runs:
        raise RunError(f"run id {run_id!r} already exists in {settings.workspace}")
    path = _runs_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([*runs, run_id]))
    tmp.replace(path)


def run_loop(
    settings: Settings,
    *,
    resume: bool = False,
    on_trace: Callable[[TraceEvent], None] | None = None,
    on_experiment: Callable[[ExperimentRecord], None] | None = None,
    resources: Resources | None = None,
) -> RunSummary:
    """Run (or resume) the loop and return its summary.

    With ``resume`` the last run of the workspace continues from its last checkpoint;
    experiments and cards already recorded are neither lost nor repeated.
    """
    isolation.configure(isolation_policy(settings))
    isolation.require()  # refuse in one line before anything runs, not mid-experiment
    runs = _known_runs(settings)
    if resume:
        if not runs:
            raise RunError(f"no run to resume in {settings.workspace}; start one without --resume")
        run_id = runs[-1]
    else:
        run_id = new_run_id(settings)
        register_run(settings, run_id)
    checkpointer = open_checkpointer(settings) or InMemorySaver(serde=serializer())
    resources = resources or build_resources(settings)
    graph = build_graph(settings, checkpointer=checkpointer, resources=resources)
    config = run_config(settings, run_id, resources.world_name)  # LangSmith name, tags, metadata
    if resume and checkpointer is not None:
        snapshot = graph.get_state(config)
        if not snapshot.next:
            values = snapshot.values
            return summarise_run(values, resources.world_name, settings.seed, settings.north_star)
        stream_input: Any = None
    else:
        stream_input = {"goal_text": settings.goal, "iterations": settings.iterations}
    for update in graph.stream(stream_input, config, stream_mode="updates"):
        for _node, change in update.items():
            if not isinstance(change, dict):
                continue
            for event in change.get("trace", []) or []:
                if on_trace:
                    on_trace(event)
            for record in change.get("experiments", []) or []:
                if on_experiment:
                    on_experiment(record)
    snapshot = graph.get_state(config)
    summary = summarise_run(
        snapshot.values, resources.world_name, settings.seed, settings.north_star
    )
    if settings.tracking.mlflow_uri:  # opt-in: the run and each experiment as MLflow runs
        from agentx.tracking.mlflow_log import publish_snapshot

        publish_snapshot(settings, run_id, snapshot, summary)
    return summary
