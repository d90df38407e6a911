"""Token budgets: count a prompt's tokens and fit optional context by relevance.

Why: a prompt that does not fit the model's context is answered with an HTTP 400 (or
silently cut by some servers), and the Developing Agent once pasted whole files (~8,000
tokens on the tiny sandbox). Every prompt is now assembled within a budget: required items
(the proposal, the failing evidence, the output schema) must fit, or the call is not made
and :class:`~agentx.llm.errors.PromptTooLarge` names what did not fit; optional context
(code spans, the repository map, memory cards) is added most relevant first until the
budget is spent, and what was left out is said in the prompt.

Tokens are counted with the server's own tokenizer when it offers one (llama.cpp's
``/extras/tokenize`` or ``/tokenize``, vLLM's ``/tokenize``), else estimated
conservatively (one token per three bytes: BPE tokenizers average three to four bytes a
token on English and code, so the estimate errs high).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import string
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlparse

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field

from agentx.llm.errors import PromptTooLarge

logger = logging.getLogger(__name__)

#: Bytes per token assumed by the estimate (low, so the count errs high).
BYTES_PER_TOKEN = 3.0
#: Tokens a chat template adds around each message (role markers, separators).
MESSAGE_OVERHEAD = 8
_TOKENIZE_TIMEOUT_S = 5.0


class TokenCounter(Protocol):
    """Counts the tokens of a text for one model."""

    name: str

    def count(self, text: str) -> int:
        """Tokens of ``text``."""
        ...


class EstimateCounter:
    """A conservative estimate for servers that report no tokenizer."""

    name = "estimate"

    def count(self, text: str) -> int:
        """``ceil(bytes / 3)``: errs high for BPE tokenizers on English and code."""
        return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


class ServerCounter:
    """The server's own tokenizer, through its tokenize endpoint (results cached)."""

    def __init__(self, url: str, body_key: str, model: str | None):
        self.url, self.body_key, self.model = url, body_key, model
        self.name = f"server ({urlparse(url).path})"
        self._fallback = EstimateCounter()
        self.count = functools.lru_cache(maxsize=4096)(self._count)  # type: ignore[method-assign]

    def _count(self, text: str) -> int:
        tokens = _tokenize(self.url, self.body_key, self.model, text)
        return self._fallback.count(text) if tokens is None else tokens


def _tokenize(url: str, key: str, model: str | None, text: str) -> int | None:
    import httpx

    body: dict[str, Any] = {key: text}
    if model:
        body["model"] = model
    try:
        response = httpx.post(url, json=body, timeout=_TOKENIZE_TIMEOUT_S)
        if response.status_code != 200:
            return None
        data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if isinstance(data, dict):
        if isinstance(data.get("count"), int):
            return int(data["count"])
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
    return None


#: (path below the server root, request key): llama-cpp-python, llama.cpp, vLLM.
_TOKENIZE_ROUTES = (
    ("/extras/tokenize", "input"),
    ("/tokenize", "content"),
    ("/tokenize", "prompt"),
)


@functools.lru_cache(maxsize=32)
def _server_counter(base_url: str, model: str | None) -> TokenCounter:
    parsed = urlparse(base_url)
    root = f"{parsed.scheme}://{parsed.netloc}"
    for path, key in _TOKENIZE_ROUTES:
        if _tokenize(root + path, key, model, "hello world") is not None:
            logger.info("llm: counting tokens with the server's tokenizer at %s", root + path)
            return ServerCounter(root + path, key, model)
    logger.info("llm: %s reports no tokenizer; estimating tokens", base_url)
    return EstimateCounter()


def forget_tokenizers() -> None:
    """Forget which servers offer a tokenizer (a server was replaced; tests)."""
    _server_counter.cache_clear()


def counter_for(model: BaseChatModel) -> TokenCounter:
    """The server's tokenizer for an OpenAI-compatible model with a base URL, else the estimate.

    OpenAI's own API has no tokenize endpoint; fakes have no server.
    """
    base_url = getattr(model, "openai_api_base", None)
    if isinstance(base_url, str) and base_url and "api.openai.com" not in base_url:
        return _server_counter(base_url, getattr(model, "model_name", None))
    return EstimateCounter()


