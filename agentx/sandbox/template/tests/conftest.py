"""Shared fixtures: a tiny synthetic data directory and a model trained on it once."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pinned import BASELINE
from synthetic import write_synthetic

from recsys import Config, Model, load_config, train


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 users, 120 items, 5 logged days (0..4); some items release on days 1..7."""
    return write_synthetic(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def config() -> Config:
    """The repo's config.toml with the baseline values pinned (see BASELINE)."""
    return load_config(overrides=BASELINE)


@pytest.fixture(scope="session")
def model(data_dir: Path, config: Config) -> Model:
    return train(data_dir, config, seed=0)


@pytest.fixture
def data_copy(data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the data directory that a test may corrupt."""
    return Path(shutil.copytree(data_dir, tmp_path / "data"))


@pytest.fixture
def edit_npz() -> Callable[[Path, str, Callable[[dict[str, np.ndarray]], None]], None]:
    """Rewrite one npz file of a data directory through an in-place edit of its arrays."""

    def edit(root: Path, name: str, change: Callable[[dict[str, np.ndarray]], None]) -> None:
        path = root / name
        with np.load(path) as npz:
            arrays = {k: npz[k].copy() for k in npz.files}
        change(arrays)
        np.savez(path, **arrays)

    return edit
