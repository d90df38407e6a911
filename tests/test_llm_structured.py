"""invoke_structured with langchain-core fake chat models (no tool binding)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatResult
from pydantic import BaseModel, Field

from agentx.llm.errors import FailureKind
from agentx.llm.structured import StructuredResult, extract_json, invoke_structured


class Plan(BaseModel):
    """An experiment plan."""

    lever: str
    size: float = Field(ge=0.0)
    notes: list[str] = Field(default_factory=list)


VALID = '{"lever": "diversity", "size": 0.2, "notes": ["a"]}'


class RecordingFake(FakeMessagesListChatModel):
    """Replies from a script and records every request it gets."""

    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


class BrokenModel(FakeMessagesListChatModel):
    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise ConnectionError("connection refused by 10.0.0.1")


def fake(*replies: str | AIMessage) -> RecordingFake:
    return RecordingFake(
        responses=[r if isinstance(r, AIMessage) else AIMessage(content=r) for r in replies]
    )


def ask() -> list[BaseMessage]:
    return [HumanMessage(content="Propose an experiment.")]


def last_text(request: list[BaseMessage]) -> str:
    return str(request[-1].content)


def test_valid_first_time() -> None:
    model = fake(VALID)
    result = invoke_structured(model, ask(), Plan)
    assert result.ok and result.error is None
    assert isinstance(result.value, Plan)
    assert result.value == Plan(lever="diversity", size=0.2, notes=["a"])
    assert result.attempts == 1
    assert result.raw_outputs == [VALID]
    assert len(model.requests) == 1
    # The schema is in the request, since this model cannot bind tools.
    assert '"lever"' in last_text(model.requests[0])


def test_malformed_json_then_valid() -> None:
    model = fake('{"lever": "diversity", "size": 0.2', VALID)
    messages = ask()
    result = invoke_structured(model, messages, Plan)
    assert result.ok and result.value is not None
    assert result.attempts == 2
    assert len(result.raw_outputs) == 2
    assert len(messages) == 1  # the caller's list is not modified
    second = model.requests[1]
    assert isinstance(second[-2], AIMessage)  # the bad reply is shown back
    assert second[-2].content == '{"lever": "diversity", "size": 0.2'
    feedback = last_text(second)
    assert "no valid JSON" in feedback
    assert "Expecting" in feedback  # the parser's complaint
    assert '"title": "Plan"' in feedback  # and the JSON schema


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        ('{"leverage": "diversity", "size": 0.2}', "lever: Field required"),
        ('{"lever": "diversity", "size": "big"}', "size: Input should be a valid number"),
        ('{"lever": "diversity", "size": -1}', "size: Input should be greater than or equal"),
        ('["diversity", 0.2]', "Input should be a valid dictionary"),
    ],
)
def test_off_schema_then_valid(bad: str, complaint: str) -> None:
    model = fake(bad, VALID)
    result = invoke_structured(model, ask(), Plan)
    assert result.ok and result.attempts == 2
    assert result.raw_outputs[0] == bad
    assert complaint in last_text(model.requests[1])


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_always_malformed_gives_up(max_retries: int) -> None:
    model = fake("I would rather not answer in JSON.")
    result = invoke_structured(model, ask(), Plan, reasks=max_retries)
    assert not result.ok and result.value is None
    assert result.attempts == max_retries + 1
    assert len(result.raw_outputs) == max_retries + 1
    assert result.error is not None and "no valid JSON" in result.error
    assert len(model.requests) == max_retries + 1


def test_fenced_json_with_prose_is_accepted() -> None:
    reply = f"Sure! Here is the plan:\n```json\n{VALID}\n```\nLet me know."
    result = invoke_structured(fake(reply), ask(), Plan)
    assert result.ok and result.attempts == 1 and result.value.lever == "diversity"  # type: ignore[union-attr]


def test_tool_call_reply_is_used_and_answered_on_error() -> None:
    bad = AIMessage(
        content="",
        tool_calls=[{"name": "Plan", "args": {"lever": "diversity"}, "id": "call_1"}],
    )
    good = AIMessage(
        content="",
        tool_calls=[{"name": "Plan", "args": {"lever": "diversity", "size": 0.1}, "id": "call_2"}],
    )
    model = fake(bad, good)
    result = invoke_structured(model, ask(), Plan)
    assert result.ok and result.value == Plan(lever="diversity", size=0.1)
    assert result.attempts == 2
    second = model.requests[1]
    tool_answers = [m for m in second if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in tool_answers] == ["call_1"]
    assert "size: Field required" in str(tool_answers[0].content)
    assert "size: Field required" in last_text(second)


def test_transport_error_is_retried_with_backoff_then_returned_not_raised() -> None:
    model = BrokenModel(responses=[AIMessage(content=VALID)])
    waits: list[float] = []
    result = invoke_structured(
        model, ask(), Plan, transport_retries=2, backoff_s=0.5, sleep=waits.append
    )
    assert not result.ok and result.call_failed
    assert result.failure == FailureKind.TRANSIENT
    assert result.attempts == 3 and waits == [0.5, 1.0]  # exponential backoff
    assert [f.action for f in result.fallbacks] == ["retry", "retry", "give_up"]
    assert result.error is not None and "connection refused" in result.error


def test_malformed_output_is_not_an_infrastructure_failure() -> None:
    result = invoke_structured(fake("no json here"), ask(), Plan, reasks=1)
    assert result.failure == FailureKind.MALFORMED and not result.call_failed
    assert [f.action for f in result.fallbacks] == ["reask", "give_up"]


def test_semantic_check_rejects_a_schema_valid_reply_and_reasks() -> None:
    model = fake('{"lever": "1.0", "size": 0.2}', VALID)
    result = invoke_structured(
        model,
        ask(),
        Plan,
        check=lambda plan: None if plan.lever == "diversity" else f"unknown lever {plan.lever!r}",
    )
    assert result.ok and result.value is not None and result.value.lever == "diversity"
    assert "unknown lever '1.0'" in last_text(model.requests[1])
    assert result.notes() == ["malformed: reask [text]: unknown lever '1.0' (1/2)"]


def test_generic_fake_chat_model() -> None:
    model = GenericFakeChatModel(messages=iter(["not json at all", AIMessage(content=VALID)]))
    result = invoke_structured(model, ask(), Plan, reasks=1)
    assert result.ok and result.attempts == 2


def test_result_is_typed_and_serialisable() -> None:
    result = invoke_structured(fake(VALID), ask(), Plan)
    assert isinstance(result, StructuredResult)
    dumped = result.model_dump()
    assert dumped["value"] == {"lever": "diversity", "size": 0.2, "notes": ["a"]}


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown structured output method"):
        invoke_structured(fake(VALID), ask(), Plan, method="xml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('The answer is {"a": {"b": [1, 2]}} as requested.', {"a": {"b": [1, 2]}}),
        ('<think>maybe {"a": 0}?</think>{"a": 2}', {"a": 2}),
        ("noise [1, 2] more", [1, 2]),
    ],
)
def test_extract_json(text: str, expected: Any) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "no json here", '{"a": 1'])
def test_extract_json_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        extract_json(text)
