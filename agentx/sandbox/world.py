"""World parameters of the user simulator, loaded from JSON or YAML files.

A world decides what matters to its users (taste concentration, freshness, diversity,
position bias, fatigue, latency sensitivity). Shipping several worlds that disagree
lets the project test whether AgentX's memory and priors transfer or mislead.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class WorldError(ValueError):
    """A world file is missing or invalid; the message names the bad field."""


class WorldParams(BaseModel):
    """Everything that defines a simulated world. Field descriptions double as docs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(7, ge=0, description="Seed of the population (users and items).")
    # sizes
    n_users: int = Field(8000, ge=50, le=1_000_000)
    n_items: int = Field(1500, ge=50, le=200_000)
    n_categories: int = Field(12, ge=2, le=200)
    n_creators: int = Field(150, ge=2)
    latent_dim: int = Field(8, ge=1, le=64)
    slate_size: int = Field(10, ge=1, le=50)
    # time
    log_days: int = Field(10, ge=2, le=60, description="Days of logged interactions.")
    pre_days: int = Field(5, ge=1, le=30, description="Pre-period before an experiment.")
    horizon_days: int = Field(14, ge=1, le=60, description="Longest experiment window.")
    items_per_day: int = Field(25, ge=0, description="New items released each day.")
    # tastes and items
    taste_concentration: float = Field(
        0.5, gt=0, description="Dirichlet alpha of category preferences; lower is more focused."
    )
    taste_weight: float = Field(1.0, ge=0, description="Weight of latent taste match.")
    category_weight: float = Field(0.6, ge=0, description="Weight of category preference.")
    appeal_sd: float = Field(0.6, ge=0, description="Spread of items' base appeal (popularity).")
    clickbait_sd: float = Field(0.4, ge=0, description="Attraction that does not become watch.")
    quality_sd: float = Field(0.6, ge=0, description="Spread of quality, which drives watch time.")
    freshness_weight: float = Field(0.3, ge=0, description="Extra appeal of a brand-new item.")
    freshness_halflife_days: float = Field(3.0, gt=0)
    base_attraction: float = Field(-1.2, description="Logit intercept of attraction.")
    user_activity_sd: float = Field(
        1.0, ge=0, description="Spread of users' visit propensity (heavy vs light users)."
    )
    user_engagement_sd: float = Field(
        0.7, ge=0, description="Spread of users' click propensity (engaged vs casual users)."
    )
    # behaviour
    position_bias_eta: float = Field(0.8, ge=0, description="Examination = (1+rank)^-eta.")
    fatigue_rate: float = Field(0.12, ge=0, description="Logit cost per recent same-category view.")
    fatigue_decay: float = Field(0.5, ge=0, le=1, description="Daily retention of fatigue.")
    repeat_penalty: float = Field(0.8, ge=0, description="Logit cost of an item seen recently.")
    watched_penalty: float = Field(2.5, ge=0, description="Logit cost of an item already watched.")
    diversity_appetite: float = Field(0.5, ge=0, description="Satisfaction from varied slates.")
    watch_mean_s: float = Field(30.0, gt=0)
    watch_noise_sd: float = Field(0.35, ge=0)
    return_base: float = Field(0.2, description="Logit of returning at neutral satisfaction.")
    return_weight: float = Field(2.0, ge=0, description="How much satisfaction drives returns.")
    satisfaction_memory: float = Field(0.6, ge=0, lt=1)
    satisfaction_ref: float = Field(0.8, description="Satisfaction of a neutral session.")
    # serving
    latency_base_ms: float = Field(15.0, ge=0)
    latency_per_candidate_ms: float = Field(0.3, ge=0)
    latency_budget_ms: float = Field(60.0, gt=0)
    latency_abandon_per_ms: float = Field(0.01, ge=0, description="Abandon prob per ms over.")
    # logging policy
    logging_epsilon: float = Field(0.3, ge=0, le=1, description="Share of uniform slots.")
    logging_temperature: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> WorldParams:
        if self.n_items < self.slate_size * 4:
            raise ValueError("n_items must be at least 4 x slate_size")
        if self.n_creators > self.n_items:
            raise ValueError("n_creators must not exceed n_items")
        return self


_WORLDS_PACKAGE = "agentx.sandbox"


def shipped_worlds() -> dict[str, Path]:
    """Names and files of the worlds that ship with AgentX."""
    folder = resources.files(_WORLDS_PACKAGE).joinpath("worlds")
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith((".json", ".yaml", ".yml"))
    }


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise WorldError(f"cannot read world file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise WorldError(f"world file {path} is not valid {path.suffix[1:]}: {error}") from None
    if not isinstance(data, dict):
        raise WorldError(f"world file {path} must hold a mapping of parameters")
    return data


def load_world(name_or_path: str | Path) -> WorldParams:
    """Load a shipped world by name, or any JSON/YAML world file by path.

    Raises:
        WorldError: unknown name, unreadable file, or an invalid field (named).
    """
    worlds = shipped_worlds()
    candidate = Path(name_or_path)
    if str(name_or_path) in worlds:
        path = worlds[str(name_or_path)]
    elif candidate.suffix in {".json", ".yaml", ".yml"} or candidate.exists():
        path = candidate
    else:
        known = ", ".join(sorted(worlds))
        raise WorldError(f"unknown world {name_or_path!r}; shipped worlds: {known}")
    data = _read(path)
    data.setdefault("name", path.stem)
    try:
        return WorldParams(**data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(world)'}: {item['msg']}"
            for item in error.errors()
        )
        raise WorldError(f"invalid world file {path}: {problems}") from None
