"""What a caller may send to the served loop, checked before any work starts.

LangServe validates invoke/stream inputs against the runnable's input type, so making
that type a pydantic model with the goal check built in turns a goal the target cannot
measure into a 422 with the list of known metrics, instead of a 500 from inside the
graph. ``/batch`` is not validated by LangServe (a malformed body answers 500), so
:func:`check_batch_body` does it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentx.agents.brainstorm.intake import GoalError, parse_goal

MAX_BATCH = 16


class BadRequest(ValueError):
    """A request the server refuses; the message is shown to the caller as is."""

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message)
        self.status_code = status_code


def make_request_model(
    metrics: Sequence[str],
    guardrails: Sequence[str],
    *,
    default_goal: str,
    default_iterations: int,
    max_iterations: int,
) -> type[BaseModel]:
    """The input model of the loop route, closed over the target's metrics.

    Fields are plain (not nullable) with the server's settings as defaults: the
    playground's form cannot render ``anyOf [..., null]`` schemas, and a caller sees
    in ``/input_schema`` what an omitted field means.
    """
    known, guards = list(metrics), list(guardrails)

    class LoopRequest(BaseModel):
        """Start a run: a goal in plain words and a budget of experiments (both optional)."""

        model_config = ConfigDict(extra="forbid")

        goal_text: str = Field(
            default_goal, min_length=5, description="The optimisation goal, in plain words."
        )
        iterations: int = Field(
            default_iterations, ge=1, le=max_iterations, description="Experiments in this run."
        )
        answer: dict[str, Any] = Field(
            default_factory=dict,
            description="Empty to start a run. To continue a run paused at a human gate: a "
            'HumanResponse such as {"type": "accept"} or {"type": "response", "args": '
            '"why"}, sent with that run\'s configurable.thread_id.',
        )

        @field_validator("goal_text")
        @classmethod
        def _goal_is_measurable(cls, value: str) -> str:
            try:
                parse_goal(value, known, guards)
            except GoalError as error:
                raise ValueError(str(error)) from None
            return value

    return LoopRequest


def describe_validation(error: ValidationError, prefix: str = "") -> list[str]:
    """One readable line per problem, e.g. ``inputs[1].iterations: ...``."""
    lines = []
    for item in error.errors():
        where = prefix + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]
        ).lstrip(".")
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines


def new_thread_id() -> str:
    """A fresh run id for a request that names none (cards are keyed by it)."""
    return f"api-{uuid.uuid4().hex[:12]}"


def _explicit_iterations(request_input: Any) -> Any:
    return request_input.get("iterations") if isinstance(request_input, dict) else None


def check_run_body(body: Any, check_context: Callable[[Any, Any], Any]) -> None:
    """Check the run context an invoke or stream body's ``config.configurable`` names.

    A body that is not an object is left to LangServe, which refuses it itself.

    Raises:
        BadRequest: a context value the server cannot run (see :mod:`agentx.serve.context`).
    """
    if not isinstance(body, dict):
        return
    config = body.get("config")
    if isinstance(config, dict):
        check_context(config.get("configurable"), _explicit_iterations(body.get("input")))


def check_batch_body(
    body: Any,
    request_model: type[BaseModel],
    check_context: Callable[[Any, Any], Any] | None = None,
) -> dict[str, Any]:
    """Validate a ``/batch`` body and give each input its own config and run id.

    Returns the body to pass on: ``config`` becomes one config per input, each with a
    distinct ``configurable.thread_id``, so two inputs never share experiment ids; each
    input's run context is checked with ``check_context``.

    Raises:
        BadRequest: the body is malformed; the message says what to send instead.
    """
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object {"inputs": [...], "config": {...}}')
    unknown = sorted(set(body) - {"inputs", "config", "kwargs"})
    if unknown:
        raise BadRequest(f"unknown keys {unknown}; send only inputs, config and kwargs")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of loop inputs")
    if len(inputs) > MAX_BATCH:
        raise BadRequest(f"at most {MAX_BATCH} inputs per batch, got {len(inputs)}")
    problems: list[str] = []
    for index, item in enumerate(inputs):
        try:
            request_model.model_validate(item)
        except ValidationError as error:
            problems.extend(describe_validation(error, prefix=f"inputs[{index}]."))
    if problems:
        raise BadRequest("; ".join(problems))
    if any(isinstance(item, dict) and item.get("answer") for item in inputs):
        raise BadRequest("answer a gate with invoke (one run per request), not batch")
    config = body.get("config") or {}
    if isinstance(config, dict):
        configs = [_copy_config(config) for _ in inputs]
    elif isinstance(config, list) and all(isinstance(c, dict) for c in config):
        if len(config) != len(inputs):
            raise BadRequest(f"{len(config)} configs for {len(inputs)} inputs; send one per input")
        configs = [_copy_config(c) for c in config]
    else:
        raise BadRequest("'config' must be an object or a list of objects, one per input")
    seen: set[str] = set()
    for index, (item, request_input) in enumerate(zip(configs, inputs, strict=True)):
        configurable = item.setdefault("configurable", {})
        if not isinstance(configurable, dict):
            raise BadRequest("'config.configurable' must be an object")
        if check_context is not None:
            try:
                check_context(configurable, _explicit_iterations(request_input))
            except BadRequest as error:
                raise BadRequest(f"inputs[{index}]: {error}") from None
        thread_id = str(configurable.setdefault("thread_id", new_thread_id()))
        if thread_id in seen:
            raise BadRequest(f"thread_id {thread_id!r} is used twice in one batch")
        seen.add(thread_id)
    return {**body, "config": configs}


def check_ids_unused(configs: Sequence[dict[str, Any]], registered: Collection[str]) -> None:
    """Refuse a batch (409) naming a run id the workspace already has, before any of its
    runs is registered: LangServe registers a batch's runs one config at a time, so a
    refusal at the second would leave the first registered and never run.

    Raises:
        BadRequest: 409, naming every taken id and its input.
    """
    taken = [
        f"inputs[{index}]: run id {thread_id!r}"
        for index, config in enumerate(configs)
        if (thread_id := str((config.get("configurable") or {}).get("thread_id"))) in registered
    ]
    if taken:
        raise BadRequest(
            f"{'; '.join(taken)} already exists in this workspace; nothing was started "
            "(omit configurable.thread_id for a fresh one)",
            status_code=409,
        )


def _copy_config(config: dict[str, Any]) -> dict[str, Any]:
    copy = dict(config)
    if isinstance(copy.get("configurable"), dict):
        copy["configurable"] = dict(copy["configurable"])
    return copy
