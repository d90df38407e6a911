"""What the report shows of each experiment, read defensively from stored records.

Records reach the report two ways: as :class:`~agentx.models.ExperimentRecord` models from
a run's checkpoint, and as JSON from ``harness/trajectories/*.json`` (every run of the
workspace, for the history view and the export). Both are turned into plain dicts and read
with ``.get`` and defaults, so a record written before a field existed, or by a newer
AgentX that added one, still renders: a missing value shows as a dash, never as an error.

Intervals are shown at the level their decision used (:mod:`agentx.report.levels`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentx.agents.evaluation.exchange import TRADED
from agentx.agents.evaluation.review import APPROVED
from agentx.models import ExperimentRecord
from agentx.report.levels import DecisionLevels, fmt_p, level_text, rescale

EXCHANGE_METRIC = "exchange"

# Colours of decisions (not of signs): a +0.9 % with an interval across zero is not a win.
DECISION_COLORS = {
    "KEEP": "#2e7d32",
    "EXTEND": "#f9a825",
    "DISCARD": "#757575",
    "VETO": "#c62828",
    "REFUSED": "#5c6bc0",
    "ABANDONED": "#8e24aa",
}
DECISION_MEANING = {
    "KEEP": "shipped: the baseline moves",
    "EXTEND": "inconclusive: more traffic could decide",
    "DISCARD": "not shipped: no evidence of a gain",
    "VETO": "halted by a guardrail and rolled back",
    "REFUSED": "a reviewer refused the launch past the canary (no evidence either way)",
    "ABANDONED": "never launched: verification failed",
}


def _dict(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


class EvidenceView(BaseModel):
    """One piece of evidence the proposal cited."""

    source: str
    ref: str
    summary: str


class CheckView(BaseModel):
    """One verification dimension of one attempt."""

    dimension: str
    passed: bool
    severity: str = ""
    detail: str = ""


class AttemptView(BaseModel):
    """One verification attempt (a repair makes another)."""

    number: int
    passed: bool
    q_code: float | None = None
    root_cause: str = ""
    checks: list[CheckView] = Field(default_factory=list)


class MetricView(BaseModel):
    """One metric's effect at one stage, with its interval at the decision's level."""

    metric: str
    role: str = Field(description="north star, guardrail (tier), secondary or exchange.")
    relative: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    level: float = Field(0.05, description="Alpha of the shown interval.")
    p_value: float | None = None
    significant: bool = False
    n_control: int | None = None
    n_treatment: int | None = None
    method: str = ""
    status: str = Field("", description="Guardrails: held, breached or accepted.")
    true_effect: float | None = None

    @property
    def level_label(self) -> str:
        """The interval's confidence level, e.g. ``96%``."""
        return level_text(self.level)


class StageView(BaseModel):
    """One rollout stage with its sample sizes and SRM check."""

    stage: str
    treatment_share: float | None = None
    days: int | None = None
    n_control: int | None = None
    n_treatment: int | None = None
    srm_p_value: float | None = None
    srm_ok: bool | None = None
    decision: str = ""
    reason: str = ""
    north_star: MetricView | None = None
    metrics: list[MetricView] = Field(default_factory=list)
    breached: list[str] = Field(default_factory=list)


class DiffLine(BaseModel):
    """A line of the unified diff and how to show it."""

    kind: Literal["add", "del", "hunk", "file", "ctx"]
    text: str


