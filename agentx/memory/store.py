"""The experiment memory: knowledge cards in a Chroma collection.

Agents use only :class:`KnowledgeStore`, so the embedded store (a ``PersistentClient``
under the workspace) and a Chroma server (``memory.chroma_url``) are interchangeable.
Each card is stored with its flat :meth:`KnowledgeCard.metadata` (filterable with
Chroma's ``where`` syntax) plus its full JSON under ``card_json``, so a card read back
equals the card written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb import Documents, EmbeddingFunction
from chromadb.config import Settings as ChromaSettings
from pydantic import BaseModel, Field, ValidationError

from agentx.memory.embedding import make_embedding_function
from agentx.models import KnowledgeCard
from agentx.settings import EmbeddingSettings, MemorySettings, Settings

logger = logging.getLogger(__name__)

CARD_JSON_KEY = "card_json"


class MemoryStoreError(RuntimeError):
    """The memory store failed; the message says which operation and why."""


class RetrievedCard(BaseModel):
    """A card found by :meth:`KnowledgeStore.search` and how close it is to the query."""

    card: KnowledgeCard
    similarity: float = Field(ge=-1.0, le=1.0, description="1 - cosine distance.")


def card_document(card: KnowledgeCard) -> str:
    """The text of ``card`` that is embedded and searched."""
    return f"{card.title}\n{card.text}\nlever: {card.lever}; technique: {card.technique}"


def _card_metadata(card: KnowledgeCard) -> dict[str, str | int | float | bool]:
    metadata = card.metadata()
    metadata[CARD_JSON_KEY] = card.model_dump_json()
    return metadata


def _validate_cards(cards: Iterable[Any]) -> list[KnowledgeCard]:
    """Re-validate every card (also ones built with ``model_construct`` or mutated)."""
    valid: list[KnowledgeCard] = []
    problems: list[str] = []
    for position, card in enumerate(cards):
        try:
            if isinstance(card, KnowledgeCard):
                data: Any = card.model_dump()
            elif isinstance(card, Mapping):
                data = dict(card)
            else:
                raise TypeError(f"expected a KnowledgeCard, got {type(card).__name__}")
            checked = KnowledgeCard.model_validate(data)
            if not checked.id.strip():
                raise ValueError("card id is empty")
            checked.metadata()  # params must serialise to JSON
            valid.append(checked)
        except (ValidationError, TypeError, ValueError) as error:
            card_id = getattr(card, "id", None) or (
                card.get("id") if isinstance(card, Mapping) else None
            )
            detail = str(error).splitlines()
            problems.append(f"card #{position} ({card_id!r}): {' '.join(detail[:4])}")
    if problems:
        raise MemoryStoreError("invalid knowledge cards, nothing written: " + "; ".join(problems))
    return valid


def _card_from_metadata(card_id: str, metadata: Mapping[str, Any] | None) -> KnowledgeCard | None:
    raw = (metadata or {}).get(CARD_JSON_KEY)
    if not isinstance(raw, str):
        logger.warning("memory entry %s has no %s; skipped", card_id, CARD_JSON_KEY)
        return None
    try:
        return KnowledgeCard.model_validate_json(raw)
    except ValidationError as error:
        logger.warning("memory entry %s holds an invalid card; skipped: %s", card_id, error)
        return None


class KnowledgeStore:
    """Knowledge cards in one Chroma collection, searched by sentence embedding.

    Build one with :func:`open_store` (from settings) or :meth:`from_client`.
    """

    def __init__(
        self,
        collection: Any,
        embedding_function: EmbeddingFunction[Documents],
        max_batch_size: int | None = None,
    ) -> None:
        self._collection = collection
        self._embedding_function = embedding_function
        self._max_batch_size = max_batch_size if max_batch_size and max_batch_size > 0 else None
        self._space = self.space or "cosine"

    @classmethod
    def from_client(
        cls, client: Any, collection_name: str, embedding_function: EmbeddingFunction[Documents]
    ) -> KnowledgeStore:
        """Open (or create) ``collection_name`` on a Chroma ``client``.

        The embedding function's name and config are persisted with a new collection
        (and its default space, cosine, is used). Reopening a collection with a
        different embedding function raises :class:`MemoryStoreError`.
        """
        try:
            collection = client.get_or_create_collection(
                name=collection_name, embedding_function=embedding_function
            )
        except Exception as error:
            raise MemoryStoreError(
                f"cannot open memory collection {collection_name!r}: {error}"
            ) from error
        try:
            max_batch_size: int | None = int(client.get_max_batch_size())
        except Exception:  # a client without the call: no known limit
            max_batch_size = None
        return cls(collection, embedding_function, max_batch_size)

    # -- introspection -------------------------------------------------------

    @property
    def collection(self) -> Any:
        """The underlying Chroma collection."""
        return self._collection

    @property
    def embedding_function_name(self) -> str | None:
        """Name of the embedding function persisted with the collection."""
        config = self._collection.configuration_json or {}
        ef = config.get("embedding_function") or {}
        return ef.get("name")

    @property
    def space(self) -> str | None:
        """Distance space of the collection's vector index (``cosine`` when we made it)."""
        config = self._collection.configuration_json or {}
        for key in ("hnsw", "spann"):
            section = config.get(key) or {}
            if section.get("space"):
                return str(section["space"])
        return None

    # -- writes --------------------------------------------------------------

    def upsert(self, cards: Sequence[KnowledgeCard]) -> None:
        """Insert or replace ``cards`` by id (idempotent).

        All cards are validated and embedded before anything is written, and the write
        is one Chroma call, so an invalid batch writes nothing. Within a batch, the
        last card with a given id wins. (Batches beyond Chroma's maximum batch size,
        thousands of cards, are written in several calls.)

        Raises:
            MemoryStoreError: a card is invalid, embedding failed or Chroma failed.
        """
        valid = _validate_cards(cards)
        if not valid:
            return
        by_id: dict[str, KnowledgeCard] = {}
        for card in valid:
            by_id.pop(card.id, None)
            by_id[card.id] = card
        ids = list(by_id)
        documents = [card_document(card) for card in by_id.values()]
        metadatas = [_card_metadata(card) for card in by_id.values()]
        try:
            embeddings = self._embedding_function(documents)
        except Exception as error:
            raise MemoryStoreError(
                f"cannot embed {len(ids)} cards, nothing written: {error}"
            ) from error
        try:
            limit = self._max_batch_size or len(ids)
            for start in range(0, len(ids), limit):
                stop = start + limit
                self._collection.upsert(
                    ids=ids[start:stop],
                    embeddings=embeddings[start:stop],
                    metadatas=metadatas[start:stop],  # type: ignore[arg-type]
                    documents=documents[start:stop],
                )
        except Exception as error:
            raise MemoryStoreError(f"cannot write {len(ids)} cards to memory: {error}") from error
        logger.debug("memory: upserted %d cards", len(ids))

    def delete(self, ids: str | Sequence[str]) -> None:
        """Remove the cards with these ids (unknown ids are ignored)."""
        id_list = [ids] if isinstance(ids, str) else list(ids)
        if not id_list:
            return
        try:
            self._collection.delete(ids=id_list)
        except Exception as error:
            raise MemoryStoreError(f"cannot delete cards {id_list}: {error}") from error

    # -- reads ---------------------------------------------------------------

    def count(self) -> int:
        """Number of cards in the store."""
        try:
            return int(self._collection.count())
        except Exception as error:
            raise MemoryStoreError(f"cannot count memory cards: {error}") from error

    def get(self, card_id: str) -> KnowledgeCard | None:
        """The card with ``card_id``, or None."""
        try:
            result = self._collection.get(ids=[card_id], include=["metadatas"])
        except Exception as error:
            raise MemoryStoreError(f"cannot read card {card_id!r}: {error}") from error
        for found_id, metadata in zip(result["ids"], result["metadatas"] or [], strict=False):
            if found_id == card_id:
                return _card_from_metadata(found_id, metadata)
        return None

    def search(
        self, query: str, k: int = 5, where: dict[str, Any] | None = None
    ) -> list[RetrievedCard]:
        """The ``k`` cards most similar to ``query``, most similar first.

        Args:
            query: free text (a lever, a hypothesis, a goal).
            k: how many cards at most.
            where: a Chroma metadata filter over :meth:`KnowledgeCard.metadata` keys,
                e.g. ``{"world": "default"}`` or ``{"$and": [{...}, {...}]}``.
        """
        if k <= 0 or not query.strip():
            return []
        try:
            result = self._collection.query(
                query_texts=[query],
                n_results=k,
                where=where or None,
                include=["metadatas", "distances"],
            )
        except Exception as error:
            raise MemoryStoreError(f"memory search failed ({query!r}, {where}): {error}") from error
        ids = (result.get("ids") or [[]])[0]
        metadatas = (result.get("metadatas") or [[]])[0] or []
        distances = (result.get("distances") or [[]])[0] or []
        found: list[RetrievedCard] = []
        for card_id, metadata, distance in zip(ids, metadatas, distances, strict=False):
            card = _card_from_metadata(card_id, metadata)
            if card is None:
                continue
            similarity = _similarity(float(distance), self._space)
            found.append(RetrievedCard(card=card, similarity=similarity))
        return found

    def list(
        self, where: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[KnowledgeCard]:
        """Cards matching ``where`` (all when None), in store order, at most ``limit``."""
        if limit is not None and limit <= 0:
            return []
        try:
            result = self._collection.get(where=where or None, limit=limit, include=["metadatas"])
        except Exception as error:
            raise MemoryStoreError(f"cannot list memory cards ({where}): {error}") from error
        cards = []
        for card_id, metadata in zip(result["ids"], result["metadatas"] or [], strict=False):
            card = _card_from_metadata(card_id, metadata)
            if card is not None:
                cards.append(card)
        return cards


def _similarity(distance: float, space: str) -> float:
    """Cosine similarity from a Chroma distance (vectors are unit length)."""
    # cosine: 1 - cos; ip: 1 - dot; l2: squared distance = 2 - 2 cos.
    similarity = 1.0 - distance / 2.0 if space == "l2" else 1.0 - distance
    return max(-1.0, min(1.0, similarity))


def _chroma_settings() -> ChromaSettings:
    return ChromaSettings(anonymized_telemetry=False)


def _http_client(url: str) -> Any:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise MemoryStoreError(f"memory.chroma_url must look like http://host:port, got {url!r}")
    if parsed.path not in ("", "/"):
        raise MemoryStoreError(f"memory.chroma_url must not have a path, got {url!r}")
    ssl = parsed.scheme == "https"
    port = parsed.port or (443 if ssl else 8000)
    try:
        return chromadb.HttpClient(
            host=parsed.hostname, port=port, ssl=ssl, settings=_chroma_settings()
        )
    except Exception as error:
        raise MemoryStoreError(f"cannot reach the Chroma server at {url}: {error}") from error


def open_store(
    workspace: Path, memory: MemorySettings, embeddings: EmbeddingSettings
) -> KnowledgeStore:
    """Open the knowledge store the settings describe.

    A Chroma server when ``memory.chroma_url`` is set, else an embedded persistent
    store in ``workspace / "memory"``.

    Raises:
        MemoryStoreError: the store cannot be opened (bad URL, server down, a collection
            built with another embedding function, ...).
    """
    try:
        embedding_function = make_embedding_function(embeddings)
    except ValueError as error:
        raise MemoryStoreError(str(error)) from error
    if memory.chroma_url:
        client = _http_client(memory.chroma_url)
        where = memory.chroma_url
    else:
        path = Path(workspace) / "memory"
        try:
            path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(path), settings=_chroma_settings())
        except Exception as error:
            raise MemoryStoreError(f"cannot open the memory store at {path}: {error}") from error
        where = str(path)
    store = KnowledgeStore.from_client(client, memory.collection, embedding_function)
    logger.info("memory: %s/%s (%d cards)", where, memory.collection, store.count())
    return store


def open_memory(settings: Settings) -> KnowledgeStore:
    """The experiment memory of ``settings``' workspace (what the agents retrieve from).

    Example:
        >>> from agentx import load_settings, open_memory  # doctest: +SKIP
        >>> memory = open_memory(load_settings(workspace=".agentx-run"))
        >>> [hit.card.title for hit in memory.search("fresh items", k=3)]
    """
    return open_store(settings.workspace, settings.memory, settings.embeddings)
