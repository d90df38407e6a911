"""Experiment memory: knowledge cards in Chroma, searched by sentence embedding."""

from agentx.memory.embedding import (
    EmbeddingError,
    MiniLMEmbeddingFunction,
    OpenAICompatibleEmbeddingFunction,
    embed_texts,
    make_embedding_function,
)
from agentx.memory.store import (
    KnowledgeStore,
    MemoryStoreError,
    RetrievedCard,
    card_document,
    open_store,
)

__all__ = [
    "EmbeddingError",
    "KnowledgeStore",
    "MemoryStoreError",
    "MiniLMEmbeddingFunction",
    "OpenAICompatibleEmbeddingFunction",
    "RetrievedCard",
    "card_document",
    "embed_texts",
    "make_embedding_function",
    "open_store",
]
