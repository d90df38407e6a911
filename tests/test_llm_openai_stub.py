"""make_chat_model + invoke_structured against a local stub of the OpenAI API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from llm_stub import JsonHandler, base_url, stub_server
from pydantic import BaseModel, Field, SecretStr

from agentx.llm.budget import count_messages, counter_for, forget_tokenizers
from agentx.llm.errors import FailureKind
from agentx.llm.factory import LLMConfigError, make_chat_model
from agentx.llm.structured import forget_negotiated_methods, invoke_structured
from agentx.llm.usage import CallUsage, UsageTally, current_tally, tally_usage
from agentx.settings import LLMSettings


class Plan(BaseModel):
    """An experiment plan."""

    lever: str
    size: float = Field(ge=0.0)


def completion(
    content: str | None = None, tool_args: str | None = None, tool_name: str = "Plan"
) -> dict[str, Any]:
    """A chat.completion body with either text content or one tool call."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if tool_args is not None:
        message["tool_calls"] = [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": tool_name, "arguments": tool_args},
            }
        ]
        finish = "tool_calls"
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "stub-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def http_error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error"}}


class OpenAIStub:
    """A tiny ``/v1/chat/completions`` server: scripted replies, recorded bodies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.delay_s = 0.0  # each chat reply waits this long (a slow server)
        self.tokenizer = False  # serve llama-cpp-python's /extras/tokenize (a word a token)
        self.server: ThreadingHTTPServer | None = None  # set while the fixture serves
        stub = self

        class Handler(JsonHandler):
            def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                if path == "/extras/tokenize" and stub.tokenizer:
                    return 200, {"tokens": list(range(len(str(body["input"]).split())))}
                if not path.startswith("/v1/"):  # other tokenizer routes: not served
                    return 404, {"detail": "Not Found"}
                stub.paths.append(path)
                stub.requests.append(body)
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                if path.rstrip("/") != "/v1/chat/completions":
                    return http_error(404, f"no route {path}")
                if stub.script:
                    return stub.script.pop(0) if len(stub.script) > 1 else stub.script[0]
                return http_error(500, "stub has no scripted reply")

        self.handler = Handler

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return base_url(self.server)

    def reply(self, *replies: dict[str, Any] | tuple[int, dict[str, Any]]) -> None:
        self.script = [r if isinstance(r, tuple) else (200, r) for r in replies]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStub]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    forget_negotiated_methods()  # a port may be reused by the next test's stub
    forget_tokenizers()
    stub = OpenAIStub()
    with stub_server(stub.handler) as stub.server:
        yield stub


def settings_for(stub: OpenAIStub, **overrides: Any) -> LLMSettings:
    fields: dict[str, Any] = {
        "model": "stub-model",
        "base_url": stub.base_url,
        "api_key": SecretStr("sk-test"),
        "max_tokens": 321,
        "temperature": 0.0,
        "reasks": 0,
        "transport_retries": 0,
        "timeout_s": 10,
    }
    fields.update(overrides)
    return LLMSettings(**fields)


def ask() -> list[Any]:
    return [SystemMessage(content="You plan experiments."), HumanMessage(content="Plan one.")]


def test_offline_policy_has_no_model() -> None:
    assert make_chat_model(LLMSettings()) is None
    assert make_chat_model(LLMSettings(model="")) is None


def test_openai_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="gpt-test"):
        make_chat_model(LLMSettings(model="gpt-test"))


def test_function_calling_reply_is_parsed(stub: OpenAIStub) -> None:
    stub.reply(completion(tool_args='{"lever": "diversity", "size": 0.05}'))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan)
    assert result.ok, result.error
    assert result.value == Plan(lever="diversity", size=0.05)
    assert result.attempts == 1 and result.method == "function_calling"
    assert stub.paths == ["/v1/chat/completions"]
    body = stub.requests[0]
    assert body["model"] == "stub-model"
    assert body["max_tokens"] == 321  # llama.cpp-style servers read this one
    assert body["max_completion_tokens"] == 321
    assert body["temperature"] == 0.0
    assert body["tools"][0]["function"]["name"] == "Plan"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["lever", "size"]
    assert body["tool_choice"]["function"]["name"] == "Plan"
    assert "response_format" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_malformed_then_valid_is_retried(stub: OpenAIStub) -> None:
    stub.reply(
        completion(tool_args='{"lever": "diversity", "size": '),  # truncated JSON
        completion(tool_args='{"lever": "diversity", "size": "large"}'),  # off-schema
        completion(tool_args='{"lever": "diversity", "size": 0.1}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, reasks=2)
    assert result.ok, result.error
    assert result.value == Plan(lever="diversity", size=0.1)
    assert result.attempts == 3
    assert len(stub.requests) == 3
    second = stub.requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "user"]
    assert second[2]["tool_calls"][0]["id"] == "call_abc"
    assert second[3]["tool_call_id"] == "call_abc"
    assert "not valid JSON" in second[4]["content"]
    third = stub.requests[2]["messages"]
    assert "size: Input should be a valid number" in third[-1]["content"]
    assert all(request["max_tokens"] == 321 for request in stub.requests)


def test_text_reply_instead_of_tool_call_is_parsed(stub: OpenAIStub) -> None:
    stub.reply(completion(content='Here you go:\n```json\n{"lever": "recency", "size": 0.3}\n```'))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan)
    assert result.ok and result.value == Plan(lever="recency", size=0.3)


def test_always_malformed_gives_up(stub: OpenAIStub) -> None:
    stub.reply(completion(content="I cannot do that."))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, reasks=1)
    assert not result.ok and result.attempts == 2
    assert result.error is not None and "no valid JSON" in result.error
    assert result.raw_outputs == ["I cannot do that.", "I cannot do that."]


def test_rejected_json_schema_falls_back_to_function_calling(stub: OpenAIStub) -> None:
    stub.reply(
        http_error(400, "response_format type json_schema is not supported"),
        completion(tool_args='{"lever": "diversity", "size": 0.2}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, method="json_schema")
    assert result.ok, result.error
    assert result.method == "function_calling"
    assert result.attempts == 2
    assert stub.requests[0]["response_format"]["type"] == "json_schema"
    assert "tools" not in stub.requests[0]
    assert "response_format" not in stub.requests[1]
    assert stub.requests[1]["tools"][0]["function"]["name"] == "Plan"


def test_json_schema_reply_is_parsed(stub: OpenAIStub) -> None:
    stub.reply(completion(content='{"lever": "diversity", "size": 0.4}'))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, method="json_schema")
    assert result.ok and result.value == Plan(lever="diversity", size=0.4)
    assert result.method == "json_schema"
    assert stub.requests[0]["response_format"]["json_schema"]["name"] == "Plan"


def test_json_mode_puts_the_schema_in_the_prompt(stub: OpenAIStub) -> None:
    stub.reply(completion(content='{"lever": "diversity", "size": 0.4}'))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, method="json_mode")
    assert result.ok and result.method == "json_mode"
    body = stub.requests[0]
    assert body["response_format"] == {"type": "json_object"}
    assert '"title": "Plan"' in body["messages"][-1]["content"]


def test_rejected_tools_fall_back_to_json_text(stub: OpenAIStub) -> None:
    stub.reply(
        http_error(400, "tools are not supported by this server"),
        completion(content='{"lever": "diversity", "size": 0.2}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan)
    assert result.ok and result.method == "text" and result.attempts == 2
    assert "tools" not in stub.requests[1]
    assert '"title": "Plan"' in stub.requests[1]["messages"][-1]["content"]


def test_server_errors_end_with_ok_false(stub: OpenAIStub) -> None:
    stub.reply(http_error(401, "invalid api key"))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan)
    assert not result.ok and result.attempts == 1
    assert result.error is not None and "invalid api key" in result.error


def test_unreachable_server_ends_with_ok_false(stub: OpenAIStub) -> None:
    port = stub.server.server_address[1]
    stub.server.shutdown()
    stub.server.server_close()
    model = make_chat_model(settings_for(stub, base_url=f"http://127.0.0.1:{port}/v1"))
    assert model is not None
    result = invoke_structured(model, ask(), Plan)
    assert not result.ok
    assert result.error is not None and "Connection" in result.error


def test_local_server_without_key_gets_a_placeholder(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stub.reply(completion(tool_args='{"lever": "x", "size": 0}'))
    model = make_chat_model(settings_for(stub, api_key=None))
    assert model is not None
    assert invoke_structured(model, ask(), Plan).ok


# -- error classes: each kind has its own handling ---------------------------------------


def test_a_temporary_503_is_retried_not_taken_as_a_method_rejection(stub: OpenAIStub) -> None:
    stub.reply(
        http_error(503, "loading model"),
        completion(tool_args='{"lever": "diversity", "size": 0.2}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    waits: list[float] = []
    result = invoke_structured(model, ask(), Plan, backoff_s=0.25, sleep=waits.append)
    assert result.ok and result.method == "function_calling"
    assert len(stub.requests) == 2 and all("tools" in r for r in stub.requests)
    assert waits == [0.25]
    assert [(f.kind, f.action) for f in result.fallbacks] == [(FailureKind.TRANSIENT, "retry")]


def test_a_persistent_500_to_json_schema_switches_method_once_and_is_remembered(
    stub: OpenAIStub,
) -> None:
    """llama.cpp answers 500 to response_format json_schema: after the transport retries
    the method is negotiated down, and later calls go straight to the method that works."""
    rejection = http_error(500, "Internal Server Error")
    good = completion(tool_args='{"lever": "diversity", "size": 0.2}')
    stub.reply(rejection, rejection, good)
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(
        model, ask(), Plan, method="json_schema", transport_retries=1, sleep=lambda s: None
    )
    assert result.ok and result.method == "function_calling"
    assert [f.action for f in result.fallbacks] == ["retry", "switch_method"]
    assert result.fallbacks[1].to_method == "function_calling"
    assert [("response_format" in r, "tools" in r) for r in stub.requests] == [
        (True, False),
        (True, False),
        (False, True),
    ]
    stub.reply(good)
    again = invoke_structured(model, ask(), Plan, method="json_schema")
    assert again.ok and again.fallbacks == [] and "tools" in stub.requests[-1]
    assert len(stub.requests) == 4


def test_a_context_overflow_is_not_retried_nor_a_method_switch(stub: OpenAIStub) -> None:
    stub.reply(http_error(400, "Requested tokens (9000) exceed context window of 8192"))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, transport_retries=3, sleep=lambda s: None)
    assert not result.ok and result.failure == FailureKind.CONTEXT_OVERFLOW
    assert result.call_failed  # the infrastructure's limit, not the model's answer
    assert len(stub.requests) == 1


def test_a_context_overflow_on_a_reask_drops_the_reask_history(stub: OpenAIStub) -> None:
    stub.reply(
        completion(tool_args='{"lever": "diversity"}'),  # off-schema: re-asked
        http_error(400, "Requested tokens (9000) exceed context window of 8192"),
        completion(tool_args='{"lever": "diversity", "size": 0.3}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, reasks=2)
    assert result.ok and result.value == Plan(lever="diversity", size=0.3)
    assert [f.action for f in result.fallbacks] == ["reask", "compact"]
    roles = [m["role"] for m in stub.requests[2]["messages"]]
    assert roles == ["system", "user", "user"]  # the prompt and the latest complaint only


def test_a_timeout_is_transient_and_retried(stub: OpenAIStub) -> None:
    stub.delay_s = 1.0
    stub.reply(completion(tool_args='{"lever": "diversity", "size": 0.2}'))
    model = make_chat_model(settings_for(stub, timeout_s=0.2))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, transport_retries=1, sleep=lambda s: None)
    assert not result.ok and result.failure == FailureKind.TRANSIENT and result.call_failed
    assert "Timeout" in (result.error or "")
    assert len(stub.requests) == 2  # the client's own retries are off: only ours count


def test_a_refused_key_is_given_up_at_once(stub: OpenAIStub) -> None:
    stub.reply(http_error(401, "invalid api key"))
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, transport_retries=3)
    assert result.failure == FailureKind.REFUSED and len(stub.requests) == 1


def test_a_prompt_over_the_budget_is_not_sent(stub: OpenAIStub) -> None:
    model = make_chat_model(settings_for(stub))
    assert model is not None
    long = [HumanMessage(content="word " * 5000)]
    result = invoke_structured(model, long, Plan, budget_tokens=1000)
    assert result.failure == FailureKind.OVER_BUDGET and result.call_failed
    assert stub.requests == [] and "over the budget of 1,000" in (result.error or "")


def test_the_servers_tokenizer_is_used_when_it_reports_one(stub: OpenAIStub) -> None:
    stub.tokenizer = True
    model = make_chat_model(settings_for(stub))
    assert model is not None
    counter = counter_for(model)
    assert counter.name.startswith("server") and counter.count("one two three") == 3


def test_without_a_tokenizer_the_estimate_errs_high(stub: OpenAIStub) -> None:
    model = make_chat_model(settings_for(stub))
    assert model is not None
    counter = counter_for(model)
    assert counter.name == "estimate" and counter.count("one two three") >= 3


def test_a_reask_whose_shape_is_refused_is_sent_compact(stub: OpenAIStub) -> None:
    """llama-cpp-python validates requests itself and answers 500 "validation errors" to a
    re-ask carrying tool-call history: that is a rejection of the shape, not an outage."""
    stub.reply(
        completion(tool_args='{"lever": "diversity", "size": -1}'),  # off-schema: re-asked
        http_error(500, "7 validation errors: literal_error ('body', 'messages', 2)"),
        completion(tool_args='{"lever": "diversity", "size": 0.3}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    result = invoke_structured(model, ask(), Plan, transport_retries=2, sleep=lambda s: None)
    assert result.ok and result.method == "function_calling"
    assert [f.action for f in result.fallbacks] == ["reask", "compact"]
    assert [m["role"] for m in stub.requests[2]["messages"]] == ["system", "user", "user"]


# -- usage: requests and tokens per decision (agentx/llm/usage.py) -----------------------


class Idea(BaseModel):
    """A second decision kind, tallied apart from Plan."""

    technique: str


def with_usage(body: dict[str, Any], prompt: int, completion_tokens: int) -> dict[str, Any]:
    """``body`` with the server-reported token usage set."""
    total = prompt + completion_tokens
    usage = {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": total}
    return {**body, "usage": usage}


def test_the_servers_usage_is_tallied_per_decision(stub: OpenAIStub) -> None:
    stub.reply(
        with_usage(completion(tool_args='{"lever": "diversity", "size": '), 120, 7),  # re-asked
        with_usage(completion(tool_args='{"lever": "diversity", "size": 0.1}'), 150, 11),
        with_usage(completion(tool_args='{"technique": "mmr"}', tool_name="Idea"), 90, 4),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    with tally_usage() as tally:
        plan = invoke_structured(model, ask(), Plan, reasks=1)
        idea = invoke_structured(model, ask(), Idea)
    assert plan.ok and idea.ok, (plan.error, idea.error)
    assert (plan.prompt_tokens, plan.completion_tokens) == (270, 18)
    assert (idea.prompt_tokens, idea.completion_tokens) == (90, 4)
    usage = tally.by_decision()
    assert usage["Plan"] == CallUsage(
        calls=2, reported=2, prompt_tokens=270, completion_tokens=18, largest_prompt=150
    )
    assert usage["Idea"] == CallUsage(
        calls=1, reported=1, prompt_tokens=90, completion_tokens=4, largest_prompt=90
    )
    assert tally.total() == CallUsage(
        calls=3, reported=3, prompt_tokens=360, completion_tokens=22, largest_prompt=150
    )
    assert tally.total().per(2)["prompt_tokens"] == 180
    assert current_tally() is None  # the scope ended with the block


def test_failed_requests_and_replies_without_usage_are_tallied_honestly(
    stub: OpenAIStub,
) -> None:
    """A request with no reply is a failed call without tokens; a reply without a usage
    block has its prompt counted by the call's counter and no completion tokens."""
    no_usage = completion(tool_args='{"lever": "x", "size": 0.2}')
    del no_usage["usage"]
    stub.reply(http_error(503, "loading model"), no_usage)
    model = make_chat_model(settings_for(stub))
    assert model is not None
    with tally_usage() as tally:
        result = invoke_structured(
            model,
            ask(),
            Plan,
            transport_retries=1,
            sleep=lambda s: None,
            budget_tokens=10_000,
            counter=counter_for(model),
        )
    assert result.ok and result.attempts == 2
    counted = count_messages(ask(), counter_for(model))
    assert result.prompt_tokens == counted and result.completion_tokens == 0
    assert tally.by_decision() == {
        "Plan": CallUsage(
            calls=2, failed=1, reported=0, prompt_tokens=counted, largest_prompt=counted
        )
    }


