"""One agent decision by a model: a prompt fitted to the token budget, then a structured call.

Every agent asks through :func:`ask`, so every prompt is budgeted the same way (see
:mod:`agentx.llm.budget`) and every failure comes back as a typed
:class:`~agentx.llm.structured.StructuredResult` instead of an exception: a prompt whose
required items cannot fit is not sent and comes back as ``over_budget``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from agentx.llm.budget import (
    MESSAGE_OVERHEAD,
    Context,
    counter_for,
    fit_template,
    prompt_budget,
    schema_tokens,
)
from agentx.llm.errors import FailureKind, Fallback, PromptTooLarge
from agentx.llm.structured import (
    StructuredResult,
    invoke_structured,
    reask_reserve,
    structured_options,
)

T = TypeVar("T", bound=BaseModel)


def ask(
    model: BaseChatModel,
    system: str,
    template: str,
    schema: type[T],
    settings: dict[str, Any],
    *,
    required: dict[str, str],
    optional: list[Context] | None = None,
    check: Callable[[T], str | None] | None = None,
) -> StructuredResult[T]:
    """Fit ``template`` to the budget of ``settings`` and ask ``model`` for a ``schema``.

    Args:
        model: the chat model.
        system: the system prompt (always sent whole).
        template: the user prompt, a ``str.format`` template.
        schema: the pydantic model of the answer.
        settings: dumped LLM settings (``Settings.llm.model_dump()``).
        required: template fields that must be sent whole.
        optional: template fields filled most relevant piece first while they fit.
        check: semantic validation of an answer (a problem, or None when usable).

    Returns:
        The structured result; its ``budget`` says how the prompt was fitted.
    """
    counter = counter_for(model)
    budget = prompt_budget(settings)
    # The rest of the request: the system prompt, the schema (as a tool, a format or an
    # instruction message, whichever the method needs) and room for one re-ask.
    overhead = (
        counter.count(system)
        + 2 * MESSAGE_OVERHEAD
        + schema_tokens(schema, counter)
        + reask_reserve(schema, counter)
    )
    try:
        prompt, report = fit_template(
            template, required, optional or [], budget, counter, overhead=overhead
        )
    except PromptTooLarge as error:
        result_type = StructuredResult[schema]  # type: ignore[valid-type]
        fallback = Fallback(kind=FailureKind.OVER_BUDGET, action="give_up", detail=str(error))
        return result_type(
            ok=False, error=str(error), failure=FailureKind.OVER_BUDGET, fallbacks=[fallback]
        )
    result = invoke_structured(
        model,
        [SystemMessage(system), HumanMessage(prompt)],
        schema,
        budget_tokens=budget,
        counter=counter,
        check=check,
        **structured_options(settings),
    )
    result.budget = report
    return result