class ExperimentView(BaseModel):
    """Everything the report shows of one experiment."""

    id: str
    run_id: str = ""
    number: int
    technique: str
    lever: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    hypothesis: str = ""
    expected_size: float | None = None
    maturity: str = ""
    score: float | None = None
    evidence: list[EvidenceView] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)
    admission_notes: list[str] = Field(default_factory=list)
    files_touched: list[str] = Field(default_factory=list)
    lines_changed: int | None = None
    diff: list[DiffLine] = Field(default_factory=list)
    attempts: list[AttemptView] = Field(default_factory=list)
    stages: list[StageView] = Field(default_factory=list)
    halted_at: str | None = None
    rolled_back: bool = False
    decision: str = Field(description="KEEP, EXTEND, DISCARD, VETO, REFUSED or ABANDONED.")
    status: str = ""
    root_cause: str = ""
    caveats: list[str] = Field(default_factory=list)
    metrics: list[MetricView] = Field(default_factory=list, description="At the last stage.")
    north_star: MetricView | None = None
    true_effects: dict[str, float] = Field(default_factory=dict)
    true_north_star: float | None = None
    levels: DecisionLevels = Field(default_factory=DecisionLevels)

    @property
    def color(self) -> str:
        """The decision's colour."""
        return DECISION_COLORS.get(self.decision, "#455a64")

    @property
    def meaning(self) -> str:
        """What the decision means, in words."""
        return DECISION_MEANING.get(self.decision, "")

    @property
    def reason(self) -> str:
        """Why the verdict is what it is, in one line."""
        if self.decision == "KEEP":
            north = self.north_star
            if north is not None and north.p_value is not None:
                return (
                    f"significant gain: p={fmt_p(north.p_value)} < "
                    f"{self.levels.north_star:g}, no unresolved guardrail breach"
                )
            return "significant gain, no unresolved guardrail breach"
        cause = self.root_cause.replace("_", " ")
        if self.decision == "VETO" and self.halted_at:
            return f"{cause} at {self.halted_at}" if cause else f"halted at {self.halted_at}"
        return cause or "–"


def decision_of(record: Mapping[str, Any]) -> str:
    """The decision a record shows, keyed on its recorded status and root cause.

    Not on ``rollout.halted_at``: a reviewer's refusal and an SRM failure halt a rollout
    too, and neither is a guardrail veto.
    """
    status = _text(record.get("status")).lower()
    cause = _text(record.get("root_cause")) or _text(_dict(record.get("verdict")).get("root_cause"))
    if cause.startswith("launch_refused"):
        return "REFUSED"
    by_status = {
        "kept": "KEEP",
        "extended": "EXTEND",
        "discarded": "DISCARD",
        "vetoed": "VETO",
        "abandoned": "ABANDONED",
    }
    if status in by_status:
        return by_status[status]
    verdict = _dict(record.get("verdict"))
    return _text(verdict.get("decision")) or "ABANDONED"


def _levels_for(verdict: Mapping[str, Any], base: DecisionLevels) -> DecisionLevels:
    """The levels of this verdict: typed fields when a newer record carries them."""
    update: dict[str, float] = {}
    for field, keys in (
        ("north_star", ("final_alpha", "north_star_alpha")),
        ("guardrail", ("guardrail_alpha",)),
    ):
        for key in keys:
            value = _float(verdict.get(key))
            if value is not None and 0 < value < 1:
                update[field] = value
                break
    return base.model_copy(update=update) if update else base


def _role(metric: str, north_star: str, guardrails: Mapping[str, str]) -> str:
    if metric == north_star:
        return "north star"
    if metric == EXCHANGE_METRIC:
        return "exchange"
    if metric in guardrails:
        return f"guardrail ({guardrails[metric]})"
    return "secondary"


