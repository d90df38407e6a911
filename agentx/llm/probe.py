"""One cheap call to the configured model before a run starts.

Why: every agent falls back to the offline policy when a model call fails (a run must
not die mid-experiment on one bad reply), so an endpoint that is down, a wrong model
name, or a server that refuses the configured structured-output method used to show up
only as 46 s of abandoned experiments and exit code 0. Asking once, up front, with no
retries and the same method the agents will use, turns that into one line.

A reply that is not valid for the probe's schema is *not* a failure: the server
accepted the method, and small models answering badly is what re-asking is for.
"""

from __future__ import annotations

from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from agentx.llm.factory import LLMConfigError, make_chat_model
from agentx.settings import LLMSettings

#: Seconds the probe waits at most (the configured timeout when shorter).
PROBE_TIMEOUT_S = 30.0


class LLMUnavailable(RuntimeError):
    """The configured model cannot serve this run; the message says what to change."""


class Probe(BaseModel):
    """A one-field answer: enough to exercise the structured-output method."""

    ok: bool = Field(description="Always true.")


def _where(settings: LLMSettings) -> str:
    return f"{settings.model!r} at {settings.base_url or 'the OpenAI API'}"


def check_model(settings: LLMSettings) -> None:
    """Call the model once with the configured structured-output method.

    Raises:
        LLMUnavailable: the endpoint is unreachable, refuses the key or the model name,
            or rejects the structured-output method.
    """
    import openai

    if not settings.enabled:
        return
    probe_settings = settings.model_copy(
        update={"transport_retries": 0, "timeout_s": min(settings.timeout_s, PROBE_TIMEOUT_S)}
    )
    try:
        model = make_chat_model(probe_settings)
    except LLMConfigError as error:
        raise LLMUnavailable(str(error)) from None
    if model is None:
        return
    method = settings.structured_method
    runnable = model.with_structured_output(Probe, method=method, include_raw=True)
    try:
        runnable.invoke([HumanMessage(content='Reply with {"ok": true}.')])
    except (openai.APIConnectionError, openai.APITimeoutError) as error:
        raise LLMUnavailable(
            f"the model endpoint for {_where(settings)} is unreachable ({error}); "
            "check AGENTX_LLM__BASE_URL or unset AGENTX_LLM__MODEL for the offline policy"
        ) from None
    except openai.APIStatusError as error:
        detail = _message(error)
        if error.status_code in (401, 403):
            raise LLMUnavailable(
                f"{_where(settings)} refused the API key (HTTP {error.status_code}: {detail}); "
                "check AGENTX_LLM__API_KEY"
            ) from None
        if error.status_code == 404:
            raise LLMUnavailable(
                f"{_where(settings)} does not serve that model (HTTP 404: {detail}); "
                "check AGENTX_LLM__MODEL and AGENTX_LLM__BASE_URL"
            ) from None
        raise LLMUnavailable(
            f"{_where(settings)} rejects the structured output method {method!r} "
            f"(HTTP {error.status_code}: {detail}); set AGENTX_LLM__STRUCTURED_METHOD "
            "to another of json_schema, function_calling, json_mode"
        ) from None
    except ValueError:
        return  # the reply did not fit the probe's schema: the method itself works


def _message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
    return str(error)[:200]
