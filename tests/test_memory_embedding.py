"""The offline MiniLM embedding and the Chroma embedding-function contract."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from chromadb.utils.embedding_functions import (
    config_to_embedding_function,
    known_embedding_functions,
)
from llm_stub import JsonHandler, base_url, stub_server
from pydantic import SecretStr

from agentx.memory import embedding as embedding_module
from agentx.memory.embedding import (
    DIMENSION,
    MiniLMEmbeddingFunction,
    OpenAICompatibleEmbeddingFunction,
    embed_texts,
    make_embedding_function,
)
from agentx.settings import EmbeddingSettings


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embed_texts_shape_norm_and_order() -> None:
    texts = [
        "short",
        "a considerably longer sentence about recommender systems and watch time " * 3,
        "medium length text about diversity",
    ]
    vectors = embed_texts(texts)
    assert vectors.shape == (3, DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Batching sorts by length internally; rows must still follow the input order and
    # match one-at-a-time embeddings.
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(embed_texts([text])[0], vector, atol=1e-4)
    assert embed_texts([]).shape == (0, DIMENSION)


def test_long_text_is_truncated_not_rejected() -> None:
    vector = embed_texts(["word " * 2000])
    assert vector.shape == (1, DIMENSION)
    assert np.isfinite(vector).all()


def test_paraphrases_are_closer_than_unrelated_sentences() -> None:
    a, b, c, d = embed_texts(
        [
            "Diversity re-ranking hurt return visits.",
            "Re-ranking results for more variety made users come back less often.",
            "A larger embedding size improved offline recall.",
            "The cafeteria serves lunch at noon.",
        ]
    )
    paraphrase = _cos(a, b)
    assert paraphrase > _cos(a, c) + 0.1
    assert paraphrase > _cos(a, d) + 0.2
    assert _cos(c, d) < 0.3


def test_minilm_function_is_registered_and_round_trips_config() -> None:
    ef = MiniLMEmbeddingFunction()
    assert known_embedding_functions[ef.name()] is MiniLMEmbeddingFunction
    assert ef.default_space() == "cosine"
    assert not ef.is_legacy()
    rebuilt = config_to_embedding_function({"name": ef.name(), "config": ef.get_config()})
    assert isinstance(rebuilt, MiniLMEmbeddingFunction)
    vectors = rebuilt(["hello world"])
    assert len(vectors) == 1 and len(vectors[0]) == DIMENSION


def test_make_embedding_function_defaults_to_minilm() -> None:
    assert isinstance(make_embedding_function(EmbeddingSettings()), MiniLMEmbeddingFunction)


def test_openai_embedding_function_config_has_no_secret() -> None:
    settings = EmbeddingSettings(
        provider="openai",
        model="text-embedding-3-small",
        base_url="http://127.0.0.1:9/v1",
        api_key=SecretStr("sk-very-secret"),
    )
    ef = make_embedding_function(settings)
    assert isinstance(ef, OpenAICompatibleEmbeddingFunction)
    assert known_embedding_functions[ef.name()] is OpenAICompatibleEmbeddingFunction
    config = ef.get_config()
    assert config["model"] == "text-embedding-3-small"
    assert config["base_url"] == "http://127.0.0.1:9/v1"
    assert "sk-very-secret" not in repr(config)
    assert ef.default_space() == "cosine"
    # Rebuilding from the persisted config needs no key and makes no request.
    rebuilt = config_to_embedding_function({"name": ef.name(), "config": config})
    assert isinstance(rebuilt, OpenAICompatibleEmbeddingFunction)
    assert rebuilt.get_config() == config


def test_openai_provider_requires_a_model() -> None:
    with pytest.raises(ValueError, match="embeddings.model"):
        make_embedding_function(EmbeddingSettings(provider="openai"))


def test_model_loads_once_and_is_thread_safe() -> None:
    texts = [f"experiment {i} changed the ranking lever" for i in range(8)]
    expected = embed_texts(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: embed_texts(texts), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)
    assert embedding_module._load() is embedding_module._load()


def test_openai_compatible_embeddings_against_a_stub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    seen: list[tuple[str, dict[str, Any], str | None]] = []

    class Handler(JsonHandler):
        def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            seen.append((path, body, self.headers.get("Authorization")))
            data = [
                {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, 0.0]}
                for i, text in enumerate(body["input"])
            ]
            usage = {"prompt_tokens": 1, "total_tokens": 1}
            return 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}

    with stub_server(Handler) as server:
        settings = EmbeddingSettings(
            provider="openai",
            model="nomic-embed",
            base_url=base_url(server),
            api_key=SecretStr("sk-stub"),
        )
        vectors = make_embedding_function(settings)(["ab", "abcd"])
    assert [list(v) for v in vectors] == [[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]]
    path, body, auth = seen[0]
    assert path == "/v1/embeddings"
    assert body["model"] == "nomic-embed"
    assert body["input"] == ["ab", "abcd"]  # text, not token ids
    assert auth == "Bearer sk-stub"
