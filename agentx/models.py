"""Domain models the agents exchange.

Agents never import each other; they hand these records along the graph. All are
pydantic models so they serialise into checkpoints, the LangServe API and the JSON
summary unchanged.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


def stable_id(*parts: Any, length: int = 12) -> str:
    """A short deterministic id from ``parts``: the same inputs give the same id.

    Idempotent writes (memory upserts, resumed runs) depend on ids that do not change
    between a run and its replay.
    """
    raw = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:length]


class Maturity(StrEnum):
    """How ready an idea is to ship as an experiment."""

    READY = "ready"
    PROBE_FIRST = "probe-first"
    MOONSHOT = "moonshot"


class Goal(BaseModel):
    """A normalised optimisation goal."""

    text: str
    objective: str = Field(description="Primary (north-star) metric.")
    direction: Literal["increase", "decrease"] = "increase"
    scope: list[str] = Field(default_factory=list, description="Allowed levers; empty = all.")
    forbidden: list[str] = Field(default_factory=list, description="Levers or paths not to touch.")
    guardrails: list[str] = Field(default_factory=list)
    requested_outputs: list[str] = Field(default_factory=list)
    open_questions: list[str] = Field(default_factory=list)


class Evidence(BaseModel):
    """One piece of evidence a proposal cites."""

    source: Literal["memory", "system", "data", "research"]
    ref: str = Field(description="Card id, file path, statistic name or technique id.")
    summary: str


class Proposal(BaseModel):
    """A ranked, executable experiment proposal."""

    id: str
    technique: str = Field(description="Technique id in the research catalog.")
    lever: str
    params: dict[str, Any] = Field(default_factory=dict)
    hypothesis: str
    target_metric: str
    expected_direction: Literal["increase", "decrease"] = "increase"
    expected_size: float = Field(0.0, description="Expected relative effect, e.g. 0.02 = +2%.")
    implementation_location: list[str] = Field(default_factory=list)
    required_signals: list[str] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)
    guardrails: list[str] = Field(default_factory=list)
    validation_plan: str = ""
    evidence: list[Evidence] = Field(default_factory=list)
    maturity: Maturity = Maturity.READY
    score: float = 0.0
    score_breakdown: dict[str, float] = Field(default_factory=dict)
    retune: bool = Field(
        False,
        description="Sets the parameters of a technique already merged into the baseline: the "
        "outcome is one value against another, not the technique's effect.",
    )
    admitted: bool = False
    admission_notes: list[str] = Field(default_factory=list)


class Edit(BaseModel):
    """A strict search/replace edit of one file; ``search`` must occur exactly once.

    ``regex=True`` treats ``search`` as a multiline regular expression (used by
    parameter recipes that must apply whatever the current value is).
    """

    path: str
    search: str
    replace: str
    regex: bool = False


class Patch(BaseModel):
    """A code change made in an isolated worktree."""

    proposal_id: str
    attempt: int = 1
    branch: str
    worktree: str
    edits: list[Edit] = Field(default_factory=list)
    diff: str = ""
    files_touched: list[str] = Field(default_factory=list)
    lines_changed: int = 0


class CheckResult(BaseModel):
    """One verification dimension's result."""

    dimension: str
    passed: bool
    severity: Literal["severe", "moderate", "minor"] = "severe"
    detail: str = ""
    transient: bool = Field(False, description="A retry may pass (timeouts, crashes).")
    data: dict[str, Any] = Field(default_factory=dict)


class FailureKind(StrEnum):
    """Whether a failure is worth retrying unchanged."""

    DETERMINISTIC = "deterministic"
    TRANSIENT = "transient"


class RootCause(StrEnum):
    """Why an experiment did not ship (or, for a verification, why it failed)."""

    NO_SIGNIFICANCE = "no_significance"
    NEGATIVE_EFFECT = "negative_effect"
    GUARDRAIL_HARM = "guardrail_harm"
    TRAFFIC_MISMATCH = "traffic_mismatch"
    IMPLEMENTATION_DEFECT = "implementation_defect"
    CONTEXT_MISMATCH = "context_mismatch"
    CRASHED_ARM = "crashed_arm"
    LAUNCH_REFUSED = "launch_refused"  # a reviewer stopped it past the canary: no evidence
    METRIC_REGRESSION = "metric_regression"  # the offline check measured a quality drop
    LATENCY_OVER_BUDGET = "latency_over_budget"  # measured slower than the target's budget
    INFRASTRUCTURE = "infrastructure"  # the model server, sandbox or target failed, not the idea
    CUMULATIVE_GUARDRAIL_HARM = "cumulative_guardrail_harm"  # fine alone, harmful with the keeps


class Lesson(StrEnum):
    """What an outcome teaches the loop, and so what the loop does with it.

    Why typed: the Brainstorm Agent, the memory and the router each act on this, and a
    misread outcome either poisons memory (an outage stored as a bad idea) or repeats a
    known mistake (a value that regressed tried again at a stronger setting).
    """

    MEASURED = "measured"  # an A/B readout: the effect is evidence for or against the idea
    CHANGE_WRONG = "change_wrong"  # the technique at this value harms: step the value back
    CODE_WRONG = "code_wrong"  # the implementation is broken: another implementation may work
    INFRASTRUCTURE = "infrastructure"  # nobody's fault: no card, no avoid entry, retry later
    NOTHING = "nothing"  # a human decision or a broken readout: no evidence either way


