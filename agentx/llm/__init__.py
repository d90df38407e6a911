"""LLM access: the chat model from settings and validated structured output."""

from agentx.llm.factory import LLMConfigError, make_chat_model
from agentx.llm.structured import StructuredResult, extract_json, invoke_structured

__all__ = [
    "LLMConfigError",
    "StructuredResult",
    "extract_json",
    "invoke_structured",
    "make_chat_model",
]