def _metric_views(
    stage: Mapping[str, Any],
    north_star: str,
    levels: DecisionLevels,
    truth: Mapping[str, float],
) -> list[MetricView]:
    guards = {
        _text(g.get("metric")): _dict(g)
        for g in map(_dict, _list(stage.get("guardrails")))
        if g.get("metric")
    }
    tiers = {name: _text(g.get("tier")) or "severe" for name, g in guards.items()}
    views: list[MetricView] = []
    seen: set[str] = set()
    for effect in map(_dict, _list(stage.get("effects"))):
        metric = _text(effect.get("metric"))
        if not metric:
            continue
        seen.add(metric)
        role = _role(metric, north_star, tiers)
        alpha = (
            levels.north_star
            if role == "north star"
            else levels.guardrail
            if role.startswith("guardrail")
            else levels.secondary
        )
        relative = _float(effect.get("relative"))
        low, high = _float(effect.get("ci_low")), _float(effect.get("ci_high"))
        if relative is not None and low is not None and high is not None:
            low, high = rescale(relative, low, high, levels.recorded, alpha)
        p = _float(effect.get("p_value"))
        views.append(
            MetricView(
                metric=metric,
                role=role,
                relative=relative,
                ci_low=low,
                ci_high=high,
                level=alpha,
                p_value=p,
                significant=p is not None and p < alpha,
                n_control=_int(effect.get("n_control")),
                n_treatment=_int(effect.get("n_treatment")),
                method=_text(effect.get("method")),
                status=_guard_status(guards.get(metric)),
                true_effect=_float(truth.get(metric)),
            )
        )
    for metric, guard in guards.items():  # a guardrail with no estimate (not measurable)
        if metric not in seen:
            views.append(
                MetricView(
                    metric=metric,
                    role=_role(metric, north_star, tiers),
                    level=levels.guardrail,
                    status=_guard_status(guard),
                    method=_text(guard.get("detail")),
                    true_effect=_float(truth.get(metric)),
                )
            )
    order = {"north star": 0, "exchange": 2, "secondary": 3}
    views.sort(key=lambda v: (order.get(v.role, 1), v.metric))
    return views


def _guard_status(guard: Mapping[str, Any] | None) -> str:
    if not guard:
        return ""
    if not guard.get("breached"):
        return "observed" if guard.get("tier") == "observe" else "held"
    for key in ("accepted", "approved", "traded"):  # typed fields of newer records
        if guard.get(key) is True:
            return "accepted"
    detail = _text(guard.get("detail"))
    if APPROVED in detail or TRADED in detail:  # the markers older records carry
        return "accepted"
    return "breached"


def _stage_view(
    stage: Mapping[str, Any], north_star: str, levels: DecisionLevels, truth: Mapping[str, float]
) -> StageView:
    metrics = _metric_views(stage, north_star, levels, truth)
    north = next((m for m in metrics if m.role == "north star"), None)
    sized = [m for m in metrics if m.n_control is not None]
    sample = north if north is not None and north.n_control is not None else None
    if sample is None and sized:
        sample = max(sized, key=lambda m: (m.n_control or 0) + (m.n_treatment or 0))
    return StageView(
        stage=_text(stage.get("stage")) or "?",
        treatment_share=_float(stage.get("treatment_share")),
        days=_int(stage.get("days")),
        n_control=sample.n_control if sample else None,
        n_treatment=sample.n_treatment if sample else None,
        srm_p_value=_float(stage.get("srm_p_value")),
        srm_ok=stage.get("srm_ok") if isinstance(stage.get("srm_ok"), bool) else None,
        decision=_text(stage.get("decision")),
        reason=_text(stage.get("reason")),
        north_star=north,
        metrics=metrics,
        breached=[m.metric for m in metrics if m.status == "breached"],
    )


def diff_lines(diff: str, limit: int = 4000) -> list[DiffLine]:
    """The unified diff as classified lines (at most ``limit``; the stored diff is capped)."""
    lines: list[DiffLine] = []
    for text in diff.splitlines()[:limit]:
        if text.startswith(("diff --git", "index ", "+++ ", "--- ")):
            kind: Literal["add", "del", "hunk", "file", "ctx"] = "file"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append(DiffLine(kind=kind, text=text))
    return lines


