"""Typed configuration loaded from ``config.toml``.

The TOML file is the single source of truth for hyperparameters: every dataclass field below
must appear in it and every key in it must be a field here. Strictness is deliberate — a typo
in an experiment's config edit must fail loudly instead of silently running the baseline.
"""

from __future__ import annotations

import dataclasses
import numbers
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.toml"


class ConfigError(ValueError):
    """The configuration is malformed: unknown/missing key, wrong type or invalid value."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """Candidate generation: ALS factorisation and the per-channel pool sizes."""

    mf_dim: int
    mf_reg: float
    mf_alpha: float
    mf_iters: int
    mf_pool: int
    popular_pool: int
    fresh_pool: int
    # <config:retrieval>

    def __post_init__(self) -> None:
        _require(self.mf_dim >= 1, "retrieval.mf_dim must be >= 1")
        _require(self.mf_reg >= 0, "retrieval.mf_reg must be >= 0")
        _require(self.mf_alpha >= 0, "retrieval.mf_alpha must be >= 0")
        _require(self.mf_iters >= 1, "retrieval.mf_iters must be >= 1")
        for name in ("mf_pool", "popular_pool", "fresh_pool"):
            _require(getattr(self, name) >= 0, f"retrieval.{name} must be >= 0")


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    """Parameters of individual ranking features (which features are used is ranker.features)."""

    ctr_smoothing: float
    category_affinity_days: int
    # <config:features>

    def __post_init__(self) -> None:
        _require(self.ctr_smoothing >= 0, "features.ctr_smoothing must be >= 0")
        _require(self.category_affinity_days >= 0, "features.category_affinity_days must be >= 0")


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """The learned ranker: feature set, loss, sample weighting and optimiser."""

    features: tuple[str, ...]
    loss: str
    debias: str
    l2: float
    epochs: int
    learning_rate: float
    momentum: float
    train_days: int
    # <config:ranker>

    def __post_init__(self) -> None:
        _require(len(self.features) > 0, "ranker.features must name at least one feature")
        _require(len(set(self.features)) == len(self.features), "ranker.features has duplicates")
        _require(self.l2 >= 0, "ranker.l2 must be >= 0")
        _require(self.epochs >= 0, "ranker.epochs must be >= 0")
        _require(self.learning_rate > 0, "ranker.learning_rate must be > 0")
        _require(0 <= self.momentum < 1, "ranker.momentum must be in [0, 1)")
        _require(self.train_days >= 0, "ranker.train_days must be >= 0")


@dataclasses.dataclass(frozen=True)
class RerankConfig:
    """Slate construction after scoring: constraints, diversity and exploration."""

    category_cap: int
    exploration_slots: int
    seen_penalty: float
    recent_impression_penalty: float
    recent_impression_days: int
    # <config:rerank>

    def __post_init__(self) -> None:
        _require(self.category_cap >= 0, "rerank.category_cap must be >= 0")
        _require(self.exploration_slots >= 0, "rerank.exploration_slots must be >= 0")
        _require(self.seen_penalty >= 0, "rerank.seen_penalty must be >= 0")
        _require(
            self.recent_impression_penalty >= 0, "rerank.recent_impression_penalty must be >= 0"
        )
        _require(self.recent_impression_days >= 0, "rerank.recent_impression_days must be >= 0")


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration; one attribute per TOML section."""

    retrieval: RetrievalConfig
    features: FeaturesConfig
    ranker: RankerConfig
    rerank: RerankConfig
    # <config:sections>

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """Return a copy with dotted keys replaced, e.g. ``{"retrieval.mf_pool": 100}``.

        Values go through the same type and range checks as the TOML file.
        """
        raw = to_dict(self)
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            _require(
                section in raw and key in raw[section],
                f"unknown config key {dotted!r}; known: {sorted(_dotted_keys(raw))}",
            )
            raw[section][key] = value
        return from_dict(raw)


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _dotted_keys(raw: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [f"{s}.{k}" for s, keys in raw.items() for k in keys]


def _coerce(where: str, expected: Any, value: Any) -> Any:
    """Check one value against a field annotation; ints (also numpy ones) pass for floats."""
    if expected is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        _require(ok, f"{where} must be a number, got {value!r}")
        return float(value)
    if expected is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        _require(ok, f"{where} must be int, got {value!r}")
        return int(value)
    if expected is str or expected is bool:
        _require(isinstance(value, expected), f"{where} must be {expected.__name__}, got {value!r}")
        return value
    if typing.get_origin(expected) is tuple:
        (item_type, _ellipsis) = typing.get_args(expected)
        _require(isinstance(value, list | tuple), f"{where} must be a list, got {value!r}")
        return tuple(_coerce(f"{where}[{i}]", item_type, v) for i, v in enumerate(value))
    raise ConfigError(f"{where}: unsupported field type {expected!r}")


def _build_section(name: str, cls: type, raw: Any) -> Any:
    _require(isinstance(raw, Mapping), f"[{name}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(fields))
    missing = [f for f in fields if f not in raw]
    _require(not unknown, f"unknown key(s) in [{name}]: {unknown}; known: {fields}")
    _require(not missing, f"missing key(s) in [{name}]: {missing}")
    values = {f: _coerce(f"{name}.{f}", hints[f], raw[f]) for f in fields}
    return cls(**values)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a validated :class:`Config` from parsed TOML (a dict of section tables)."""
    sections = _section_types()
    unknown = sorted(set(raw) - set(sections))
    missing = [s for s in sections if s not in raw]
    _require(not unknown, f"unknown section(s): {unknown}; known: {list(sections)}")
    _require(not missing, f"missing section(s): {missing}")
    return Config(**{s: _build_section(s, cls, raw[s]) for s, cls in sections.items()})


def to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (lists for tuples), the inverse of :func:`from_dict`."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(config):
        values = dataclasses.asdict(getattr(config, section.name))
        out[section.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Load ``config.toml`` (the repo's own by default) and apply optional dotted overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    config = from_dict(raw)
    return config.with_overrides(overrides) if overrides else config
