"""The chat model the agents use, built from :class:`~agentx.settings.LLMSettings`.

Any OpenAI-compatible server works (OpenAI, vLLM, llama.cpp, LM Studio, Ollama, ...):
set ``llm.model`` and, for a non-OpenAI server, ``llm.base_url``. No model name means
the offline policy and :func:`make_chat_model` returns None.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlparse

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agentx.settings import LLMSettings

logger = logging.getLogger(__name__)

#: Hosts that take only ``max_completion_tokens`` (OpenAI itself).
_OPENAI_HOSTS = frozenset({"api.openai.com"})
#: Placeholder key for local servers that need none (the OpenAI client insists on one).
_NO_KEY = "not-needed"


class LLMConfigError(ValueError):
    """The LLM settings cannot produce a chat model; the message says why."""


def is_openai_endpoint(base_url: str | None) -> bool:
    """True for OpenAI's own API (no base URL, or api.openai.com)."""
    if not base_url:
        return True
    return (urlparse(base_url).hostname or "").lower() in _OPENAI_HOSTS


def make_chat_model(settings: LLMSettings) -> BaseChatModel | None:
    """A ``ChatOpenAI`` for the configured endpoint, or None when no model is set.

    ``ChatOpenAI`` sends the token bound only as ``max_completion_tokens``, which
    llama.cpp-style servers ignore; for any endpoint other than OpenAI's the same
    bound is also sent as ``max_tokens`` (through ``extra_body``), so every reply is
    bounded. Such endpoints are also pinned to ``/chat/completions`` (never the
    Responses API, which compatible servers rarely implement).

    Raises:
        LLMConfigError: the chat model cannot be created (e.g. OpenAI without a key).
    """
    if not settings.enabled:
        logger.info("llm: no model configured; using the offline policy")
        return None
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {
        "model": settings.model,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "timeout": settings.timeout_s,
        # Transport retries are :func:`~agentx.llm.structured.invoke_structured`'s, with
        # backoff and a record of each; the client's own would hide them and multiply.
        "max_retries": 0,
    }
    api_key: SecretStr | None = settings.api_key
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    if not is_openai_endpoint(settings.base_url):
        kwargs["extra_body"] = {"max_tokens": settings.max_tokens}
        kwargs["use_responses_api"] = False
        if api_key is None and not os.environ.get("OPENAI_API_KEY"):
            api_key = SecretStr(_NO_KEY)
    if api_key is not None:
        kwargs["api_key"] = api_key
    try:
        model = ChatOpenAI(**kwargs)
    except Exception as error:
        raise LLMConfigError(
            f"cannot create the chat model {settings.model!r}"
            f" at {settings.base_url or 'the OpenAI API'}: {error}"
        ) from error
    logger.info(
        "llm: %s at %s (max_tokens=%d, temperature=%s)",
        settings.model,
        settings.base_url or "the OpenAI API",
        settings.max_tokens,
        settings.temperature,
    )
    return model