def experiment_view(
    record: ExperimentRecord | Mapping[str, Any],
    north_star: str,
    levels: DecisionLevels | None = None,
    run_id: str = "",
) -> ExperimentView:
    """The report's view of one stored record (a model or its JSON, old or new)."""
    data = _dict(record)
    proposal = _dict(data.get("proposal"))
    patch = _dict(data.get("patch"))
    rollout = _dict(data.get("rollout"))
    verdict = _dict(data.get("verdict"))
    levels = _levels_for(verdict, levels or DecisionLevels())
    truth = {
        str(k): v for k, v in _dict(verdict.get("true_effects")).items() if _float(v) is not None
    }
    stages = [
        _stage_view(_dict(s), north_star, levels, truth) for s in _list(rollout.get("stages"))
    ]
    metrics = stages[-1].metrics if stages else []
    north = next((m for m in metrics if m.role == "north star"), None)
    if north is None and verdict.get("north_star"):  # a verdict with no stage list
        north = _metric_views({"effects": [verdict["north_star"]]}, north_star, levels, truth)[0]
    attempts = []
    for number, attempt in enumerate(map(_dict, _list(data.get("verifications"))), start=1):
        checks = [
            CheckView(
                dimension=_text(c.get("dimension")) or "?",
                passed=bool(c.get("passed")),
                severity=_text(c.get("severity")),
                detail=_text(c.get("detail")),
            )
            for c in map(_dict, _list(attempt.get("checks")))
        ]
        attempts.append(
            AttemptView(
                number=number,
                passed=bool(attempt.get("passed")),
                q_code=_float(attempt.get("q_code")),
                root_cause=_text(attempt.get("root_cause")),
                checks=checks,
            )
        )
    params = _dict(proposal.get("params"))
    return ExperimentView(
        id=_text(data.get("id")) or "?",
        run_id=run_id,
        number=(_int(data.get("iteration")) or 0) + 1,
        technique=_text(proposal.get("technique")) or "?",
        lever=_text(proposal.get("lever")),
        params=params,
        hypothesis=_text(proposal.get("hypothesis")),
        expected_size=_float(proposal.get("expected_size")),
        maturity=_text(proposal.get("maturity")),
        score=_float(proposal.get("score")),
        evidence=[
            EvidenceView(
                source=_text(e.get("source")),
                ref=_text(e.get("ref")),
                summary=_text(e.get("summary")),
            )
            for e in map(_dict, _list(proposal.get("evidence")))
        ],
        risks=[_text(r) for r in _list(proposal.get("risks"))],
        admission_notes=[_text(n) for n in _list(proposal.get("admission_notes"))],
        files_touched=[_text(f) for f in _list(patch.get("files_touched"))],
        lines_changed=_int(patch.get("lines_changed")),
        diff=diff_lines(_text(patch.get("diff"))),
        attempts=attempts,
        stages=stages,
        halted_at=_text(rollout.get("halted_at")) or None,
        rolled_back=bool(rollout.get("rolled_back")),
        decision=decision_of(data),
        status=_text(data.get("status")),
        root_cause=_text(data.get("root_cause")) or _text(verdict.get("root_cause")),
        caveats=[_text(c) for c in _list(verdict.get("caveats"))],
        metrics=metrics,
        north_star=north,
        true_effects={k: float(v) for k, v in truth.items()},
        true_north_star=_float(truth.get(north_star)),
        levels=levels,
    )


class CumulativePoint(BaseModel):
    """The baseline after an experiment, against the run's original baseline."""

    number: int
    technique: str
    decision: str
    measured: float = Field(description="Compounded measured change of kept experiments.")
    true: float | None = Field(None, description="Compounded true change; None when unknown.")


def cumulative(experiments: list[ExperimentView]) -> list[CumulativePoint]:
    """The baseline's change after each experiment: only KEEP moves it."""
    measured, true = 1.0, 1.0
    known = True
    points = []
    for view in experiments:
        if view.decision == "KEEP":
            effect = view.north_star.relative if view.north_star else None
            measured *= 1 + (effect or 0.0)
            if view.true_north_star is None:
                known = False
            else:
                true *= 1 + view.true_north_star
        points.append(
            CumulativePoint(
                number=view.number,
                technique=view.technique,
                decision=view.decision,
                measured=measured - 1,
                true=true - 1 if known else None,
            )
        )
    return points
