"""Records a target hands to the agents: what it is, its data, its checks and readouts."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agentx.models import CheckResult


class MetricSpec(BaseModel):
    """An online metric the target reports per user (or per arm)."""

    name: str
    description: str
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    kind: Literal["per_user", "ratio", "arm_level"] = "per_user"
    numerator: str | None = Field(None, description="For ratio metrics: per-user numerator.")
    denominator: str | None = Field(None, description="For ratio metrics: per-user denominator.")


class SymbolInfo(BaseModel):
    """A top-level function or class of the target repository."""

    name: str
    kind: Literal["function", "class", "constant"]
    line: int
    doc: str = ""


class FileInfo(BaseModel):
    """One file of the repository map."""

    path: str
    symbols: list[SymbolInfo] = Field(default_factory=list)


class SystemDescription(BaseModel):
    """The system knowledge base: architecture, repository map, vocabulary."""

    name: str
    architecture: str = Field(description="The target's architecture document (markdown).")
    files: list[FileInfo] = Field(default_factory=list)
    config_keys: dict[str, Any] = Field(default_factory=dict)
    features: list[str] = Field(default_factory=list, description="Known ranking features.")
    data_fields: dict[str, list[str]] = Field(
        default_factory=dict, description="Logged data tables and their fields."
    )
    metrics: list[MetricSpec] = Field(default_factory=list)
    protected_paths: list[str] = Field(default_factory=list)
    latency_budget_ms: float | None = None


class MetricNoise(BaseModel):
    """How much a per-user metric varies between users over a window of the logs: what an
    experimentation platform knows before the first experiment, to size traffic with."""

    sd_relative: float = Field(gt=0.0, description="Per-user sd of the window's sum over its mean.")
    users: int = Field(gt=0, description="Users the sums cover (inactive ones count as 0).")
    days: int = Field(gt=0, description="Days of the window.")


class DataReport(BaseModel):
    """First-look statistics of the interaction logs."""

    n_users: int
    n_items: int
    n_impressions: int
    n_clicks: int
    ctr: float
    user_activity_gini: float
    item_popularity_gini: float
    tail_impression_share: float = Field(description="Impressions on the 80% least popular items.")
    cold_start_item_share: float = Field(description="Items with no logged impression.")
    category_mix: dict[str, float] = Field(default_factory=dict)
    position_ctr: list[float] = Field(default_factory=list)
    position_bias_eta: float = Field(description="Fitted exponent of CTR ~ (1+rank)^-eta.")
    segment_mix: dict[str, float] = Field(
        default_factory=dict,
        description="Share of logged users per observable segment (new, heavy, focused, broad).",
    )
    findings: list[str] = Field(default_factory=list, description="Plain-language signals.")
    metric_noise: dict[str, MetricNoise] = Field(
        default_factory=dict,
        description="Between-user noise of per-user metrics over the logged window, by metric "
        "(sizes concurrent experiments before the run has measured a final stage).",
    )


class OfflineMetrics(BaseModel):
    """Offline ranking quality of a repository state on held-out logs."""

    ndcg_at_k: float
    recall_at_k: float
    coverage: float
    k: int
    n_users: int
    train_seconds: float
    serve_ms_per_user: float
    latency_ms: float = Field(0.0, description="The target's per-request latency estimate.")


class WorkspaceCheck(BaseModel):
    """The target's own verification of a workspace (tests, dry run)."""

    checks: list[CheckResult] = Field(default_factory=list)


class ArmHandle(BaseModel):
    """A launched (trained, ready to serve) arm of an online experiment."""

    name: str
    workdir: str
    artefact: str = Field(description="Where the target keeps what the arm serves.")
    ok: bool = True
    error: str | None = None
    measured_serve_ms: float = 0.0


class OnlineReadout(BaseModel):
    """Per-user metric arrays of one experiment window, per arm.

    ``metrics[arm][name]`` is a float array over that arm's users; ``pre[arm][name]``
    holds the same users' pre-period values (covariates for CUPED). ``arm_level``
    holds metrics that only exist per arm (e.g. catalogue coverage).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    arms: list[str]
    users: dict[str, np.ndarray]
    metrics: dict[str, dict[str, np.ndarray]]
    pre: dict[str, dict[str, np.ndarray]]
    arm_level: dict[str, dict[str, float]] = Field(default_factory=dict)
    days: int
    errors: dict[str, str] = Field(default_factory=dict, description="Arms that crashed.")


class GroundTruth(BaseModel):
    """Noise-free expected metrics of a repository state, and versus the baseline."""

    metrics: dict[str, float]
    baseline: dict[str, float]
    relative: dict[str, float] = Field(
        description="Relative change versus the baseline; absolute change where the baseline is 0."
    )
