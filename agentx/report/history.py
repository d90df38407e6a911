"""Every run of a workspace, read from ``harness/trajectories/*.json`` as plain JSON.

The trajectory archive is what harness evolution replays; it holds each run's full
experiment records. It is read here as JSON, not through the pydantic models, so a file
written by an older or newer AgentX still shows up in the history and the export; a file
that is not JSON at all is listed with the reason instead of stopping the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.harness import HarnessError
from agentx.report.levels import DecisionLevels
from agentx.report.view import ExperimentView, cumulative, experiment_view
from agentx.report.workspace import harness_store
from agentx.settings import Settings


class StoredRun(BaseModel):
    """One run's archived trajectory (records kept as JSON)."""

    run_id: str
    world: str = "?"
    seed: int | None = None
    north_star: str = "watch_time"
    saved_at: float | None = None
    records: list[dict[str, Any]] = Field(default_factory=list)
    problem: str = Field("", description="Why the file could not be read, if it could not.")


class HistoryRow(BaseModel):
    """One run in the history view."""

    run_id: str
    world: str
    seed: int | None = None
    saved_at: float | None = None
    experiments: int = 0
    decisions: dict[str, int] = Field(default_factory=dict)
    measured: float | None = Field(None, description="Baseline change, measured (kept only).")
    true: float | None = Field(None, description="Baseline change, true (kept only).")
    problem: str = ""


def read_trajectories(workspace: Path) -> list[StoredRun]:
    """Every archived run of ``workspace``, oldest first; unreadable files carry a problem."""
    folder = Path(workspace) / "harness" / "trajectories"
    runs: list[StoredRun] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            records = [r for r in data.get("records") or [] if isinstance(r, dict)]
            seed = data.get("seed")
            runs.append(
                StoredRun(
                    run_id=str(data.get("run_id") or path.stem),
                    world=str(data.get("world") or "?"),
                    seed=seed if isinstance(seed, int) else None,
                    north_star=str(data.get("north_star") or data.get("objective") or "watch_time"),
                    saved_at=data.get("saved_at") if isinstance(data.get("saved_at"), float | int)
                    else None,
                    records=records,
                )
            )  # fmt: skip
        except (OSError, ValueError) as error:
            runs.append(StoredRun(run_id=path.stem, problem=f"{path.name}: {error}"))
    return sorted(runs, key=lambda r: (bool(r.problem), r.saved_at or 0.0, r.run_id))


def decision_levels(settings: Settings) -> DecisionLevels:
    """The levels decisions use with the workspace's active evaluation harness.

    The north star is tested against the alpha left after the early-stop looks; guardrails
    at the harness's ``guardrail_alpha`` (or the run's alpha); secondary metrics at the run's
    alpha (Holm-adjusted p-values decide, the interval shown is unadjusted).
    """
    try:
        harness = harness_store(settings.workspace).harness("evaluation")
        policy = EvaluationPolicy.from_harness(harness)
    except HarnessError:
        policy = EvaluationPolicy()
    alpha = settings.alpha
    return DecisionLevels(
        recorded=alpha,
        north_star=policy.final_alpha(alpha, len(settings.stages)),
        guardrail=policy.guardrail_alpha or alpha,
        secondary=alpha,
    )


def run_views(run: StoredRun, levels: DecisionLevels) -> list[ExperimentView]:
    """The experiments of one archived run."""
    return [experiment_view(r, run.north_star, levels, run.run_id) for r in run.records]


def history_rows(runs: list[StoredRun], levels: DecisionLevels) -> list[HistoryRow]:
    """One row per archived run: decisions and the baseline's change over the run."""
    rows = []
    for run in runs:
        views = run_views(run, levels)
        decisions: dict[str, int] = {}
        for view in views:
            decisions[view.decision] = decisions.get(view.decision, 0) + 1
        points = cumulative(views)
        rows.append(
            HistoryRow(
                run_id=run.run_id,
                world=run.world,
                seed=run.seed,
                saved_at=run.saved_at,
                experiments=len(views),
                decisions=decisions,
                measured=points[-1].measured if points else None,
                true=points[-1].true if points else None,
                problem=run.problem,
            )
        )
    return rows
