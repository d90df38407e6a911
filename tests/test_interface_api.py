"""The embedded Python API: ``from agentx import ...``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import agentx
from agentx.graph.checkpoint import serializer


def test_public_names_resolve_and_say_what_they_do() -> None:
    assert set(agentx.__all__) == {
        "build_graph", "load_settings", "Settings", "run_loop", "RunSummary"
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
    graph.invoke({"goal_text": "raise watch time"}, config, interrupt_before=["develop"])
    state = graph.get_state(config)
    assert state.next == ("develop",)
    assert state.values["current"].target_metric == "watch_time"
    assert state.values["run_id"] == "embedded-1"
