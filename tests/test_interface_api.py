"""The embedded Python API: ``from agentx import ...``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import agentx
from agentx.graph.checkpoint import serializer


def test_public_names_resolve_and_say_what_they_do() -> None:
    assert set(agentx.__all__) == {
        "build_graph", "load_settings", "Settings", "run_loop", "RunSummary",
        "build_resources", "open_memory", "HarnessStore",
    }  # fmt: skip
    for name in agentx.__all__:
        obj = getattr(agentx, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name
    assert "build_graph" in dir(agentx)


def test_importing_the_statistics_does_not_pull_in_the_graph() -> None:
    code = "import sys, agentx.stats; print('langgraph' in sys.modules, 'chromadb' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_embedded_graph_with_your_own_checkpointer(tmp_path: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    settings = agentx.load_settings(world="tiny", iterations=1, workspace=tmp_path)
    graph = agentx.build_graph(settings, checkpointer=InMemorySaver(serde=serializer()))
    config = {"configurable": {"thread_id": "embedded-1"}}
    graph.invoke({"goal_text": "raise watch time"}, config, interrupt_before=["experiment"])
    state = graph.get_state(config)
    assert state.next == ("experiment",)  # the experiment subgraph, before it develops
    [scheduled] = state.values["wave"]  # the wave of experiments about to run
    assert scheduled.proposal.target_metric == "watch_time"
    assert state.values["run_id"] == "embedded-1"


def test_embedded_run_then_read_its_records_memory_and_harness(tmp_path: Path) -> None:
    settings = agentx.load_settings(world="tiny", iterations=1, workspace=tmp_path / "ws")
    memory = agentx.open_memory(settings)
    resources = agentx.build_resources(settings, store=memory)  # your own memory store
    assert resources.store is memory
    summary = agentx.run_loop(settings, resources=resources)
    [experiment] = summary.experiments
    assert memory.count() == 1
    [card] = memory.list(where={"world": "tiny"})
    assert card.technique == experiment.technique and card.run_id == summary.run_id
    hits = memory.search(f"{experiment.technique} watch time", k=1)
    assert hits and hits[0].card.id == card.id
    harness = agentx.HarnessStore(settings.workspace / "harness")
    [trajectory] = harness.trajectories()
    assert [r.id for r in trajectory.records] == [experiment.id]
    assert harness.version("brainstorm") == summary.harness_versions["brainstorm"]
