"""What model calls cost: requests and prompt/completion tokens, tallied per decision.

Why: a run in LLM mode pays per request and per token, and docs/llm.md reports the
measured cost of an experiment against a real server. Every request
:func:`~agentx.llm.structured.invoke_structured` sends is recorded here: the tokens come
from the ``usage`` block of the OpenAI-compatible response when the server reports one
(``reported``), else the prompt is counted with the call's token counter and the
completion is unknown (0). A request that failed before any reply (refused connection,
timeout, HTTP error) counts as a call and a failed one, with no tokens.

The tally is scoped with :func:`tally_usage` through a context variable, so concurrent
runs in one process (each in its own context) keep their own counts; LangGraph copies the
context into the threads that run its nodes, and the tally object is shared across those
copies (it is locked).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pydantic import BaseModel, Field


class CallUsage(BaseModel):
    """Requests and tokens of one decision kind (or of all of them)."""

    calls: int = Field(0, description="Requests sent (retries and re-asks included).")
    failed: int = Field(0, description="Requests that got no reply (transport or HTTP error).")
    reported: int = Field(0, description="Replies whose tokens the server reported.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    largest_prompt: int = Field(0, description="The most prompt tokens of one request.")

    def add(self, other: CallUsage) -> None:
        """Add ``other``'s counts to this one (the largest prompt is the larger one)."""
        for name in type(self).model_fields:
            if name == "largest_prompt":
                self.largest_prompt = max(self.largest_prompt, other.largest_prompt)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def per(self, n: int) -> dict[str, float]:
        """Each count divided by ``n`` (e.g. per experiment); ``n`` must be positive."""
        if n <= 0:
            raise ValueError("divide by a positive count")
        fields = [name for name in type(self).model_fields if name != "largest_prompt"]
        return {name: getattr(self, name) / n for name in fields}


class UsageTally:
    """Model-call usage of one scope (a run), by decision (the answer schema's name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_decision: dict[str, CallUsage] = {}

    def record(
        self,
        decision: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        reported: bool = False,
        failed: bool = False,
    ) -> None:
        """One request of ``decision`` and its tokens."""
        one = CallUsage(
            calls=1,
            failed=int(failed),
            reported=int(reported),
            prompt_tokens=max(0, prompt_tokens),
            completion_tokens=max(0, completion_tokens),
            largest_prompt=max(0, prompt_tokens),
        )
        with self._lock:
            self._by_decision.setdefault(decision, CallUsage()).add(one)

    def by_decision(self) -> dict[str, CallUsage]:
        """A copy of the counts per decision, by name."""
        with self._lock:
            return {name: usage.model_copy() for name, usage in sorted(self._by_decision.items())}

    def total(self) -> CallUsage:
        """The counts of every decision together."""
        total = CallUsage()
        for usage in self.by_decision().values():
            total.add(usage)
        return total


_CURRENT: ContextVar[UsageTally | None] = ContextVar("agentx_llm_usage", default=None)


@contextmanager
def tally_usage() -> Iterator[UsageTally]:
    """Tally every model request made inside the ``with`` block (this context and the
    contexts copied from it)."""
    tally = UsageTally()
    token = _CURRENT.set(tally)
    try:
        yield tally
    finally:
        _CURRENT.reset(token)


def current_tally() -> UsageTally | None:
    """The tally in scope, or None when nobody is counting."""
    return _CURRENT.get()
