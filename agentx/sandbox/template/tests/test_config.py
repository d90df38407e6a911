"""config.toml is the single, strict source of hyperparameters."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from recsys import load_config
from recsys.config import DEFAULT_CONFIG_PATH, Config, ConfigError, from_dict, to_dict
from recsys.debias import WEIGHTING
from recsys.features import FEATURES
from recsys.ranker import LOSSES


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _with_line(key: str, line: str) -> str:
    """The repo's config.toml with its ``key = ...`` line replaced, whatever the value was."""
    text, count = re.subn(rf"(?m)^{key} = .*$", line, DEFAULT_CONFIG_PATH.read_text())
    assert count == 1, key
    return text


def test_repo_config_loads_and_names_registered_components() -> None:
    # Values are the agents' to tune; this only checks that they are usable.
    config = load_config()
    assert set(config.ranker.features) <= set(FEATURES)
    assert config.ranker.loss in LOSSES
    assert config.ranker.debias in WEIGHTING


def test_every_field_is_one_key_value_line() -> None:
    """Recipes edit values with a regex on ``key = value``; keep that spelling stable."""
    text = DEFAULT_CONFIG_PATH.read_text()
    config = load_config()
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(getattr(config, section.name)):
            assert len(re.findall(rf"(?m)^{field.name} = \S", text)) == 1, field.name


def test_unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    text = _with_line("mf_dim", "mf_dim = 16\nmf_dimm = 8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[retrieval\]: \['mf_dimm'\]"):
        load_config(_write(tmp_path, text))


def test_unknown_section(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG_PATH.read_text() + "\n[serving]\nbudget = 3\n"
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(_write(tmp_path, text))


def test_missing_key(tmp_path: Path) -> None:
    text = re.sub(r"(?m)^l2 = .*\n", "", DEFAULT_CONFIG_PATH.read_text())
    with pytest.raises(ConfigError, match=r"missing key\(s\) in \[ranker\]: \['l2'\]"):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("key", "line", "message"),
    [
        ("mf_pool", 'mf_pool = "60"', "retrieval.mf_pool must be int"),
        ("mf_pool", "mf_pool = true", "retrieval.mf_pool must be int"),
        ("mf_pool", "mf_pool = -1", "retrieval.mf_pool must be >= 0"),
        ("loss", "loss = 3", "ranker.loss must be str"),
        ("l2", 'l2 = "small"', "ranker.l2 must be a number"),
        ("features", "features = []", "at least one feature"),
        ("momentum", "momentum = 1.0", r"ranker.momentum must be in \[0, 1\)"),
    ],
)
def test_bad_values(tmp_path: Path, key: str, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, _with_line(key, line)))


def test_int_accepted_for_float(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, _with_line("l2", "l2 = 1"))).ranker.l2 == 1.0


def test_overrides_and_round_trip(config: Config) -> None:
    changed = config.with_overrides({"retrieval.mf_pool": 123, "ranker.features": ["mf_score"]})
    assert changed.retrieval.mf_pool == 123 and changed.ranker.features == ("mf_score",)
    assert config.retrieval.mf_pool == 60  # the original is untouched (frozen)
    assert from_dict(to_dict(changed)) == changed
    with pytest.raises(ConfigError, match="unknown config key"):
        config.with_overrides({"retrieval.pool": 1})
    assert load_config(overrides={"rerank.category_cap": 2}).rerank.category_cap == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
