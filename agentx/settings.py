"""All of AgentX's configuration in one place.

Settings come, in increasing priority, from field defaults, an optional TOML settings
file, ``AGENTX_*`` environment variables (nested with ``__``, e.g.
``AGENTX_LLM__MODEL``), and explicit keyword overrides (the CLI's flags). An invalid
value fails at start with :class:`SettingsError`, whose message names the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agentx.settings_sources import Origins, unknown_env_variables

DEFAULT_GOAL = "Raise watch time per user without hurting return visits, latency or errors."


class SettingsError(ValueError):
    """Raised when configuration is invalid; the message names each bad field."""


class LLMSettings(BaseModel):
    """Which chat model the agents use; no model name means the offline policy."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Model name; unset runs the offline policy.")
    base_url: str | None = Field(None, description="Any OpenAI-compatible endpoint.")
    api_key: SecretStr | None = Field(None, description="API key for the endpoint.")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(2048, gt=0, description="Upper bound on each reply.")
    structured_method: Literal["json_schema", "function_calling", "json_mode"] = Field(
        "function_calling",
        description="How structured output is requested; function calling works on most servers.",
    )
    reasks: int = Field(
        2, ge=0, le=10, description="Re-asks after a malformed or unusable reply, per decision."
    )
    transport_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of a request that failed transiently (connection, timeout, "
        "429, 5xx), with exponential backoff.",
    )
    backoff_s: float = Field(
        1.0, ge=0.0, le=60.0, description="Delay before the first retry; doubles each retry."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per request (one HTTP call).")
    context_tokens: int = Field(
        16_384, ge=512, description="The model's context window, in tokens."
    )
    prompt_budget_tokens: int | None = Field(
        None,
        ge=256,
        description="Most tokens a prompt may take; unset: 95% of the context left after "
        "max_tokens.",
    )

    @property
    def enabled(self) -> bool:
        """True when a model is configured (LLM mode)."""
        return bool(self.model)


class EmbeddingSettings(BaseModel):
    """Which sentence embedding the memory uses."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["minilm", "openai"] = "minilm"
    model: str | None = Field(None, description="Embedding model for the openai provider.")
    base_url: str | None = None
    api_key: SecretStr | None = None


class MemorySettings(BaseModel):
    """Where experiment knowledge cards live."""

    model_config = ConfigDict(extra="forbid")

    chroma_url: str | None = Field(
        None, description="http://host:port of a Chroma server; unset uses the workspace store."
    )
    collection: str = Field("agentx_knowledge", min_length=3)


class PostgresSettings(BaseModel):
    """Where the ``postgres`` checkpointer keeps runs: one server shared by several workers.

    Each workspace writes to its own schema (``agentx_`` and the workspace id from
    ``workspace.json``), so workers whose runs are all called ``run-1`` never meet.
    """

    model_config = ConfigDict(extra="forbid")

    dsn: SecretStr | None = Field(
        None,
        description="libpq connection string or URL, e.g. postgresql://user:pw@host:5432/db "
        "(secret: it may hold a password; prefer AGENTX_POSTGRES__DSN).",
    )
    connect_timeout_s: int = Field(
        10, ge=1, le=600, description="How long to wait for the server before giving up."
    )

    @field_validator("dsn")
    @classmethod
    def _parsable(cls, dsn: SecretStr | None) -> SecretStr | None:
        """Refuse a malformed DSN at start (without echoing it: it may hold a password)."""
        if dsn is None:
            return None
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(dsn.get_secret_value())
        except Exception as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(f"not a libpq connection string or URL ({reason})") from None
        return dsn


class RolloutStage(BaseModel):
    """One stage of a staged rollout: the share of users in each arm and its length."""

    model_config = ConfigDict(extra="forbid")

    name: str
    treatment_share: float = Field(gt=0.0, le=0.5)
    days: int = Field(gt=0, le=60)


class GuardrailSpec(BaseModel):
    """A metric that must not get worse by more than ``max_relative_drop``.

    ``direction`` says which way is good: for latency and errors, lower is better.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str
    tier: Literal["severe", "moderate", "observe"] = "severe"
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    max_relative_harm: float = Field(0.01, ge=0.0, description="Tolerated harm, e.g. 0.01 = 1%.")


class EvolutionSettings(BaseModel):
    """Harness evolution (SGPO) inside the loop."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Evolve the agents' harnesses during runs.")
    every: int = Field(3, ge=1, le=1000, description="One SGPO step after every N experiments.")
    agents: list[Literal["brainstorm", "evaluation"]] = Field(
        default_factory=lambda: ["brainstorm", "evaluation"],
        min_length=1,
        description="Agents evolved in turn, one per step.",
    )
    epsilon: float = Field(
        0.001, ge=0.0, description="Least replay-score gain (relative effect) that keeps an edit."
    )
    min_tasks: int = Field(2, ge=1, description="Fewer replayable tasks than this: no step.")


class SandboxSettings(BaseModel):
    """How code under test is confined, and how much of its output reaches records and prompts."""

    model_config = ConfigDict(extra="forbid")

    allow_unconfined_trusted: bool = Field(
        False,
        description="Where bubblewrap cannot start, let an offline run (only AgentX's shipped "
        "recipes and template run) go on under the audit-hook guard alone. LLM runs are "
        "always refused without the OS sandbox.",
    )
    max_detail_chars: int = Field(
        4000,
        ge=200,
        le=100_000,
        description="Longest check detail kept in records and repair prompts (the tail).",
    )


class ExtendSettings(BaseModel):
    """Follow-ups of inconclusive (EXTEND) experiments: the same change, sized by power.

    Each follow-up is an experiment of the run (it counts in ``iterations``); at most
    ``max_follow_ups`` per run, one per idea.
    """

    enabled: bool = Field(True, description="Re-run EXTEND verdicts with more traffic or time.")
    max_follow_ups: int = Field(3, ge=0, le=100, description="Follow-ups per run (the budget).")
    power: float = Field(
        0.8, gt=0.0, lt=1.0, description="Power the follow-up's final stage is sized for."
    )
    max_days: int = Field(
        28, ge=1, le=365, description="Longest final stage (also capped by the world's horizon)."
    )
    min_gain: float = Field(
        1.25,
        ge=1.0,
        description="Least growth of the final stage's user-days that is worth a follow-up.",
    )
    min_power: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Least power the largest follow-up must reach for its target effect; "
        "below it the follow-up would spend an experiment on a likely inconclusive answer.",
    )


class CumulativeSettings(BaseModel):
    """The check of every KEEP against the original baseline (before any kept change)."""

    enabled: bool = Field(
        True, description="Check each KEEP with the changes already kept against the origin."
    )


class ConcurrencySettings(BaseModel):
    """Experiments in flight at once (issue 16): the production system this follows ran 8-12
    per worker, and traffic, not compute, is what concurrent experiments share.

    Experiments of one wave run side by side on disjoint slices of the user buckets (one
    traffic layer, each experiment with its own control) and are learned from in the order
    they were scheduled, so the same seed and ``max_in_flight`` give the same run.
    """

    max_in_flight: int = Field(
        4,
        ge=1,
        le=32,
        description="Most experiments in flight (K); 1 runs them one after another.",
    )
    power_kept: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of the detection (power weighted by effect size, for the effects "
        "this target's changes have: the run's measured ones, shrunk by their noise, and the "
        "proposals' expected ones) that each experiment of a wave must keep on its slice of "
        "the users; a wave that would keep less waits for a smaller one.",
    )
    max_retests: int = Field(
        1,
        ge=0,
        le=10,
        description="Re-tests of a KEEP whose evidence went stale because another KEEP shipped "
        "first; past it the change is recorded stale and not shipped.",
    )


class TrackingSettings(BaseModel):
    """Where runs are recorded beside the workspace: MLflow (opt-in) and LangSmith labels."""

    model_config = ConfigDict(extra="forbid")

    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI (http://127.0.0.1:5000, sqlite:///mlflow.db, a folder); "
        "unset logs nothing. Each run becomes an MLflow run, each experiment a nested run.",
    )
    mlflow_experiment: str = Field(
        "agentx", min_length=1, description="MLflow experiment the runs are logged under."
    )
    tags: list[str] = Field(
        default_factory=list, description="Extra tags for LangSmith traces and MLflow runs."
    )


def default_stages() -> list[RolloutStage]:
    """Canary and ramp are short guards; the full stage reads the effect over 14 days, the
    sandbox's truth horizon, so a novelty effect that fades within two weeks is measured as
    it will be lived (a 7-day full stage kept a change that was +2.5 % at 7 days and -2.1 %
    at 14, see docs/evaluation.md)."""
    return [
        RolloutStage(name="canary", treatment_share=0.05, days=3),
        RolloutStage(name="ramp", treatment_share=0.2, days=4),
        RolloutStage(name="full", treatment_share=0.5, days=14),
    ]


def _default_guardrails() -> list[GuardrailSpec]:
    return [
        GuardrailSpec(metric="active_days", tier="severe", max_relative_harm=0.01),
        GuardrailSpec(
            metric="latency_ms", tier="severe", direction="lower_is_better", max_relative_harm=0.25
        ),
        GuardrailSpec(
            metric="errors", tier="severe", direction="lower_is_better", max_relative_harm=0.0
        ),
        GuardrailSpec(metric="tail_share", tier="moderate", max_relative_harm=0.1),
        GuardrailSpec(metric="diversity", tier="observe", max_relative_harm=0.05),
    ]


class Settings(BaseSettings):
    """Every knob of a run. See the README for the file and environment forms."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTX_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    workspace: Path = Field(Path(".agentx"), description="Where runs, memory and worktrees live.")
    world: str = Field("default", description="A shipped world name or a path to a world file.")
    seed: int = Field(0, ge=0)
    goal: str = Field(DEFAULT_GOAL, min_length=5)
    iterations: int = Field(5, ge=1, le=1000, description="Experiments per run (the budget).")
    max_repair_attempts: int = Field(3, ge=0, le=10)
    max_infra_failures: int = Field(
        3,
        ge=1,
        le=100,
        description="Consecutive infrastructure failures (model or server outage, sandbox "
        "crash) after which the run stops instead of burning ideas.",
    )
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="Significance level of A/B tests.")
    ground_truth: bool = Field(
        True,
        description="Ask the target for each treatment's ground truth at its verdict (the "
        "sandbox's oracle: the true effects in summaries and cards, SGPO's regret, false "
        "keeps). A real target has none. Off, an experiment costs what it would cost there: "
        "on the sandbox's default world the truth is over half of an experiment's CPU.",
    )
    autonomous: bool = Field(True, description="Skip human gates (moderate breaches veto).")
    checkpointer: Literal["sqlite", "postgres", "memory", "none"] = Field(
        "sqlite",
        description="Where runs are checkpointed: the workspace's SQLite file, a Postgres "
        "server (postgres.dsn), memory (lost at exit) or none.",
    )
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    stages: list[RolloutStage] = Field(default_factory=default_stages, min_length=1)
    guardrails: list[GuardrailSpec] = Field(default_factory=_default_guardrails)
    north_star: str = Field("watch_time", description="The primary metric of the goal.")
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    extend: ExtendSettings = Field(default_factory=ExtendSettings)
    cumulative: CumulativeSettings = Field(default_factory=CumulativeSettings)
    concurrency: ConcurrencySettings = Field(default_factory=ConcurrencySettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)

    @field_validator("workspace")
    @classmethod
    def _absolute_workspace(cls, workspace: Path) -> Path:
        """Absolute, so worktrees and subprocesses find it whatever their working directory."""
        return workspace.expanduser().resolve()

    @field_validator("stages")
    @classmethod
    def _stages_grow(cls, stages: list[RolloutStage]) -> list[RolloutStage]:
        shares = [s.treatment_share for s in stages]
        if shares != sorted(shares):
            raise ValueError("rollout stages must not shrink treatment traffic")
        return stages

    @model_validator(mode="after")
    def _world_allocation(self) -> Settings:
        """Unless stages are set, a world that declares its rollout shares (a population
        sized for them) gets them, with the default stages' names and days. The field stays
        unset, so a run that picks another world gets that world's shares."""
        if "stages" in self.model_fields_set:
            return self
        from agentx.sandbox.world import declared_rollout_shares  # the world file, not a build

        shares = declared_rollout_shares(self.world)
        stages = default_stages()
        if shares is not None:
            stages = [
                stage.model_copy(update={"treatment_share": share})
                for stage, share in zip(stages, shares, strict=True)
            ]
        object.__setattr__(self, "stages", stages)  # not a user's choice: stays unset
        return self

    @field_validator("postgres")
    @classmethod
    def _postgres_needs_dsn(cls, postgres: PostgresSettings, info: ValidationInfo) -> Any:
        """The Postgres checkpointer without a server, or a server nothing uses, is a mistake
        worth one line at start (not a run that silently checkpoints somewhere else)."""
        checkpointer = info.data.get("checkpointer")
        if checkpointer == "postgres" and postgres.dsn is None:
            raise ValueError(
                'checkpointer "postgres" needs postgres.dsn (e.g. AGENTX_POSTGRES__DSN='
                "postgresql://user@host:5432/agentx)"
            )
        if checkpointer not in (None, "postgres") and postgres.dsn is not None:
            raise ValueError(
                f'postgres.dsn is set but checkpointer is "{checkpointer}": set '
                'checkpointer = "postgres" to use it, or drop the DSN'
            )
        return postgres

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit overrides beat the environment, which beats the settings file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get("AGENTX_SETTINGS_FILE")
        if settings_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(settings_file)))
        return tuple(sources)


