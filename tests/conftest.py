"""Shared fixtures: a tiny-world sandbox built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldParams, load_world


@pytest.fixture(scope="session")
def tiny_world() -> WorldParams:
    return load_world("tiny")


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory: pytest.TempPathFactory, tiny_world: WorldParams) -> SandboxTarget:
    root: Path = tmp_path_factory.mktemp("sandbox")
    return SandboxTarget.create(root, tiny_world, seed=0)