_LESSONS: dict[RootCause, Lesson] = {
    RootCause.NO_SIGNIFICANCE: Lesson.MEASURED,
    RootCause.NEGATIVE_EFFECT: Lesson.MEASURED,
    RootCause.GUARDRAIL_HARM: Lesson.CHANGE_WRONG,
    RootCause.CUMULATIVE_GUARDRAIL_HARM: Lesson.CHANGE_WRONG,
    RootCause.METRIC_REGRESSION: Lesson.CHANGE_WRONG,
    RootCause.LATENCY_OVER_BUDGET: Lesson.CHANGE_WRONG,
    RootCause.IMPLEMENTATION_DEFECT: Lesson.CODE_WRONG,
    RootCause.CONTEXT_MISMATCH: Lesson.CODE_WRONG,
    RootCause.TRAFFIC_MISMATCH: Lesson.NOTHING,
    RootCause.CRASHED_ARM: Lesson.CODE_WRONG,  # a treatment that will not start is suspect
    RootCause.INFRASTRUCTURE: Lesson.INFRASTRUCTURE,
    RootCause.LAUNCH_REFUSED: Lesson.NOTHING,
}


def lesson_of(cause: RootCause | str | None) -> Lesson:
    """What an outcome with ``cause`` teaches (None: a kept change, measured)."""
    if cause is None:
        return Lesson.MEASURED
    try:
        return _LESSONS[RootCause(cause)]
    except ValueError:
        return Lesson.NOTHING  # a cause this version does not know teaches nothing false


class Verification(BaseModel):
    """All verification dimensions of one attempt, and their weighted score.

    ``root_cause`` is the human-readable line; ``cause`` is the typed class the loop acts on
    (what the failure teaches: see :class:`RootCause` and :func:`lesson_of`).
    """

    passed: bool
    checks: list[CheckResult] = Field(default_factory=list)
    q_code: float = Field(0.0, ge=0.0, le=1.0)
    failure_kind: FailureKind | None = None
    root_cause: str | None = None
    cause: RootCause | None = Field(None, description="Typed failure class; None when passed.")

    def failed_checks(self) -> list[CheckResult]:
        """The dimensions that did not pass."""
        return [check for check in self.checks if not check.passed]


class MetricEffect(BaseModel):
    """Estimated effect of treatment on one metric."""

    metric: str
    control_mean: float
    treatment_mean: float
    absolute: float
    relative: float
    ci_low: float = Field(description="Lower bound of the relative effect interval.")
    ci_high: float
    p_value: float
    method: str
    n_control: int
    n_treatment: int
    variance_reduction: float = 0.0


class Acceptance(StrEnum):
    """Who accepted a moderate guardrail breach, so it no longer counts as breached."""

    REVIEW = "review"  # a human reviewer approved it
    EXCHANGE = "exchange"  # the exchange score traded it for a larger gain


class ZeroBaseline(StrEnum):
    """A lower-is-better count that is zero in control (no errors at all)."""

    ROSE = "rose"  # the treatment has some: any significant rise is harm
    FLAT = "flat"  # zero in both arms: nothing to harm


class GuardrailResult(BaseModel):
    """Whether a guardrail held at a stage.

    ``detail`` is for people; the loop reads the typed fields (``breached``, ``measured``,
    ``zero_baseline``, ``accepted``).
    """

    metric: str
    tier: Literal["severe", "moderate", "observe"]
    relative: float
    ci_low: float
    ci_high: float
    breached: bool
    detail: str = ""
    measured: bool = Field(True, description="False: the metric could not be estimated.")
    zero_baseline: ZeroBaseline | None = None
    accepted: Acceptance | None = Field(None, description="Set when a breach was accepted.")


class StageResult(BaseModel):
    """What happened at one rollout stage."""

    stage: str
    treatment_share: float
    days: int
    srm_p_value: float
    srm_ok: bool
    effects: list[MetricEffect] = Field(default_factory=list)
    guardrails: list[GuardrailResult] = Field(default_factory=list)
    decision: Literal["continue", "halt", "stop_early", "complete"] = "continue"
    reason: str = ""
    halt_cause: RootCause | None = Field(
        None, description="Why a halted stage halted (typed; ``reason`` is the readable form)."
    )
    review_pending: list[str] = Field(
        default_factory=list, description="Moderate breaches waiting for a human decision."
    )
    notes: list[str] = Field(
        default_factory=list, description="The parts of ``reason`` besides a pending review."
    )


