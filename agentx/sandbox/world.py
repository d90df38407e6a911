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


class TasteCluster(BaseModel):
    """A group of users who value different things: the same change can help one and hurt
    another, so a population-level effect hides segment effects (heterogeneity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    share: float = Field(gt=0, le=1, description="Share of users in this cluster.")
    taste_concentration: float = Field(
        0.5, gt=0, description="Dirichlet alpha of category interests; lower is more focused."
    )
    diversity_appetite: float = Field(
        0.3, ge=0, description="Session satisfaction from a slate spanning many categories."
    )
    freshness_weight: float = Field(0.3, ge=0, description="Extra appeal of a brand-new item.")
    position_bias_eta: float = Field(0.8, ge=0, description="Utility cost eta*log(1+rank).")


def _default_clusters() -> list[TasteCluster]:
    return [
        TasteCluster(
            name="explorers",
            share=0.45,
            taste_concentration=0.8,
            diversity_appetite=0.5,
            freshness_weight=0.5,
            position_bias_eta=0.6,
        ),
        TasteCluster(
            name="loyalists",
            share=0.55,
            taste_concentration=0.25,
            diversity_appetite=0.1,
            freshness_weight=0.1,
            position_bias_eta=1.0,
        ),
    ]


class WorldParams(BaseModel):
    """Everything that defines a simulated world. Field descriptions double as docs.

    The behaviour model (see docs/sandbox.md): each visit shows one slate; the user picks
    items in a multinomial-logit order with a no-click option, watches each until patience
    or the session's time budget runs out; long-term satisfaction, accumulated over weeks,
    moves the daily return probability a little; interests drift toward what is watched,
    a changed experience gets a novelty lift that fades as habits adapt; users arrive and
    churn; weekday seasonality and day-level shocks move everyone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(7, ge=0, description="Seed of the population (users and items).")
    # sizes
    n_users: int = Field(200_000, ge=50, le=2_000_000)
    n_items: int = Field(5000, ge=50, le=200_000)
    n_categories: int = Field(16, ge=2, le=200)
    n_creators: int = Field(400, ge=2)
    latent_dim: int = Field(8, ge=1, le=64)
    slate_size: int = Field(10, ge=1, le=50)
    # time
    log_days: int = Field(10, ge=2, le=60, description="Days of logged interactions.")
    pre_days: int = Field(5, ge=1, le=30, description="Pre-period before an experiment.")
    horizon_days: int = Field(
        28, ge=1, le=90, description="Ground-truth horizon; also the longest experiment."
    )
    items_per_day: int = Field(60, ge=0, description="New items released each day.")
    # users
    clusters: list[TasteCluster] = Field(default_factory=_default_clusters, min_length=1)
    new_user_share: float = Field(
        0.1, ge=0, lt=1, description="Share of users who arrive after logging starts."
    )
    new_user_activity: float = Field(
        -0.8, description="Return-logit offset of a new user, fading over their first weeks."
    )
    user_activity_sd: float = Field(
        1.2, ge=0, description="Spread of visit propensity (heavy vs light users)."
    )
    user_engagement_sd: float = Field(
        0.6, ge=0, description="Spread of click propensity (engaged vs casual users)."
    )
    # items
    taste_weight: float = Field(1.0, ge=0, description="Weight of latent taste match.")
    category_weight: float = Field(0.6, ge=0, description="Weight of category interest.")
    appeal_sd: float = Field(0.5, ge=0, description="Spread of items' base appeal.")
    clickbait_sd: float = Field(0.4, ge=0, description="Attraction that does not become watch.")
    quality_sd: float = Field(0.6, ge=0, description="Spread of quality, which drives watch.")
    freshness_halflife_days: float = Field(3.0, gt=0)
    # choice and session
    base_attraction: float = Field(
        -2.2, description="Utility of an average item relative to not clicking (logit)."
    )
    fatigue_rate: float = Field(
        0.1, ge=0, description="Utility cost per recent same-category view."
    )
    fatigue_decay: float = Field(0.5, ge=0, le=1, description="Daily retention of fatigue.")
    repeat_penalty: float = Field(0.6, ge=0, description="Utility cost of an item shown lately.")
    watched_penalty: float = Field(2.5, ge=0, description="Utility cost of an item watched.")
    watch_mean_s: float = Field(30.0, gt=0)
    watch_noise_sd: float = Field(0.5, ge=0, description="Log-normal noise of watch seconds.")
    session_budget_s: float = Field(
        60.0, gt=0, description="Median attention budget of a session (seconds of watching)."
    )
    session_budget_sd: float = Field(0.8, ge=0, description="Log-normal spread of the budget.")
    continue_base: float = Field(1.2, description="Logit of watching on after an item.")
    continue_quality: float = Field(
        1.5, ge=0, description="How much a satisfying item raises the chance to go on."
    )
    # long-term satisfaction and retention
    satisfaction_memory: float = Field(
        0.93, ge=0, lt=1, description="Per-visit retention of long-term satisfaction (weeks)."
    )
    return_base: float = Field(0.0, description="Logit of visiting on an ordinary day.")
    return_elasticity: float = Field(
        0.6, ge=0, description="Return-logit change per unit of long-term satisfaction."
    )
    empty_session_value: float = Field(
        -0.3, description="Satisfaction of a visit with nothing watched."
    )
    churn_base: float = Field(0.001, ge=0, le=0.5, description="Daily churn of a neutral user.")
    churn_weight: float = Field(3.0, ge=0, description="How much dissatisfaction drives churn.")
    weekday_amplitude: float = Field(0.25, ge=0, description="Weekly swing of the return logit.")
    day_shock_sd: float = Field(0.1, ge=0, description="Day-level shock of the return logit.")
    # dynamics
    interest_drift: float = Field(
        0.03, ge=0, le=1, description="Daily pull of category interests toward what was watched."
    )
    novelty_weight: float = Field(
        2.5, ge=0, description="Utility lift from a slate unlike the user's habit."
    )
    habit_rate: float = Field(
        0.25, gt=0, le=1, description="Daily rate at which habits adapt to what is shown."
    )
    # serving
    latency_base_ms: float = Field(15.0, ge=0)
    latency_per_candidate_ms: float = Field(0.3, ge=0)
    latency_budget_ms: float = Field(60.0, gt=0)
    latency_abandon_per_ms: float = Field(0.01, ge=0, description="Abandon prob per ms over.")
    # logging policy
    logging_epsilon: float = Field(0.3, ge=0, le=1, description="Share of uniform slates.")
    logging_temperature: float = Field(1.0, gt=0)
    # experiments
    rollout_shares: tuple[float, float, float] | None = Field(
        None,
        description="Treatment share per arm of the default rollout's canary, ramp and full "
        "stage for this population (settings that set `stages` win). A larger population "
        "reaches the same power with a smaller full stage and leaves traffic for concurrent "
        "experiments; unset: the settings' defaults (5%, 20%, 50%).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> WorldParams:
        shares = self.rollout_shares
        if shares is not None and (list(shares) != sorted(shares) or not 0 < shares[0]):
            raise ValueError("rollout_shares must be positive and must not shrink")
        if shares is not None and shares[-1] > 0.5:
            raise ValueError("rollout_shares: a share per arm is at most 0.5")
        if self.n_items < self.slate_size * 4:
            raise ValueError("n_items must be at least 4 x slate_size")
        if self.n_creators > self.n_items:
            raise ValueError("n_creators must not exceed n_items")
        total = sum(cluster.share for cluster in self.clusters)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"clusters: shares must sum to 1, not {total:g}")
        return self

    def behaviour(self) -> dict:
        """The parameters that decide what the simulator does (the key of built worlds and
        cached results): everything but the experiment allocation, which only says how
        experiments split the users."""
        return self.model_dump(exclude={"rollout_shares"})

    @property
    def online_days(self) -> int:
        """Days after logging that the world simulates: the pre-period plus the horizon."""
        return self.pre_days + self.horizon_days


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


def declared_rollout_shares(name_or_path: str | Path) -> tuple[float, float, float] | None:
    """The world's own rollout shares, or None when it declares none or cannot be loaded
    (an unknown or invalid world is reported, in one line, where its sandbox is built)."""
    try:
        return load_world(name_or_path).rollout_shares
    except WorldError:
        return None
