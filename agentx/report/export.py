"""Experiments, stages and metrics of a workspace's runs as flat tables (CSV or JSON).

The rows come from the same views the HTML report shows (read from the trajectory
archive, so older records export too), with intervals at the level each decision used
and that level in its own column: a spreadsheet reader sees what the verdict saw.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentx.report.history import StoredRun, run_views
from agentx.report.levels import DecisionLevels
from agentx.report.view import ExperimentView, MetricView


class ExperimentRow(BaseModel):
    """One experiment."""

    run_id: str
    experiment_id: str
    number: int
    technique: str
    params: str = Field(description="The proposal's parameters as JSON.")
    decision: str
    status: str
    root_cause: str
    reason: str
    stage_reached: str
    verified: bool
    q_code: float | None
    files_touched: int
    lines_changed: int | None
    north_star: str
    measured_effect: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float | None = Field(description="Level of the interval, e.g. 0.96.")
    p_value: float | None
    true_effect: float | None


class StageRow(BaseModel):
    """One rollout stage of one experiment."""

    run_id: str
    experiment_id: str
    stage: str
    treatment_share: float | None
    days: int | None
    n_control: int | None
    n_treatment: int | None
    srm_p_value: float | None
    srm_ok: bool | None
    decision: str
    breached: str = Field(description="Breached guardrails, comma-separated.")
    reason: str


class MetricRow(BaseModel):
    """One metric's effect at one stage of one experiment."""

    run_id: str
    experiment_id: str
    stage: str
    metric: str
    role: str
    relative: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    p_value: float | None
    significant: bool
    n_control: int | None
    n_treatment: int | None
    method: str
    guardrail: str
    true_effect: float | None


class ExportTables(BaseModel):
    """The three tables."""

    experiments: list[ExperimentRow] = Field(default_factory=list)
    stages: list[StageRow] = Field(default_factory=list)
    metrics: list[MetricRow] = Field(default_factory=list)


def _metric_row(view: ExperimentView, stage: str, m: MetricView) -> MetricRow:
    return MetricRow(
        run_id=view.run_id,
        experiment_id=view.id,
        stage=stage,
        metric=m.metric,
        role=m.role,
        relative=m.relative,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        confidence=round(1 - m.level, 6),
        p_value=m.p_value,
        significant=m.significant,
        n_control=m.n_control,
        n_treatment=m.n_treatment,
        method=m.method,
        guardrail=m.status,
        true_effect=m.true_effect,
    )


def tables(views: list[ExperimentView], north_star: str) -> ExportTables:
    """Flatten experiment views into the three tables."""
    out = ExportTables()
    for view in views:
        north = view.north_star
        last = view.attempts[-1] if view.attempts else None
        out.experiments.append(
            ExperimentRow(
                run_id=view.run_id,
                experiment_id=view.id,
                number=view.number,
                technique=view.technique,
                params=json.dumps(view.params, sort_keys=True, default=str),
                decision=view.decision,
                status=view.status,
                root_cause=view.root_cause,
                reason=view.reason,
                stage_reached=view.stages[-1].stage if view.stages else "",
                verified=bool(last and last.passed),
                q_code=last.q_code if last else None,
                files_touched=len(view.files_touched),
                lines_changed=view.lines_changed,
                north_star=north_star,
                measured_effect=north.relative if north else None,
                ci_low=north.ci_low if north else None,
                ci_high=north.ci_high if north else None,
                confidence=round(1 - north.level, 6) if north else None,
                p_value=north.p_value if north else None,
                true_effect=view.true_north_star,
            )
        )
        for stage in view.stages:
            out.stages.append(
                StageRow(
                    run_id=view.run_id,
                    experiment_id=view.id,
                    stage=stage.stage,
                    treatment_share=stage.treatment_share,
                    days=stage.days,
                    n_control=stage.n_control,
                    n_treatment=stage.n_treatment,
                    srm_p_value=stage.srm_p_value,
                    srm_ok=stage.srm_ok,
                    decision=stage.decision,
                    breached=", ".join(stage.breached),
                    reason=stage.reason,
                )
            )
            out.metrics.extend(_metric_row(view, stage.stage, m) for m in stage.metrics)
    return out


def workspace_tables(
    runs: list[StoredRun], levels: DecisionLevels, run_id: str | None = None
) -> ExportTables:
    """The tables of every archived run (or of ``run_id`` only)."""
    merged = ExportTables()
    for run in runs:
        if run.problem or (run_id is not None and run.run_id != run_id):
            continue
        part = tables(run_views(run, levels), run.north_star)
        merged.experiments += part.experiments
        merged.stages += part.stages
        merged.metrics += part.metrics
    return merged


def write_csv(data: ExportTables, folder: Path) -> list[Path]:
    """``experiments.csv``, ``stages.csv`` and ``metrics.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in (
        ("experiments", ExperimentRow),
        ("stages", StageRow),
        ("metrics", MetricRow),
    ):
        path = folder / f"{name}.csv"
        rows: list[BaseModel] = getattr(data, name)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(model.model_fields))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(v) for k, v in row.model_dump().items()})
        written.append(path)
    return written


def _cell(value: Any) -> Any:
    return "" if value is None else value
