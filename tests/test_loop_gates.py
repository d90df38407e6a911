"""Human gates: the admission interrupt pauses the loop and resumes with the answer."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentx.graph.builder import build_graph
from agentx.graph.checkpoint import serializer
from agentx.settings import load_settings


def _pending(graph, config) -> dict:
    snapshot = graph.get_state(config)
    assert snapshot.next == ("admission_gate",)
    [task] = [t for t in snapshot.tasks if t.interrupts]
    return task.interrupts[0].value


def test_admission_gate_reject_then_approve(tmp_path: Path) -> None:
    settings = load_settings(
        world="tiny", iterations=1, seed=2, workspace=tmp_path, autonomous=False
    )
    graph = build_graph(settings, checkpointer=InMemorySaver(serde=serializer()))
    config = {"configurable": {"thread_id": "gate"}}
    graph.invoke({"goal_text": "raise watch time"}, config)
    first = _pending(graph, config)
    assert first["gate"] == "proposal_admission" and "approve" in first["choices"]
    rejected = first["proposal"]["technique"], first["proposal"]["params"]

    graph.invoke(Command(resume={"action": "reject", "reason": "not this quarter"}), config)
    second = _pending(graph, config)
    assert (second["proposal"]["technique"], second["proposal"]["params"]) != rejected
    assert graph.get_state(config).values["avoid"]

    final = graph.invoke(Command(resume={"action": "approve"}), config)
    [experiment] = final["experiments"]
    assert experiment.proposal.technique == second["proposal"]["technique"]
    assert experiment.proposal.params == second["proposal"]["params"]