def count_messages(messages: Sequence[BaseMessage], counter: TokenCounter) -> int:
    """Tokens of a conversation, with a per-message allowance for the chat template."""
    total = 0
    for message in messages:
        content = message.content
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        calls = getattr(message, "tool_calls", None) or []
        if calls:
            text += json.dumps([call.get("args") for call in calls], default=str)
        total += counter.count(text) + MESSAGE_OVERHEAD
    return total


def schema_tokens(schema: type[BaseModel], counter: TokenCounter) -> int:
    """Tokens the output schema adds to a request (as a tool, a format or instructions)."""
    return counter.count(json.dumps(schema.model_json_schema())) + MESSAGE_OVERHEAD


# -- fitting a template ----------------------------------------------------------------


class Context(BaseModel):
    """Optional context for one template field: pieces, most relevant first."""

    name: str
    pieces: list[str]
    joiner: str = "\n"
    empty: str = "(none)"


class BudgetReport(BaseModel):
    """How a prompt was fitted (kept in records so a reader sees what the model saw)."""

    budget: int
    tokens: int
    counter: str
    kept: dict[str, list[int]] = Field(
        default_factory=dict, description="Per optional field: [pieces kept, pieces offered]."
    )

    def cut(self) -> dict[str, int]:
        """Pieces left out per field (only fields that lost some)."""
        return {name: total - kept for name, (kept, total) in self.kept.items() if kept < total}


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def fit_template(
    template: str,
    required: dict[str, str],
    optional: list[Context],
    budget: int,
    counter: TokenCounter,
    overhead: int = 0,
) -> tuple[str, BudgetReport]:
    """Render ``template`` within ``budget`` tokens (``overhead`` = the rest of the request).

    Required fields are always rendered whole; optional fields get their pieces in the
    order given (most relevant first) while they fit, each field in the order listed, and
    say how many pieces were left out.

    Raises:
        PromptTooLarge: the template with its required fields alone exceeds the budget.
    """
    names = _fields(template)
    missing = names - set(required) - {o.name for o in optional}
    if missing:
        raise KeyError(f"template fields without a value: {', '.join(sorted(missing))}")
    empty = {o.name: o.empty for o in optional}
    base = counter.count(template.format(**required, **empty)) + overhead
    if base > budget:
        sizes = sorted(((counter.count(v), k) for k, v in required.items()), reverse=True)
        largest = ", ".join(f"{name} {tokens:,}" for tokens, name in sizes[:3])
        raise PromptTooLarge(
            f"the prompt's required items need {base:,} tokens but the budget is {budget:,} "
            f"(largest: {largest}; the rest of the request {overhead:,}): raise "
            "llm.context_tokens or llm.prompt_budget_tokens, or use a model with a longer context"
        )
    kept = {o.name: [list(o.pieces), len(o.pieces)] for o in optional}
    while True:
        remaining = budget - base
        values: dict[str, str] = {}
        for item in optional:
            chosen, left_out = [], 0
            for piece in kept[item.name][0]:
                cost = counter.count(piece) + 1
                if cost <= remaining:
                    chosen.append(piece)
                    remaining -= cost
                else:
                    left_out += 1
            left_out += int(kept[item.name][1]) - len(kept[item.name][0])
            text = item.joiner.join(chosen) if chosen else item.empty
            if left_out:
                text += f"\n({left_out} more left out to fit the token budget)"
            values[item.name] = text
            kept[item.name][0] = chosen
        prompt = template.format(**required, **values)
        tokens = counter.count(prompt) + overhead
        if tokens <= budget:
            break
        # Notes and joins cost more than the pieces alone: drop the least relevant piece kept.
        last = next((o for o in reversed(optional) if kept[o.name][0]), None)
        if last is None:
            break
        kept[last.name][0] = kept[last.name][0][:-1]
    report = BudgetReport(
        budget=budget,
        tokens=tokens,
        counter=counter.name,
        kept={o.name: [len(kept[o.name][0]), kept[o.name][1]] for o in optional},
    )
    return prompt, report


def prompt_budget(settings: dict[str, Any]) -> int:
    """Tokens a prompt may take under dumped LLM settings: the explicit budget, else the
    context minus the reply's ``max_tokens`` and a 5% margin for the template."""
    explicit = settings.get("prompt_budget_tokens")
    context = int(settings.get("context_tokens", 16_384))
    reply = int(settings.get("max_tokens", 2048))
    derived = int((context - reply) * 0.95)
    return min(int(explicit), derived) if explicit else derived
