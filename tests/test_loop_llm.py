"""The loop in LLM mode with a scripted chat model: intake, ideas and edits all from it."""

from __future__ import annotations

import json
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage

from agentx.graph.resources import build_resources
from agentx.models import TraceEvent
from agentx.runner import run_loop
from agentx.settings import load_settings


def _reply(payload: object) -> AIMessage:
    return AIMessage(content=json.dumps(payload))


def test_loop_with_a_scripted_model(tmp_path: Path) -> None:
    settings = load_settings(world="tiny", iterations=1, seed=1, workspace=tmp_path)
    goal = {"objective": "watch_time", "guardrails": ["active_days"]}
    ideas = {
        "ideas": [
            {
                "technique": "exploration_slots",
                "params": {"slots": 2},
                "hypothesis": "Two exploration slots cut repetition fatigue.",
                "expected_effect": 0.02,
                "maturity": "ready",
            }
        ]
    }
    wrong_edit = {
        "rationale": "set slots",
        "edits": [{"path": "config.toml", "search": "exploration_slots = 7", "replace": "x"}],
    }
    good_edit = {
        "rationale": "set two exploration slots",
        "edits": [
            {
                "path": "config.toml",
                "search": "exploration_slots = 1",
                "replace": "exploration_slots = 2",
            }
        ],
    }
    model = FakeMessagesListChatModel(
        responses=[_reply(goal), _reply(ideas), _reply(wrong_edit), _reply(good_edit)]
    )
    resources = build_resources(settings, llm=model)
    summary = run_loop(settings, resources=resources)
    [experiment] = summary.experiments
    assert experiment.technique == "exploration_slots" and experiment.params == {"slots": 2}
    # The first edit did not apply; the re-ask (fed the error) did.
    assert experiment.verification == "passed"
    assert experiment.stage_reached is not None


def test_junk_from_the_model_falls_back_per_decision_and_every_fallback_is_traced(
    tmp_path: Path,
) -> None:
    """A small model's junk (an objective that is the whole goal sentence, a technique
    "1.0") is asked again, then each decision is taken by the offline policy; the trace
    says so for intake and brainstorm alike."""
    settings = load_settings(
        world="tiny", iterations=1, seed=1, workspace=tmp_path, llm={"reasks": 1}
    )
    junk_goal = {"objective": settings.goal}
    junk_ideas = {
        "ideas": [{"technique": "1.0", "hypothesis": "a hypothesis", "expected_effect": 1.0}]
    }
    model = FakeMessagesListChatModel(
        responses=[_reply(junk_goal)] * 2 + [_reply(junk_ideas)] * 2 + [AIMessage("x")] * 9
    )
    trace: list[TraceEvent] = []
    summary = run_loop(
        settings, resources=build_resources(settings, llm=model), on_trace=trace.append
    )
    assert summary.experiments  # the offline policy carried the run
    lines = [f"{event.node}: {event.message}" for event in trace]
    assert any(line.startswith("intake: model intake unusable") for line in lines)
    assert any(
        line.startswith("intake: model call: malformed: reask") and "is not a metric" in line
        for line in lines
    )
    assert any(
        line.startswith("brainstorm: model call: malformed: give_up")
        and "unknown technique '1.0'" in line
        for line in lines
    )
    assert any("model ideas unusable" in line and "offline policy used" in line for line in lines)
