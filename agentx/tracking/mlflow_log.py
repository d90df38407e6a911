"""Runs and experiments into MLflow, the tracker many teams already read.

Each AgentX run becomes an MLflow run, each experiment a nested run under it:

- params: technique, lever and the proposal's parameter values (``param.<name>``);
- metrics: the measured north-star effect with its interval at the decision's level and
  p-value, the true effects where the target knows them, sample sizes and Q_code;
- tags: verdict, root cause, status, stage reached, AgentX run and experiment ids;
- artifacts: the code diff and the record as JSON per experiment, the HTML report and the
  run summary on the parent run.

Publishing is idempotent: runs are found again by their ``agentx.*`` tags, so a resumed or
re-published run updates its MLflow runs instead of adding copies. ``mlflow`` is imported
only here, when a tracking URI is set (it is an optional extra).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentx.report.history import decision_levels
from agentx.report.view import ExperimentView, cumulative, experiment_view
from agentx.settings import Settings
from agentx.summary import RunSummary
from agentx.tracking import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

RUN_TAG = "agentx.run_id"
WORKSPACE_TAG = "agentx.workspace"
EXPERIMENT_TAG = "agentx.experiment_id"
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests runs by
QUIET_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def _client(uri: str) -> MlflowClient:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise TrackingError(
            "tracking.mlflow_uri is set but MLflow is not installed: "
            "pip install 'agentx[mlflow]' (or unset AGENTX_TRACKING__MLFLOW_URI)"
        ) from None
    if uri.startswith(("http://", "https://")):
        _check_reachable(uri)
    return MlflowClient(tracking_uri=uri)


def _check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail in one line at once, instead of after the MLflow client's long retry loop."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
            reply.read()
    except (urllib.error.URLError, OSError) as error:
        raise TrackingError(f"cannot reach the MLflow server at {uri}: {error}") from None


def _experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _find(client: MlflowClient, experiment: str, tags: dict[str, str]) -> str | None:
    clauses = " and ".join(f"tags.`{k}` = '{v.replace(chr(39), '')}'" for k, v in tags.items())
    runs = client.search_runs([experiment], filter_string=clauses, max_results=1)
    return runs[0].info.run_id if runs else None


def _log(
    client: MlflowClient,
    run_id: str,
    params: dict[str, Any],
    metrics: dict[str, float | None],
    tags: dict[str, str],
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    metric_list = [
        Metric(key, float(value), now, 0)
        for key, value in metrics.items()
        if value is not None and math.isfinite(float(value))
    ]
    existing = client.get_run(run_id).data.params
    param_list = [
        Param(key, str(value)[:6000])
        for key, value in params.items()
        if key not in existing  # MLflow params are write-once; a re-publish keeps the first
    ]
    tag_list = [RunTag(key, str(value)[:8000]) for key, value in tags.items()]
    for start in range(0, max(len(param_list), len(tag_list), 1), 100):
        client.log_batch(
            run_id,
            metrics=metric_list if start == 0 else [],
            params=param_list[start : start + 100],
            tags=tag_list[start : start + 100],
        )


def _experiment_payload(view: ExperimentView, north_star: str) -> tuple[dict, dict, dict]:
    north = view.north_star
    last = view.attempts[-1] if view.attempts else None
    params: dict[str, Any] = {"technique": view.technique, "lever": view.lever}
    params.update({f"param.{k}": json.dumps(v, default=str) for k, v in view.params.items()})
    metrics: dict[str, float | None] = {
        "measured_effect": north.relative if north else None,
        "ci_low": north.ci_low if north else None,
        "ci_high": north.ci_high if north else None,
        "confidence": 1 - north.level if north else None,
        "p_value": north.p_value if north else None,
        "n_control": north.n_control if north else None,
        "n_treatment": north.n_treatment if north else None,
        "true_effect": view.true_north_star,
        "q_code": last.q_code if last else None,
    }
    metrics.update({f"true.{k}": v for k, v in view.true_effects.items()})
    for m in view.metrics:
        if m.metric != north_star:
            metrics[f"effect.{m.metric}"] = m.relative
            metrics[f"p.{m.metric}"] = m.p_value
    tags = {
        EXPERIMENT_TAG: view.id,
        "verdict": view.decision,
        "root_cause": view.root_cause or "none",
        "status": view.status,
        "stage_reached": view.stages[-1].stage if view.stages else "none",
        "reason": view.reason,
    }
    return params, metrics, tags


def publish_run(
    settings: Settings,
    run_id: str,
    values: dict[str, Any],
    report_html: str | None = None,
    summary_json: str | None = None,
) -> str:
    """Log one AgentX run (its state ``values``) to MLflow; returns the MLflow run id.

    Raises:
        TrackingError: MLflow is missing, unreachable or refused a write.
    """
    uri = settings.tracking.mlflow_uri
    if not uri:
        raise TrackingError("no MLflow tracking URI: set tracking.mlflow_uri")
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    quiet = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "true"  # MLflow prints run URLs on stdout: `run --json` owns it
    try:
        return _publish(client, settings, run_id, values, report_html, summary_json)
    except MlflowException as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrackingError(f"MLflow at {uri} refused the run: {message}") from None
    finally:
        if quiet is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = quiet


def _publish(
    client: MlflowClient,
    settings: Settings,
    run_id: str,
    values: dict[str, Any],
    report_html: str | None,
    summary_json: str | None,
) -> str:
    north_star = settings.north_star
    levels = decision_levels(settings)
    views = [experiment_view(r, north_star, levels, run_id) for r in values.get("experiments", [])]
    experiment = _experiment_id(client, settings.tracking.mlflow_experiment)
    workspace = str(settings.workspace)
    keys = {RUN_TAG: run_id, WORKSPACE_TAG: workspace}
    parent = _find(client, experiment, keys)
    if parent is None:
        parent = client.create_run(experiment, tags=keys, run_name=f"agentx {run_id}").info.run_id
    points = cumulative(views)
    funnel = {f"funnel.{k}": float(v) for k, v in (values.get("funnel") or {}).items()}
    decisions: dict[str, float] = {}
    for view in views:
        decisions[f"decisions.{view.decision}"] = decisions.get(f"decisions.{view.decision}", 0) + 1
    goal = values.get("goal")
    _log(
        client,
        parent,
        params={
            "world": settings.world,
            "seed": settings.seed,
            "iterations": settings.iterations,
            "north_star": north_star,
            "alpha": settings.alpha,
            "goal": goal.text if goal is not None else settings.goal,
            "llm": settings.llm.model or "offline policy",
        },
        metrics={
            "experiments": float(len(views)),
            "baseline_change_measured": points[-1].measured if points else 0.0,
            "baseline_change_true": points[-1].true if points else None,
            **funnel,
            **decisions,
        },
        tags={**keys, "world": settings.world, "seed": str(settings.seed),
              **{f"tag.{t}": "true" for t in settings.tracking.tags}},
    )  # fmt: skip
    for view in views:
        child_keys = {**keys, EXPERIMENT_TAG: view.id}
        child = _find(client, experiment, child_keys)
        if child is None:
            child = client.create_run(
                experiment,
                tags={**child_keys, PARENT_TAG: parent},
                run_name=f"#{view.number} {view.technique}",
            ).info.run_id
        params, metrics, tags = _experiment_payload(view, north_star)
        _log(client, child, params, metrics, {**tags, PARENT_TAG: parent})
        record = next(r for r in values["experiments"] if _record_id(r) == view.id)
        diff = _record_diff(record)
        if diff:
            client.log_text(child, diff, "diff.patch")
        client.log_text(child, _record_json(record), "experiment.json")
        client.set_terminated(child, "FINISHED")
    with tempfile.TemporaryDirectory() as folder:
        if report_html is not None:
            path = Path(folder) / f"report-{run_id}.html"
            path.write_text(report_html, encoding="utf-8")
            client.log_artifact(parent, str(path))
        if summary_json is not None:
            client.log_text(parent, summary_json, "summary.json")
    client.set_terminated(parent, "FINISHED")
    return parent


def publish_snapshot(settings: Settings, run_id: str, snapshot: Any, summary: RunSummary) -> str:
    """Publish a run from its last checkpoint snapshot, with its HTML report and summary.

    Raises:
        TrackingError: MLflow is missing or unreachable (the run itself is saved already).
    """
    from agentx.report import RunState, render_report

    state = RunState(
        run_id=run_id,
        values=dict(snapshot.values),
        next_nodes=tuple(snapshot.next),
        interrupted=any(task.interrupts for task in snapshot.tasks),
    )
    return publish_run(
        settings,
        run_id,
        state.values,
        report_html=render_report(state, settings),
        summary_json=summary.model_dump_json(indent=2),
    )


def _record_id(record: Any) -> str:
    return str(record.get("id") if isinstance(record, dict) else getattr(record, "id", ""))


def _record_diff(record: Any) -> str:
    patch = record.get("patch") if isinstance(record, dict) else getattr(record, "patch", None)
    if patch is None:
        return ""
    diff = patch.get("diff") if isinstance(patch, dict) else getattr(patch, "diff", "")
    return str(diff or "")


def _record_json(record: Any) -> str:
    if isinstance(record, dict):
        return json.dumps(record, indent=2, default=str)
    return record.model_dump_json(indent=2)
