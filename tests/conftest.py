"""Shared fixtures: a tiny-world sandbox built once per session, a PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import postgres_cluster

from agentx.sandbox.target import SandboxTarget
from agentx.sandbox.world import WorldParams, load_world


@pytest.fixture(scope="session")
def tiny_world() -> WorldParams:
    return load_world("tiny")


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory: pytest.TempPathFactory, tiny_world: WorldParams) -> SandboxTarget:
    root: Path = tmp_path_factory.mktemp("sandbox")
    return SandboxTarget.create(root, tiny_world, seed=0)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A private PostgreSQL server on 127.0.0.1 for the whole session (per xdist worker)."""
    with postgres_cluster() as dsn:
        yield dsn


# -- the opt-in suite against a real model server (``make test-llm``) --------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--llm-server",
        action="store_true",
        default=False,
        help="run the tests marked llm_server against a real local model server "
        "(make test-llm installs and starts one)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--llm-server`` the llm_server tests are deselected: the default suite
    neither runs nor needs a model server; with it, only they run."""
    wanted = config.getoption("--llm-server")
    keep = [item for item in items if (item.get_closest_marker("llm_server") is not None) == wanted]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