def _describe_errors(error: ValidationError, origins: Origins) -> str:
    """One clause per bad field, each naming where its value came from."""
    lines = []
    for item in error.errors():
        dotted = ".".join(str(part) for part in item["loc"]) or "(root)"
        source = origins.of(dotted)
        where = "" if source == "default" else f" (from {source})"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{dotted}{where}: {message}")
    return "invalid setting " + "; ".join(lines)


def settings_file_in_use(settings_file: Path | None = None) -> Path | None:
    """The settings file a load would read: the argument, else ``AGENTX_SETTINGS_FILE``."""
    if settings_file is not None:
        return Path(settings_file)
    named = os.environ.get("AGENTX_SETTINGS_FILE")
    return Path(named) if named else None


def setting_origins(
    settings_file: Path | None = None, override_label: str = "argument", **overrides: Any
) -> Origins:
    """Where each setting of :func:`load_settings` with the same arguments comes from."""
    return Origins(overrides, settings_file_in_use(settings_file), override_label)


def load_settings(
    settings_file: Path | None = None, override_label: str = "argument", **overrides: Any
) -> Settings:
    """Build :class:`Settings`, naming every invalid field and where its value came from.

    Args:
        settings_file: optional TOML file; ``AGENTX_SETTINGS_FILE`` works too.
        override_label: how explicit values are named in errors (the CLI says ``flag``).
        **overrides: values that win over file and environment (``None`` is ignored).

    Raises:
        SettingsError: a field is invalid, an ``AGENTX_*`` variable is not a setting
            (a typo would otherwise be ignored), or the settings file is unreadable.
    """
    clean = {key: value for key, value in overrides.items() if value is not None}
    unknown = unknown_env_variables(Settings)
    if unknown:
        raise SettingsError("; ".join(unknown))
    origins = setting_origins(settings_file, override_label, **clean)
    previous = os.environ.get("AGENTX_SETTINGS_FILE")
    try:
        if settings_file is not None:
            if not Path(settings_file).is_file():
                raise SettingsError(f"settings file not found: {settings_file}")
            os.environ["AGENTX_SETTINGS_FILE"] = str(settings_file)
        elif previous and not Path(previous).is_file():
            raise SettingsError(
                f"settings file not found: {previous} (from env AGENTX_SETTINGS_FILE)"
            )
        return Settings(**clean)
    except ValidationError as error:
        raise SettingsError(_describe_errors(error, origins)) from None
    except (OSError, ValueError) as error:
        if isinstance(error, SettingsError):
            raise
        raise SettingsError(f"cannot read settings: {error}") from None
    finally:
        if settings_file is not None:
            if previous is None:
                os.environ.pop("AGENTX_SETTINGS_FILE", None)
            else:
                os.environ["AGENTX_SETTINGS_FILE"] = previous
