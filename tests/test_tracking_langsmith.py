"""What LangSmith sees of a run: its name, tags and metadata, and the experiment id on every
call made inside an experiment's nodes (checked with a callback handler: no network)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from agentx.graph.builder import (
    brainstorm_builder,
    build_builder,
    develop_builder,
    evaluate_builder,
)
from agentx.graph.context import ResourcePool
from agentx.graph.nodes import _experiment_id
from agentx.settings import SettingsError, load_settings
from agentx.tracking.langsmith import ExperimentTracedNodes, run_config


class Recorder(BaseCallbackHandler):
    """Metadata and tags of every chain run started (what a LangSmith tracer receives)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                       tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:  # fmt: skip
        name = kwargs.get("name") or (serialized or {}).get("name", "?")
        self.runs[name] = {"tags": tags or [], "metadata": metadata or {}}


def test_run_config_names_tags_and_describes_the_run(tmp_path) -> None:
    settings = load_settings(workspace=tmp_path, seed=7, tracking={"tags": ["nightly"]})
    config = run_config(settings, "run-3", "tiny")
    assert config["run_name"] == "agentx run-3"
    assert config["configurable"] == {"thread_id": "run-3"}
    assert {"agentx", "world:tiny", "seed:7", "run:run-3", "nightly"} <= set(config["tags"])
    metadata = config["metadata"]
    assert (metadata["agentx_run_id"], metadata["world"], metadata["seed"]) == ("run-3", "tiny", 7)
    assert metadata["mode"] == "offline" and metadata["workspace"] == str(tmp_path.resolve())


class State(TypedDict, total=False):
    run_id: str
    iteration: int
    seen: dict[str, Any]


class Nodes:
    """Two nodes: one that calls a runnable (as agents call models), one that takes config."""

    def work(self, state: State) -> dict[str, Any]:
        RunnableLambda(lambda x: x, name="model_call").invoke(1)
        return {}

    def with_config(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        return {"seen": dict(config.get("metadata") or {})}


def test_calls_inside_an_experiment_carry_its_id() -> None:
    nodes = ExperimentTracedNodes(Nodes())
    graph = StateGraph(State)
    graph.add_node("work", nodes.work)
    graph.add_node("with_config", nodes.with_config)
    graph.add_edge(START, "work")
    graph.add_edge("work", "with_config")
    graph.add_edge("with_config", END)
    recorder = Recorder()
    config = run_config(load_settings(), "run-1", "tiny")
    config["callbacks"] = [recorder]
    final = graph.compile().invoke({"run_id": "run-1", "iteration": 2}, config)
    expected = _experiment_id({"run_id": "run-1", "iteration": 2})  # the record's id
    call = recorder.runs["model_call"]["metadata"]
    assert call["agentx_experiment_id"] == expected and call["agentx_iteration"] == 2
    assert call["agentx_run_id"] == "run-1" and call["world"] == "tiny"
    assert "world:tiny" in recorder.runs["model_call"]["tags"]
    assert final["seen"]["agentx_experiment_id"] == expected  # config reaches config-taking nodes


def test_the_loop_wraps_experiment_nodes_but_not_intake_or_evolution(tmp_path) -> None:
    settings = load_settings(workspace=tmp_path)
    resources = ResourcePool(settings)  # compiling builds no resources
    builders = [build_builder, brainstorm_builder, develop_builder, evaluate_builder]
    specs = {name: spec for make in builders for name, spec in make(resources).nodes.items()}
    functions = {name: getattr(spec.runnable, "func", None) for name, spec in specs.items()}
    wrapped = {
        name
        for name, func in functions.items()
        if func is not None and "with_experiment_metadata" in func.__qualname__
    }
    assert {"brainstorm", "develop", "verify", "rollout_stage", "verdict", "learn"} <= wrapped
    assert "intake" not in wrapped and "evolve_harness" not in wrapped


def test_tracking_settings_come_from_the_environment_and_are_strict(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AGENTX_TRACKING__MLFLOW_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("AGENTX_TRACKING__TAGS", '["nightly", "ab"]')
    settings = load_settings(workspace=tmp_path)
    assert settings.tracking.mlflow_uri == "http://127.0.0.1:5000"
    assert settings.tracking.tags == ["nightly", "ab"]
    monkeypatch.delenv("AGENTX_TRACKING__MLFLOW_URI")
    assert load_settings(workspace=tmp_path).tracking.mlflow_uri is None  # off by default
    with pytest.raises(SettingsError, match="tracking.mlflow_url"):
        load_settings(workspace=tmp_path, tracking={"mlflow_url": "typo"})
