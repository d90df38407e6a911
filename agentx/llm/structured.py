"""Structured output from any chat model, with validation, re-asking and typed failures.

:func:`invoke_structured` asks a chat model for an instance of a pydantic schema and never
raises for a failed call or bad output. Each failure is classified
(:mod:`agentx.llm.errors`) and handled by its kind, and every deviation is recorded as a
:class:`~agentx.llm.errors.Fallback` in the result, for the trace:

- a transient failure (connection, timeout, 429, 5xx) is retried ``transport_retries``
  times with exponential backoff; a 500 that persists under ``json_schema``/``json_mode``
  (llama.cpp's answer to ``response_format``) is then taken as a method rejection;
- a rejected structured-output method falls back ``json_schema``/``json_mode`` →
  ``function_calling`` → ``text`` (the schema in the prompt, JSON parsed from the reply),
  and the method that worked is remembered for that endpoint and model, so later calls do
  not pay for the negotiation again;
- a context overflow (or a conversation over the token budget) drops the re-ask history
  once (the original prompt plus the latest complaint); otherwise the call is given up;
- a malformed reply, or one the caller's ``check`` finds wrong (semantic validation against
  the catalog, the schema of the target, the repository), is shown to the model with the
  JSON schema and asked again ``reasks`` times; a server that refuses a re-ask carrying
  the model's tool call gets the prompt and the complaint alone, then and for every later
  re-ask to that endpoint;
- a refused key or unknown model is given up at once.

It works with models that support tool calling (``ChatOpenAI`` and friends) through
``with_structured_output(schema, method=..., include_raw=True)`` and with any other chat
model (e.g. langchain-core's fakes) through plain text with the schema in the prompt.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, ValidationError

from agentx.llm.budget import (
    MESSAGE_OVERHEAD,
    BudgetReport,
    TokenCounter,
    count_messages,
    counter_for,
    schema_tokens,
)
from agentx.llm.errors import FailureKind, Fallback, classify, server_message, status_of
from agentx.llm.usage import current_tally

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

Method = Literal["function_calling", "json_schema", "json_mode", "text"]

#: Tokens kept for the validator's words in a re-ask.
_COMPLAINT_TOKENS = 256
#: Longest backoff between two transport retries.
MAX_BACKOFF_S = 30.0
_MAX_ERRORS_SHOWN = 8
#: Methods whose request does not carry the schema: it goes into the prompt instead.
_NEEDS_INSTRUCTIONS = frozenset({"text", "json_mode"})
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc)?[ \t]*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class StructuredResult(BaseModel, Generic[T]):
    """What :func:`invoke_structured` got.

    Attributes:
        ok: a valid ``value`` was obtained.
        value: the validated schema instance, or None.
        error: why it failed (the last validation or transport error), or None.
        failure: the kind of that failure (None when ``ok``).
        attempts: model requests made (retries, re-asks and method fallbacks included).
        raw_outputs: each reply as text (tool-call arguments as JSON), in order.
        method: how the last request asked for structure (``text`` = schema in prompt).
        fallbacks: every retry, method switch, compaction and re-ask, in order.
        prompt_tokens: prompt tokens of all requests (the server's usage when reported,
            else counted).
        completion_tokens: completion tokens of all replies, as the server reported them
            (0 when it reports none).
        budget: how the prompt was fitted to the token budget (set by
            :func:`agentx.llm.ask.ask`).
    """

    ok: bool
    value: T | None = None
    error: str | None = None
    failure: FailureKind | None = None
    attempts: int = 0
    raw_outputs: list[str] = Field(default_factory=list)
    method: str | None = None
    fallbacks: list[Fallback] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    budget: BudgetReport | None = None

    @property
    def call_failed(self) -> bool:
        """The call failed because the infrastructure did (server, network, configuration),
        as opposed to a reply that was malformed: the loop treats the two differently."""
        return self.failure is not None and self.failure.infrastructure

    def notes(self) -> list[str]:
        """One line per fallback, for trace events."""
        return [fallback.describe() for fallback in self.fallbacks]


class _OutputError(ValueError):
    """The reply is not a valid instance of the schema."""


# -- JSON extraction -------------------------------------------------------------------


def extract_json(text: str) -> Any:
    """The JSON value in ``text``: the whole text, a fenced block or the first object.

    Tolerates ```json fences, prose around the JSON and ``<think>`` blocks.

    Raises:
        ValueError: no JSON value is found; the message gives the parser's complaint.
    """
    cleaned = _THINK.sub("", text).strip()
    if not cleaned:
        raise ValueError("the reply is empty")
    first_error: json.JSONDecodeError | None = None
    candidates = [match.strip() for match in _FENCE.findall(cleaned)] + [cleaned]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as error:
            first_error = first_error or error
    decoder = json.JSONDecoder()
    fallback: Any = None
    for match in re.finditer(r"[{\[]", cleaned):
        try:
            value, _ = decoder.raw_decode(cleaned, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
        if fallback is None:
            fallback = value
    if fallback is not None:
        return fallback
    detail = f" ({first_error.msg} at line {first_error.lineno} column {first_error.colno})"
    raise ValueError("the reply contains no valid JSON object" + (detail if first_error else ""))


def _message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


def _raw_text(message: BaseMessage | None) -> str:
    if message is None:
        return ""
    calls = getattr(message, "tool_calls", None) or []
    invalid = getattr(message, "invalid_tool_calls", None) or []
    if calls:
        return "\n".join(json.dumps(call.get("args"), default=str) for call in calls)
    if invalid:
        return "\n".join(str(call.get("args") or "") for call in invalid)
    return _message_text(message)


# -- validation ------------------------------------------------------------------------


def _describe_validation_error(error: ValidationError, schema: type[BaseModel]) -> str:
    items = error.errors()
    parts = []
    for item in items[:_MAX_ERRORS_SHOWN]:
        location = ".".join(str(part) for part in item.get("loc", ())) or "(root)"
        parts.append(f"{location}: {item.get('msg', 'invalid')}")
    more = f" (and {len(items) - _MAX_ERRORS_SHOWN} more)" if len(items) > _MAX_ERRORS_SHOWN else ""
    return f"the JSON does not match the schema {schema.__name__}: " + "; ".join(parts) + more


def _validate(data: Any, schema: type[T]) -> T:
    if isinstance(data, schema):
        return data
    if isinstance(data, BaseModel):
        data = data.model_dump()
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise _OutputError(_describe_validation_error(error, schema)) from error


def _tool_name(schema: type[BaseModel]) -> str:
    try:
        return str(convert_to_openai_tool(schema)["function"]["name"])
    except Exception:  # an unusual schema: the class name is the usual tool name
        return schema.__name__


def _parse_reply(message: BaseMessage | None, schema: type[T]) -> T:
    """The schema instance in a reply (tool-call arguments first, else JSON text)."""
    if message is None:
        raise _OutputError("the model returned no message")
    calls = getattr(message, "tool_calls", None) or []
    if calls:
        name = _tool_name(schema)
        call = next((c for c in calls if c.get("name") == name), calls[0])
        return _validate(call.get("args") or {}, schema)
    invalid = getattr(message, "invalid_tool_calls", None) or []
    if invalid:
        detail = invalid[0].get("error") or invalid[0].get("args")
        raise _OutputError(f"the tool call arguments are not valid JSON: {detail}")
    text = _message_text(message)
    if not text.strip():
        refusal = (getattr(message, "additional_kwargs", None) or {}).get("refusal")
        raise _OutputError(f"the model refused: {refusal}" if refusal else "the reply is empty")
    try:
        data = extract_json(text)
    except ValueError as error:
        raise _OutputError(str(error)) from error
    return _validate(data, schema)


# -- prompting -------------------------------------------------------------------------


def _schema_json(schema: type[BaseModel]) -> str:
    return json.dumps(schema.model_json_schema(), ensure_ascii=False)


def _instructions(schema: type[BaseModel]) -> str:
    return (
        "Answer with only a JSON object (no prose) that conforms to this JSON schema:\n"
        f"{_schema_json(schema)}"
    )


def _feedback(
    reply: BaseMessage | None, error: str, schema: type[BaseModel], method: Method
) -> list[BaseMessage]:
    """The reply plus the messages that show the model its error and ask again."""
    messages: list[BaseMessage] = []
    if reply is not None:
        messages.append(reply)
        calls = list(getattr(reply, "tool_calls", None) or [])
        calls += list(getattr(reply, "invalid_tool_calls", None) or [])
        for call in calls:  # every tool call needs an answer before the next user turn
            if call.get("id"):
                messages.append(ToolMessage(content=f"Error: {error}", tool_call_id=call["id"]))
    how = (
        f"call the `{_tool_name(schema)}` tool again with arguments"
        if method == "function_calling"
        else "answer again with only a JSON object (no prose)"
    )
    messages.append(
        HumanMessage(
            content=(
                f"Your previous reply could not be used: {error}\n"
                f"Please {how} that conform to this JSON schema:\n{_schema_json(schema)}"
            )
        )
    )
    return messages


# -- model binding ---------------------------------------------------------------------


def _supports_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


def _bind(model: BaseChatModel, schema: type[BaseModel], method: Method) -> tuple[Runnable, Method]:
    """A runnable for ``method``, or for the next method that this model supports."""
    if method == "text" or not _supports_tools(model):
        return model, "text"
    try:
        runnable = model.with_structured_output(schema, method=method, include_raw=True)
        return runnable, method
    except NotImplementedError:
        return model, "text"
    except (TypeError, ValueError) as error:
        if method != "function_calling":
            logger.warning("structured method %s unavailable (%s); using tools", method, error)
            return _bind(model, schema, "function_calling")
        logger.warning("tool calling unavailable (%s); asking for JSON text", error)
        return model, "text"


def reask_reserve(schema: type[BaseModel], counter: TokenCounter) -> int:
    """Tokens to keep free in a first prompt so that a re-ask fits once the earlier
    replies are dropped (the complaint carries the schema and the validator's words)."""
    return schema_tokens(schema, counter) + MESSAGE_OVERHEAD + _COMPLAINT_TOKENS


def _next_method(method: Method) -> Method | None:
    """The method to try when the server rejects ``method`` (None: nothing left)."""
    return {"json_schema": "function_calling", "json_mode": "function_calling"}.get(
        method, "text" if method == "function_calling" else None
    )  # type: ignore[return-value]


def _split_output(output: Any, schema: type[T]) -> tuple[BaseMessage | None, T | None, str | None]:
    """(reply, value, error) from whatever the runnable returned."""
    if isinstance(output, dict) and "raw" in output:
        reply = output.get("raw")
        parsed = output.get("parsed")
        if isinstance(parsed, schema):
            return reply, parsed, None
    elif isinstance(output, BaseMessage):
        reply = output
    elif isinstance(output, schema):
        return None, output, None
    else:
        return None, None, f"unexpected model output of type {type(output).__name__}"
    try:
        return reply, _parse_reply(reply, schema), None
    except _OutputError as error:
        return reply, None, str(error)


# -- method negotiation ----------------------------------------------------------------

#: (model class, endpoint, model name, requested method) -> the method the server accepted.
_NEGOTIATED: dict[tuple[str, str, str, str], Method] = {}
#: Endpoints that refused a re-ask carrying the model's tool call (llama-cpp-python
#: rejects the assistant message langchain-openai sends with ``content: null``): their
#: re-asks are sent compact from then on, instead of paying a failed request each time.
_COMPACT_REASKS: set[tuple[str, str, str, str]] = set()


def _endpoint_key(model: BaseChatModel, method: str) -> tuple[str, str, str, str]:
    base = str(getattr(model, "openai_api_base", None) or "")
    name = str(getattr(model, "model_name", None) or "")
    return type(model).__name__, base, name, method


def forget_negotiated_methods() -> None:
    """Forget which methods servers accepted (a server was reconfigured; tests)."""
    _NEGOTIATED.clear()
    _COMPACT_REASKS.clear()


# -- entry point -----------------------------------------------------------------------


def structured_options(llm_settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`invoke_structured` from dumped LLM settings
    (``Settings.llm.model_dump()``), with the same defaults everywhere."""
    return {
        "method": llm_settings.get("structured_method", "function_calling"),
        "reasks": int(llm_settings.get("reasks", 2)),
        "transport_retries": int(llm_settings.get("transport_retries", 2)),
        "backoff_s": float(llm_settings.get("backoff_s", 1.0)),
    }


class _Call:
    """The state of one :func:`invoke_structured` call (one decision)."""

    def __init__(self, model: BaseChatModel, schema: type[BaseModel], method: Method):
        self.model, self.schema = model, schema
        self.requested = method
        self.runnable, self.method = _bind(
            model, schema, _NEGOTIATED.get(_endpoint_key(model, method), method)
        )
        self.fallbacks: list[Fallback] = []
        self.raw_outputs: list[str] = []
        self.attempts = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.tally = current_tally()

    def count_request(self, reply: BaseMessage | None, counted: int | None) -> None:
        """Add one reply's tokens (the server's usage, else ``counted`` for the prompt)
        to this call and to the tally in scope."""
        reported = _usage_tokens(reply)
        prompt, completion = reported or (counted or 0, 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if self.tally is not None:
            self.tally.record(
                self.schema.__name__,
                prompt_tokens=prompt,
                completion_tokens=completion,
                reported=reported is not None,
            )

    def count_failed_request(self) -> None:
        """A request that got no reply: a call in the tally, without tokens."""
        if self.tally is not None:
            self.tally.record(self.schema.__name__, failed=True)

    def note(self, kind: FailureKind, action: str, detail: str, to: str | None = None) -> None:
        fallback = Fallback(
            kind=kind, action=action, detail=detail, method=self.method, to_method=to
        )
        logger.warning("structured %s: %s", self.schema.__name__, fallback.describe())
        self.fallbacks.append(fallback)

    def switch(self, to: Method) -> HumanMessage | None:
        """Use method ``to`` from now on (remembered for this endpoint); the message with
        the schema to add to the prompt when the new method does not carry it."""
        had_instructions = self.method in _NEEDS_INSTRUCTIONS
        self.runnable, self.method = _bind(self.model, self.schema, to)
        _NEGOTIATED[_endpoint_key(self.model, self.requested)] = self.method
        if self.method in _NEEDS_INSTRUCTIONS and not had_instructions:
            return HumanMessage(content=_instructions(self.schema))
        return None

    def result(
        self, value: Any = None, error: str | None = None, failure: FailureKind | None = None
    ):
        result_type = StructuredResult[self.schema]  # type: ignore[name-defined]
        return result_type(
            ok=value is not None,
            value=value,
            error=error,
            failure=failure,
            attempts=self.attempts,
            raw_outputs=self.raw_outputs,
            method=self.method,
            fallbacks=self.fallbacks,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )


def _usage_tokens(reply: BaseMessage | None) -> tuple[int, int] | None:
    """(prompt, completion) tokens from the response's ``usage``, when the server
    reported them (langchain-openai puts them in ``usage_metadata``)."""
    usage = getattr(reply, "usage_metadata", None) or {}
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or prompt <= 0:
        return None
    return prompt, completion if isinstance(completion, int) and completion > 0 else 0


def _compact(base: list[BaseMessage], conversation: list[BaseMessage]) -> list[BaseMessage]:
    """The original prompt and the latest complaint only (the re-ask history dropped)."""
    complaint = conversation[-1] if len(conversation) > len(base) else None
    return [*base, *([complaint] if isinstance(complaint, HumanMessage) else [])]


def invoke_structured(
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: type[T],
    *,
    method: str = "function_calling",
    reasks: int = 2,
    transport_retries: int = 2,
    backoff_s: float = 1.0,
    budget_tokens: int | None = None,
    counter: TokenCounter | None = None,
    check: Callable[[T], str | None] | None = None,
    config: RunnableConfig | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> StructuredResult[T]:
    """Ask ``model`` for a ``schema`` instance; handle each kind of failure by its kind.

    Args:
        model: any LangChain chat model.
        messages: the conversation; not modified.
        schema: a pydantic model class.
        method: ``function_calling`` (default), ``json_schema`` or ``json_mode``; or
            ``text`` to put the schema in the prompt and parse JSON from the reply.
        reasks: re-asks after a malformed, off-schema or ``check``-rejected reply.
        transport_retries: retries of a request that failed transiently.
        backoff_s: the first retry's delay; it doubles with each retry (capped at 30 s).
        budget_tokens: most tokens a request may take; a conversation over it is compacted
            once, else not sent (``over_budget``).
        counter: how tokens are counted (default: the server's tokenizer, else an estimate).
        check: semantic validation of a schema-valid value: a problem to show the model
            (it is asked again), or None when the value is usable.
        config: optional runnable config (callbacks, tags) for every call.
        sleep: how backoff waits (injectable for tests).

    Returns:
        A :class:`StructuredResult`; ``ok=False`` with ``error`` and ``failure`` when no
        usable value was obtained.
    """
    if method not in ("function_calling", "json_schema", "json_mode", "text"):
        raise ValueError(f"unknown structured output method {method!r}")
    call = _Call(model, schema, method)  # type: ignore[arg-type]
    base: list[BaseMessage] = list(messages)
    if call.method in _NEEDS_INSTRUCTIONS:
        base.append(HumanMessage(content=_instructions(schema)))
    conversation = list(base)
    if budget_tokens is not None and counter is None:
        counter = counter_for(model)
    reasked = streak = 0
    while True:
        if budget_tokens is not None and counter is not None:
            need = count_messages(conversation, counter)
            if call.method not in _NEEDS_INSTRUCTIONS:  # else the schema is in a message
                need += schema_tokens(schema, counter)
            if need > budget_tokens:
                if len(conversation) > len(base) + 1:
                    call.note(
                        FailureKind.OVER_BUDGET,
                        "compact",
                        f"the re-ask needs {need:,} tokens, over the budget of "
                        f"{budget_tokens:,}: the earlier replies are dropped",
                    )
                    conversation = _compact(base, conversation)
                    continue
                error = (
                    f"the prompt needs {need:,} tokens ({counter.name} count), over the "
                    f"budget of {budget_tokens:,}; not sent"
                )
                call.note(FailureKind.OVER_BUDGET, "give_up", error)
                return call.result(error=error, failure=FailureKind.OVER_BUDGET)
        call.attempts += 1
        try:
            output = call.runnable.invoke(conversation, config=config)
        except Exception as error:  # every failure is classified below, none is swallowed
            call.count_failed_request()
            kind = classify(error, call.method)
            detail = f"{type(error).__name__}: {server_message(error)}"
            if kind is FailureKind.TRANSIENT and streak < transport_retries:
                delay = min(MAX_BACKOFF_S, backoff_s * 2**streak)
                streak += 1
                call.note(
                    kind,
                    "retry",
                    f"{detail} (retry {streak}/{transport_retries} after {delay:.2g} s)",
                )
                sleep(delay)
                continue
            persistent_500 = status_of(error) == 500 and call.method in ("json_schema", "json_mode")
            if kind is FailureKind.METHOD_REJECTED or (
                kind is FailureKind.TRANSIENT and persistent_500
            ):
                if len(conversation) > len(base) + 1:
                    # The server may refuse the re-ask's shape (tool-call history), not the
                    # method: the prompt and the complaint alone first.
                    call.note(FailureKind.METHOD_REJECTED, "compact", detail)
                    _COMPACT_REASKS.add(_endpoint_key(call.model, ""))
                    conversation = _compact(base, conversation)
                    streak = 0
                    continue
                fallback = _next_method(call.method)
                if fallback is not None:
                    call.note(FailureKind.METHOD_REJECTED, "switch_method", detail, to=fallback)
                    added = call.switch(fallback)
                    if added is not None:
                        base.append(added)
                        conversation.append(added)
                    streak = 0
                    continue
            if kind is FailureKind.CONTEXT_OVERFLOW and len(conversation) > len(base) + 1:
                call.note(kind, "compact", detail)
                conversation = _compact(base, conversation)
                continue
            call.note(kind, "give_up", detail)
            return call.result(error=f"model call failed: {detail}", failure=kind)
        streak = 0
        reply, value, problem = _split_output(output, schema)
        call.raw_outputs.append(_raw_text(reply))
        counted = None
        if _usage_tokens(reply) is None and counter is not None:
            counted = count_messages(conversation, counter)
        call.count_request(reply, counted)
        if value is not None and check is not None:
            problem = check(value)
            value = None if problem else value
        if value is not None:
            return call.result(value=value)
        problem = problem or "invalid reply"
        if reasked >= reasks:
            call.note(FailureKind.MALFORMED, "give_up", problem)
            return call.result(error=problem, failure=FailureKind.MALFORMED)
        reasked += 1
        call.note(FailureKind.MALFORMED, "reask", f"{problem} ({reasked}/{reasks})")
        conversation.extend(_feedback(reply, problem, schema, call.method))
        if _endpoint_key(model, "") in _COMPACT_REASKS:
            call.note(
                FailureKind.METHOD_REJECTED,
                "compact",
                "this server refused a re-ask carrying the reply earlier: sent compact",
            )
            conversation = _compact(base, conversation)
