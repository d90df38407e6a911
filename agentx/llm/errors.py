"""What went wrong with a model call, as a type: each kind has its own handling.

Why: one ``except Exception`` used to make a temporary 503 look like "the server rejects
function calling" (switching methods for nothing), left a context-overflow 400 unrecognised
(switching methods could not help), and turned a timeout into an implementation defect of
the experiment. :func:`classify` sorts every failure into one :class:`FailureKind`:

=================  ===============================================  =========================
kind               examples                                         handling
=================  ===============================================  =========================
transient          connection refused, timeout, 429, 500/502/503     retry with backoff
method_rejected    400/422/501 to ``response_format`` or ``tools``  compact a re-ask, else
                   (or a 500 naming a request validation error)    the next method
context_overflow   400 "exceeds the context window"                 compact the re-ask, else
                                                                    give up (infrastructure)
refused            401/403 (key), 404 (model name)                  give up (infrastructure)
over_budget        a required prompt item cannot fit the budget     not sent (infrastructure)
malformed          a reply that is not a valid, sensible instance   re-ask, then the offline
                                                                    policy for that decision
=================  ===============================================  =========================

Every kind but ``malformed`` is the infrastructure's fault, not the idea's or the code's:
the loop records such an experiment with root cause ``infrastructure`` (no memory card).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum

from pydantic import BaseModel, ValidationError


class FailureKind(StrEnum):
    """Why a model call or its reply could not be used."""

    TRANSIENT = "transient"
    METHOD_REJECTED = "method_rejected"
    CONTEXT_OVERFLOW = "context_overflow"
    REFUSED = "refused"
    OVER_BUDGET = "over_budget"
    MALFORMED = "malformed"

    @property
    def infrastructure(self) -> bool:
        """The server, the network or the configuration failed, not the model's answer."""
        return self is not FailureKind.MALFORMED


class Fallback(BaseModel):
    """One thing that did not go as asked, and what was done instead (kept for the trace).

    Attributes:
        kind: the failure that caused it.
        action: what was done: ``retry``, ``switch_method``, ``compact``, ``reask``,
            ``give_up`` or ``offline`` (the decision was taken by the offline policy).
        detail: the server's or validator's words, shortened.
        method: the structured-output method in use when it happened.
        to_method: the method switched to (``switch_method`` only).
    """

    kind: FailureKind
    action: str
    detail: str
    method: str | None = None
    to_method: str | None = None

    def describe(self) -> str:
        """One line for a trace event."""
        switch = f" -> {self.to_method}" if self.to_method else ""
        via = f" [{self.method}{switch}]" if self.method else ""
        return f"{self.kind.value}: {self.action}{via}: {self.detail}"


class LLMCallError(RuntimeError):
    """A model call failed; ``kind`` says how (never ``malformed``)."""

    kind: FailureKind = FailureKind.TRANSIENT

    def __init__(self, message: str, kind: FailureKind | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class TransientError(LLMCallError):
    """The network or the server failed for now (connection, timeout, 429, 5xx)."""

    kind = FailureKind.TRANSIENT


class MethodRejected(LLMCallError):
    """The server refuses the structured-output method (``response_format``, ``tools``)."""

    kind = FailureKind.METHOD_REJECTED


class ContextOverflow(LLMCallError):
    """The prompt does not fit the model's context window."""

    kind = FailureKind.CONTEXT_OVERFLOW


class ModelRefused(LLMCallError):
    """The server refuses the key or does not serve the model: a configuration error."""

    kind = FailureKind.REFUSED


class PromptTooLarge(LLMCallError):
    """A required prompt item cannot fit the token budget; the message names it."""

    kind = FailureKind.OVER_BUDGET


#: Words servers use for a prompt longer than the context (llama.cpp, vLLM, OpenAI, Ollama).
_OVERFLOW = re.compile(
    r"context[ _-]?(window|length|size)|n_ctx|maximum context|too many tokens|"
    r"prompt is too long|context_length_exceeded|input tokens exceed",
    re.IGNORECASE,
)
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: A server that validates requests itself and answers 500 for a shape it does not take
#: (llama-cpp-python refuses tool-call history this way): a rejection, not an outage.
_REQUEST_INVALID = re.compile(r"validation error|literal_error|extra_forbidden", re.IGNORECASE)
_REFUSED_STATUSES = frozenset({401, 402, 403, 404})


def status_of(error: BaseException) -> int | None:
    """The HTTP status of an API error, if it has one."""
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def server_message(error: BaseException, limit: int = 300) -> str:
    """The server's own error message when the body carries one, else ``str(error)``."""
    body = getattr(error, "body", None)
    text = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            text = str(inner["message"])
        elif isinstance(inner, str):
            text = inner
    text = (text or str(error) or type(error).__name__).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _is_overflow(error: BaseException) -> bool:
    from langchain_core.exceptions import ContextOverflowError

    if isinstance(error, ContextOverflowError | ContextOverflow):
        return True
    status = status_of(error)
    return status in (400, 413, 500) and bool(_OVERFLOW.search(server_message(error, 2000)))


def classify(error: BaseException, method: str) -> FailureKind:
    """The kind of a failed model call made with the structured-output ``method``.

    A 500 is transient here (retried); only when it persists does the caller treat it as
    a possible method rejection (llama.cpp answers 500 to ``json_schema``), see
    :func:`agentx.llm.structured.invoke_structured`.
    """
    import httpx
    import openai

    if isinstance(error, LLMCallError):
        return error.kind
    if _is_overflow(error):
        return FailureKind.CONTEXT_OVERFLOW
    if isinstance(error, openai.APIConnectionError | httpx.TransportError | TimeoutError):
        return FailureKind.TRANSIENT
    if isinstance(error, ConnectionError):
        return FailureKind.TRANSIENT
    status = status_of(error)
    if status is not None:
        if status == 500 and _REQUEST_INVALID.search(server_message(error, 2000)):
            return FailureKind.METHOD_REJECTED if method != "text" else FailureKind.REFUSED
        if status in _TRANSIENT_STATUSES:
            return FailureKind.TRANSIENT
        if status in _REFUSED_STATUSES:
            return FailureKind.REFUSED
        if method == "text":
            return FailureKind.REFUSED  # a plain chat request refused: nothing to switch to
        return FailureKind.METHOD_REJECTED
    if isinstance(error, ValidationError | json.JSONDecodeError):
        # The client's own parser choked (json_schema / json_mode replies): the mode is
        # unreliable on this server, which a method switch answers.
        return FailureKind.METHOD_REJECTED if method != "text" else FailureKind.MALFORMED
    return FailureKind.TRANSIENT