def test_without_a_tally_in_scope_nothing_is_recorded_and_scopes_do_not_mix(
    stub: OpenAIStub,
) -> None:
    stub.reply(completion(tool_args='{"lever": "x", "size": 0.2}'))  # usage 10 + 5
    model = make_chat_model(settings_for(stub))
    assert model is not None
    assert invoke_structured(model, ask(), Plan).ok  # no tally: nothing to record into
    # Imported here: the module's imports are being reshaped on another branch.
    import contextvars
    import threading

    tallies: list[UsageTally] = []

    def one_run(calls: int) -> None:
        with tally_usage() as tally:
            for _ in range(calls):
                invoke_structured(model, ask(), Plan)
        tallies.append(tally)

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(one_run, n)) for n in (1, 3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(t.total().calls for t in tallies) == [1, 3]
    assert sorted(t.total().prompt_tokens for t in tallies) == [10, 30]


def test_a_refused_reask_shape_is_remembered_for_the_endpoint(stub: OpenAIStub) -> None:
    """After one refusal, later re-asks to the same server go compact at once: no failed
    request per re-ask (llama-cpp-python refuses every re-ask with the tool call)."""
    stub.reply(
        completion(tool_args='{"lever": "diversity", "size": -1}'),  # off-schema: re-asked
        http_error(500, "7 validation errors: literal_error ('body', 'messages', 2)"),
        completion(tool_args='{"lever": "diversity", "size": 0.3}'),
        completion(tool_args='{"lever": "recency", "size": -2}'),  # the next decision
        completion(tool_args='{"lever": "recency", "size": 0.2}'),
    )
    model = make_chat_model(settings_for(stub))
    assert model is not None
    first = invoke_structured(model, ask(), Plan, reasks=1, transport_retries=1, sleep=lambda s: 0)
    assert first.ok and first.attempts == 3
    second = invoke_structured(model, ask(), Plan, reasks=1)
    assert second.ok and second.value == Plan(lever="recency", size=0.2)
    assert second.attempts == 2 and len(stub.requests) == 5
    assert [f.action for f in second.fallbacks] == ["reask", "compact"]
    assert [m["role"] for m in stub.requests[4]["messages"]] == ["system", "user", "user"]
    assert (
        "size: Input should be greater than or equal to 0"
        in stub.requests[4]["messages"][-1]["content"]
    )
    forget_negotiated_methods()  # a reconfigured server gets the full re-ask again
    stub.reply(
        completion(tool_args='{"lever": "x", "size": -1}'),
        completion(tool_args='{"lever": "x", "size": 0.1}'),
    )
    third = invoke_structured(model, ask(), Plan, reasks=1)
    assert third.ok and [f.action for f in third.fallbacks] == ["reask"]
    assert [m["role"] for m in stub.requests[-1]["messages"]][2:4] == ["assistant", "tool"]
