"""Structured output from any chat model, with validation and re-asking.

:func:`invoke_structured` asks a chat model for an instance of a pydantic schema and
never raises for bad output: it validates the reply, shows the model its validation
error and the JSON schema, and asks again (``max_retries`` times), then gives up with
``ok=False``. It works with

- models that support tool calling (``ChatOpenAI`` and friends): the request goes
  through ``with_structured_output(schema, method=..., include_raw=True)``; if the server
  rejects ``json_schema``/``json_mode`` (an HTTP error, or a reply its client cannot
  parse), it falls back once to ``function_calling``, and if the server rejects tools
  too, once more to plain text (the schema in the prompt, JSON parsed from the reply);
- any other chat model (e.g. langchain-core's fakes): plain text with the schema in
  the prompt. Tool calls in a reply are used whenever present.

With ``text`` and ``json_mode`` (whose requests do not carry the schema) one
HumanMessage with the JSON schema is appended to the conversation.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Generic, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, ValidationError

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

Method = Literal["function_calling", "json_schema", "json_mode", "text"]

#: HTTP statuses that say nothing about the structured-output method (no fallback).
_NO_FALLBACK_STATUSES = frozenset({401, 402, 403, 404, 408, 409, 429})
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
        attempts: model calls made (re-asks and method fallbacks included).
        raw_outputs: each reply as text (tool-call arguments as JSON), in order.
        method: how the last request asked for structure (``text`` = schema in prompt).
        call_failed: the model call itself failed (server down, timeout, refused), as
            opposed to a reply that was malformed: the first is the infrastructure's fault,
            the second the model's, and the loop treats them differently.
    """

    ok: bool
    value: T | None = None
    error: str | None = None
    attempts: int = 0
    raw_outputs: list[str] = Field(default_factory=list)
    method: str | None = None
    call_failed: bool = False


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


def _next_method(method: Method, error: Exception) -> Method | None:
    """The method to fall back to after ``error``, or None when it is not a rejection."""
    if method == "text" or "ContextOverflow" in type(error).__name__:
        return None
    status = getattr(error, "status_code", None)
    rejected = isinstance(status, int) and status >= 400 and status not in _NO_FALLBACK_STATUSES
    if method in ("json_schema", "json_mode"):
        # A reply the client-side parser choked on also means the mode is unreliable.
        unparsable = isinstance(error, ValidationError | json.JSONDecodeError)
        return "function_calling" if rejected or unparsable else None
    return "text" if rejected else None


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


# -- entry point -----------------------------------------------------------------------


def structured_options(llm_settings: dict[str, Any]) -> dict[str, Any]:
    """``method`` and ``max_retries`` for :func:`invoke_structured` from dumped LLM settings
    (``Settings.llm.model_dump()``), with the same defaults everywhere."""
    return {
        "method": llm_settings.get("structured_method", "function_calling"),
        "max_retries": int(llm_settings.get("max_retries", 2)),
    }


def invoke_structured(
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: type[T],
    *,
    method: str = "function_calling",
    max_retries: int = 2,
    config: RunnableConfig | None = None,
) -> StructuredResult[T]:
    """Ask ``model`` for a ``schema`` instance; re-ask on malformed output.

    Args:
        model: any LangChain chat model.
        messages: the conversation; not modified.
        schema: a pydantic model class.
        method: ``function_calling`` (default), ``json_schema`` or ``json_mode``; or
            ``text`` to put the schema in the prompt and parse JSON from the reply.
        max_retries: re-asks after a malformed or off-schema reply.
        config: optional runnable config (callbacks, tags) for every call.

    Returns:
        A :class:`StructuredResult`; ``ok=False`` with ``error`` after ``max_retries``
        re-asks, or when the model call itself fails (after the client's own retries).
    """
    result_type = StructuredResult[schema]  # type: ignore[valid-type]
    if method not in ("function_calling", "json_schema", "json_mode", "text"):
        raise ValueError(f"unknown structured output method {method!r}")
    runnable, current = _bind(model, schema, method)  # type: ignore[arg-type]
    conversation: list[BaseMessage] = list(messages)
    if current in _NEEDS_INSTRUCTIONS:
        conversation.append(HumanMessage(content=_instructions(schema)))
    raw_outputs: list[str] = []
    attempts = 0
    reasks = 0
    while True:
        attempts += 1
        logger.debug("structured %s: attempt %d via %s", schema.__name__, attempts, current)
        try:
            output = runnable.invoke(conversation, config=config)
        except Exception as error:
            fallback = _next_method(current, error)
            if fallback is not None:
                logger.warning(
                    "structured %s: server rejected %s (%s); falling back to %s",
                    schema.__name__,
                    current,
                    _short(error),
                    fallback,
                )
                had_instructions = current in _NEEDS_INSTRUCTIONS
                runnable, current = _bind(model, schema, fallback)
                if current in _NEEDS_INSTRUCTIONS and not had_instructions:
                    conversation.append(HumanMessage(content=_instructions(schema)))
                continue
            message = f"model call failed: {type(error).__name__}: {_short(error)}"
            logger.warning("structured %s: %s", schema.__name__, message)
            return result_type(
                ok=False,
                error=message,
                attempts=attempts,
                raw_outputs=raw_outputs,
                method=current,
                call_failed=True,
            )
        reply, value, problem = _split_output(output, schema)
        raw_outputs.append(_raw_text(reply))
        if value is not None:
            logger.debug("structured %s: valid after %d attempt(s)", schema.__name__, attempts)
            return result_type(
                ok=True, value=value, attempts=attempts, raw_outputs=raw_outputs, method=current
            )
        if reasks >= max_retries:
            logger.warning(
                "structured %s: giving up after %d attempt(s): %s",
                schema.__name__,
                attempts,
                problem,
            )
            return result_type(
                ok=False, error=problem, attempts=attempts, raw_outputs=raw_outputs, method=current
            )
        reasks += 1
        logger.info(
            "structured %s: malformed reply (%s); re-asking (%d/%d)",
            schema.__name__,
            problem,
            reasks,
            max_retries,
        )
        conversation.extend(_feedback(reply, problem or "invalid reply", schema, current))


def _short(error: Exception, limit: int = 500) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."