class TrafficSlot(BaseModel):
    """The user buckets one experiment of a wave owns (a traffic layer: every experiment of
    the wave hashes users with the same salt and owns its own bucket range, so concurrent
    experiments never share a user; each has its own control inside its range)."""

    salt: str = Field(description="The layer's hash salt, shared by the wave's experiments.")
    offset: int = Field(ge=0, description="First bucket of the range.")
    width: int = Field(ge=2, description="Buckets in the range (control and treatment).")
    n_buckets: int = Field(1000, ge=2, description="Buckets of the whole layer.")

    @property
    def share(self) -> float:
        """Fraction of all users the range holds."""
        return self.width / self.n_buckets

    def arm_buckets(self, share: float) -> int:
        """Buckets per arm of a stage with ``share`` of all users in each arm: as many as it
        would have alone when they fit in half the range, else half the range. A canary's
        few users fit in any slice; only stages larger than the slice give up users."""
        return max(1, min(round(share * self.n_buckets), self.width // 2))

    def kept(self, share: float) -> float:
        """Fraction of the users a stage with ``share`` would have alone that it has here."""
        return self.arm_buckets(share) / max(1, round(share * self.n_buckets))


class Rollout(BaseModel):
    """A staged rollout and where it stopped."""

    experiment_id: str
    stages: list[StageResult] = Field(default_factory=list)
    halted_at: str | None = None
    halt_reason: str | None = None
    rolled_back: bool = False

    @property
    def last_stage(self) -> str | None:
        """Name of the furthest stage reached."""
        return self.stages[-1].stage if self.stages else None


class Decision(StrEnum):
    """Verdict of an experiment."""

    KEEP = "KEEP"
    EXTEND = "EXTEND"
    DISCARD = "DISCARD"


class Verdict(BaseModel):
    """The Evaluation Agent's decision with its evidence."""

    experiment_id: str
    decision: Decision
    north_star: MetricEffect | None = None
    guardrails: list[GuardrailResult] = Field(default_factory=list)
    root_cause: RootCause | None = None
    caveats: list[str] = Field(default_factory=list)
    true_effects: dict[str, float] = Field(
        default_factory=dict, description="Ground-truth relative effects, when the target knows."
    )
    cumulative: list[GuardrailResult] = Field(
        default_factory=list,
        description="Every guardrail of the treatment (all changes kept so far plus this one) "
        "against the origin baseline; checked for a KEEP before it is merged.",
    )
    origin: str | None = Field(None, description="Commit of the origin baseline checked against.")


class KnowledgeCard(BaseModel):
    """One experiment outcome as retrievable knowledge."""

    id: str
    kind: Literal["playbook", "counterexample"]
    title: str
    text: str
    technique: str
    lever: str
    params: dict[str, Any] = Field(default_factory=dict)
    objective: str
    world: str
    segment: str = "all"
    decision: str
    effect: float = Field(0.0, description="Measured relative effect on the objective.")
    root_cause: str | None = None
    stage: str | None = None
    run_id: str = ""
    workspace_id: str = Field("", description="The workspace that wrote it (run ids repeat).")
    retune: bool = Field(
        False, description="A retune of merged code: one value against another (see Proposal)."
    )

    def metadata(self) -> dict[str, str | int | float | bool]:
        """Flat metadata for a vector store (scalars only)."""
        return {
            "kind": self.kind,
            "technique": self.technique,
            "lever": self.lever,
            "params": json.dumps(self.params, sort_keys=True),
            "objective": self.objective,
            "world": self.world,
            "segment": self.segment,
            "decision": self.decision,
            "effect": float(self.effect),
            "root_cause": self.root_cause or "",
            "stage": self.stage or "",
            "run_id": self.run_id,
            "workspace_id": self.workspace_id,
            "retune": self.retune,
            "title": self.title,
        }


class ExperimentStatus(StrEnum):
    """Where an experiment ended."""

    KEPT = "kept"
    EXTENDED = "extended"
    DISCARDED = "discarded"
    VETOED = "vetoed"
    ABANDONED = "abandoned"
    DEFERRED = "deferred"  # the infrastructure failed: retried later, not counted in the budget
    STALE = "stale"  # won against a baseline another KEEP changed meanwhile: re-tested, not shipped


class ExperimentRecord(BaseModel):
    """The full ledger entry of one experiment."""

    id: str
    iteration: int
    proposal: Proposal
    patch: Patch | None = None
    verifications: list[Verification] = Field(default_factory=list)
    rollout: Rollout | None = None
    verdict: Verdict | None = None
    status: ExperimentStatus
    card_id: str | None = None
    root_cause: str | None = None
    cause: RootCause | None = Field(None, description="Typed root cause (None when kept).")
    follow_up_of: str | None = Field(
        None, description="The EXTEND experiment this one re-runs with more traffic or time."
    )
    retest_of: str | None = Field(
        None,
        description="The KEEP this one re-tests on a baseline another KEEP changed meanwhile.",
    )
    traffic: TrafficSlot | None = Field(
        None, description="Its slice of the traffic when it ran beside others (None: all)."
    )
    arms: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="The launched control and treatment arm handles (as the target returned "
        "them), so harness evolution can replay the rollout's traffic.",
    )


class TraceEvent(BaseModel):
    """One step of the trajectory, for progress display, SGPO and reports."""

    node: str
    experiment_id: str | None = None
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
