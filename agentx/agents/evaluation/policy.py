"""The Evaluation Agent's numeric policy, read from ``prompts/evaluation/harness.yaml``.

Why a validated model: the harness is an editable artefact (people and harness evolution
change it), so a typo must stop the run with the field named instead of silently turning a
threshold into a string or a missing key into a crash halfway through a rollout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentx.harness import (
    HarnessError,
    default_prompts_dir,
    describe_validation,
    load_harness,
    load_prompt,
)

EXCHANGE_METRIC = "exchange"


class ExchangeSpec(BaseModel):
    """Composite exchange score: weights are exchange rates in units of the north-star."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    weights: dict[str, float] = Field(
        default_factory=lambda: {"watch_time": 1.0, "active_days": 2.0},
        description="Metric -> exchange rate (>= 0); direction comes from the target's spec.",
    )
    max_trade_loss: float = Field(
        0.2, ge=0.0, description="Largest relative loss on a moderate guardrail it may trade."
    )

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        """Negative weights would flip a metric's direction silently; refuse them."""
        bad = {name: w for name, w in weights.items() if not w >= 0.0}
        if bad:
            raise ValueError(f"exchange weights must be >= 0, got {bad}")
        return weights

    @property
    def active(self) -> bool:
        """Enabled and with at least one non-zero weight."""
        return self.enabled and any(w > 0 for w in self.weights.values())


class EvaluationPolicy(BaseModel):
    """Thresholds of the verdict and the rollout's early-stopping budget."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    min_interesting_effect: float = Field(0.005, ge=0.0, lt=1.0)
    early_stop_alpha_share: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of alpha spent on early stops (0 = never stop)."
    )
    secondary_correction: Literal["holm", "fdr_bh"] = "holm"
    guardrail_alpha: float | None = Field(
        None, gt=0.0, lt=0.5, description="Significance level of breaches; None = settings.alpha."
    )
    exchange: ExchangeSpec = Field(default_factory=ExchangeSpec)

    def early_alpha(self, alpha: float, n_stages: int) -> float:
        """Alpha of one early-stop look: the early budget split over the non-final stages."""
        looks = max(n_stages - 1, 0)
        return alpha * self.early_stop_alpha_share / looks if looks else 0.0

    def final_alpha(self, alpha: float, n_stages: int) -> float:
        """Alpha left for the final fixed-horizon test once early looks took their share."""
        return alpha * (1.0 - self.early_stop_alpha_share) if n_stages > 1 else alpha

    @classmethod
    def from_harness(cls, harness: dict[str, Any]) -> EvaluationPolicy:
        """Validate a parsed harness mapping; raises HarnessError naming the bad field."""
        try:
            return cls.model_validate(harness)
        except ValidationError as error:
            raise HarnessError(
                f"invalid evaluation harness: {describe_validation(error)}"
            ) from None


def load_policy(prompts_dir: Path | None = None) -> EvaluationPolicy:
    """The policy of ``prompts/evaluation/harness.yaml`` (read on each call: it may evolve)."""
    return EvaluationPolicy.from_harness(load_harness("evaluation", prompts_dir))


def load_card_templates(prompts_dir: Path | None = None) -> dict[str, Any]:
    """Wording of knowledge cards (``prompts/evaluation/cards.yaml``)."""
    text = _prompt_file("cards.yaml", prompts_dir)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise HarnessError(f"prompts/evaluation/cards.yaml is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise HarnessError("prompts/evaluation/cards.yaml must be a mapping")
    return data


def load_review_template(prompts_dir: Path | None = None) -> str:
    """The question shown to a human reviewer of a moderate guardrail breach."""
    return load_prompt("evaluation", "review", prompts_dir)


def _prompt_file(name: str, prompts_dir: Path | None) -> str:
    path = (prompts_dir or default_prompts_dir()) / "evaluation" / name
    try:
        return path.read_text()
    except OSError as error:
        raise HarnessError(f"prompt missing: {path} ({error.strerror})") from None
