"""A served run's own context: world, seed, budget and policy values in its ``configurable``.

LangServe passes no LangGraph ``context=``, so a request names its run's context in
``config.configurable`` (``{"configurable": {"world": "tiny", "seed": 3}}``), which the
graph reads as its fallback (:mod:`agentx.graph.context`). Two things make that work:

- the served runnable declares the :class:`~agentx.graph.context.RunContext` fields as
  configurable (:func:`context_specs`), so LangServe keeps them (it drops configurable keys
  a runnable does not declare) and ``/config_schema`` and the playground show them;
- :func:`check_context` refuses a bad value with one line (422) before any run starts or
  is registered: a wrong type or range, a world that is not shipped (a remote caller may
  not make the server read a file of its choice), stages longer than the world simulates,
  or ``iterations`` given twice with two values.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.runnables import ConfigurableFieldSpec
from pydantic import ValidationError

from agentx.graph.context import ContextError, RunContext, effective_settings
from agentx.graph.resources import check_stages_fit
from agentx.sandbox.world import WorldError, load_world, shipped_worlds
from agentx.serve.requests import BadRequest, describe_validation
from agentx.settings import Settings
from agentx.target.contract import TargetError

WHERE = "config.configurable."

#: Checks a request's ``configurable`` (and the iterations its input names, if any).
ContextCheck = Callable[[Any, Any], RunContext | None]


def _plain(annotation: Any) -> Any:
    """``int | None`` -> ``int`` (the playground's form cannot render nullable fields)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation


def context_specs() -> list[ConfigurableFieldSpec]:
    """The run id and the run-context fields as configurable fields (unset: a fresh id,
    the server's settings)."""
    run_id = ConfigurableFieldSpec(
        id="thread_id",
        annotation=str,
        name="thread_id",
        description="The run's id; unset: a fresh api-... id. An id already used in the "
        "workspace is refused; with an answer, the id of the paused run.",
        default=None,
    )
    return [run_id] + [
        ConfigurableFieldSpec(
            id=name,
            annotation=_plain(field.annotation),
            name=name,
            description=f"{field.description} Unset: the server's setting.",
            default=None,
        )
        for name, field in RunContext.model_fields.items()
    ]


def picked_context(configurable: Any) -> dict[str, Any]:
    """The run-context values ``configurable`` sets (unset and null ones left out)."""
    if not isinstance(configurable, Mapping):
        return {}
    return {
        name: configurable[name]
        for name in RunContext.model_fields
        if configurable.get(name) is not None
    }


def context_conflicts(configurable: Any, stored: Any) -> list[str]:
    """One line per context value of ``configurable`` that differs from a run's ``stored``
    settings (its record's, or the context in its state); identical values are no conflict.

    Why: a gate answer continues a paused run, which keeps the world, seed and budget it
    started with; a request that also names other values must hear so, not be run quietly
    with the stored ones. Values that are not valid at all are left to the context check.
    """
    if isinstance(stored, RunContext):
        stored = stored.model_dump()
    picked = picked_context(configurable)
    if not picked or not isinstance(stored, Mapping):
        return []
    try:
        asked = RunContext.model_validate(picked).overrides()
    except ValidationError:
        return []
    return [
        f"{WHERE}{name} is {value!r} but the run's {name} is {stored[name]!r}"
        for name, value in asked.items()
        if stored.get(name) is not None and stored[name] != value
    ]


def make_context_check(settings: Settings) -> ContextCheck:
    """A :data:`ContextCheck` against the server's base ``settings``."""
    shipped = set(shipped_worlds())

    def check(configurable: Any, explicit_iterations: Any = None) -> RunContext | None:
        """The run's context (None when it sets nothing), or :class:`BadRequest`."""
        if configurable is not None and not isinstance(configurable, Mapping):
            raise BadRequest("config.configurable must be an object")
        picked = picked_context(configurable)
        if not picked:
            return None
        try:
            context = RunContext.model_validate(picked)
        except ValidationError as error:
            raise BadRequest("; ".join(describe_validation(error, WHERE))) from None
        if context.world is not None and context.world not in shipped | {settings.world}:
            raise BadRequest(
                f"{WHERE}world: unknown world {context.world!r}; a served run may choose a "
                f"shipped world: {', '.join(sorted(shipped))}"
            )
        if (
            context.iterations is not None
            and explicit_iterations is not None
            and explicit_iterations != context.iterations
        ):
            raise BadRequest(
                f"iterations given twice: input.iterations {explicit_iterations} and "
                f"{WHERE}iterations {context.iterations}; send one"
            )
        try:
            run_settings = effective_settings(settings, context)
            if context.world is not None and context.world != settings.world:
                check_stages_fit(run_settings, load_world(context.world))
        except ContextError as error:
            raise BadRequest("; ".join(WHERE + p for p in error.problems) or str(error)) from None
        except (WorldError, TargetError) as error:
            raise BadRequest(f"{WHERE}world: {error}") from None
        return context

    return check
