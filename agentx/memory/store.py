"""The experiment memory: knowledge cards in a Chroma collection.

Agents use only :class:`KnowledgeStore`, so the embedded store (a ``PersistentClient``
under the workspace) and a Chroma server (``memory.chroma_url``) are interchangeable.
Each card is stored with its flat :meth:`KnowledgeCard.metadata` (filterable with
Chroma's ``where`` syntax) plus its full JSON under ``card_json``, so a card read back
equals the card written.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb import Documents, EmbeddingFunction
from chromadb.config import Settings as ChromaSettings
from pydantic import BaseModel, Field, ValidationError

from agentx.memory import partitions
from agentx.memory.embedding import make_embedding_function
from agentx.models import KnowledgeCard
from agentx.settings import EmbeddingSettings, MemorySettings, Settings

logger = logging.getLogger(__name__)

CARD_JSON_KEY = "card_json"
#: Query embeddings kept per store (a query is one short text; 256 of them are ~400 KB).
QUERY_CACHE_SIZE = 256


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
    """Knowledge cards in Chroma, one collection per world, searched by sentence embedding.

    The collection named in the settings (the *anchor*) holds the embedding function's
    configuration; each world's cards live in a partition beside it
    (:mod:`agentx.memory.partitions`), so a search for one world is a plain vector search.
    Partitions are discovered on the client at each call that spans worlds, so cards that
    another worker adds (even for a new world) are found at once.

    Build one with :func:`open_store` (from settings) or :meth:`from_client`.
    """

    def __init__(
        self,
        client: Any,
        anchor: Any,
        embedding_function: EmbeddingFunction[Documents],
        max_batch_size: int | None = None,
    ) -> None:
        self._client = client
        self._anchor = anchor
        self._embedding_function = embedding_function
        self._max_batch_size = max_batch_size if max_batch_size and max_batch_size > 0 else None
        self._space = self.space or "cosine"
        self._partitions: dict[str, Any] = {}
        self._query_vectors: OrderedDict[str, Any] = OrderedDict()

    @classmethod
    def from_client(
        cls, client: Any, collection_name: str, embedding_function: EmbeddingFunction[Documents]
    ) -> KnowledgeStore:
        """Open (or create) ``collection_name`` and its world partitions on a Chroma ``client``.

        The embedding function's name and config are persisted with a new collection
        (and its default space, cosine, is used). Reopening a collection with a
        different embedding function raises :class:`MemoryStoreError`. Cards of a
        store written before partitioning (all in the anchor) are moved into partitions.
        """
        try:
            anchor = client.get_or_create_collection(
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
        store = cls(client, anchor, embedding_function, max_batch_size)
        store._move_unpartitioned()
        return store

    # -- introspection -------------------------------------------------------

    @property
    def name(self) -> str:
        """The store's (anchor collection's) name."""
        return str(self._anchor.name)

    @property
    def embedding_function_name(self) -> str | None:
        """Name of the embedding function persisted with the collection."""
        config = self._anchor.configuration_json or {}
        ef = config.get("embedding_function") or {}
        return ef.get("name")

    @property
    def space(self) -> str | None:
        """Distance space of the collection's vector index (``cosine`` when we made it)."""
        config = self._anchor.configuration_json or {}
        for key in ("hnsw", "spann"):
            section = config.get(key) or {}
            if section.get("space"):
                return str(section["space"])
        return None

    def worlds_collections(self) -> list[str]:
        """Names of the partitions on the client now (one per world with cards)."""
        return sorted(self._partition_handles())

    # -- partitions ----------------------------------------------------------

    def _partition(self, world: str, create: bool) -> Any | None:
        """``world``'s collection (created on the first write; None for a reader if absent)."""
        name = partitions.partition_name(self.name, world)
        handle = self._partitions.get(name)
        if handle is not None:
            return handle
        try:
            if create:
                handle = self._client.get_or_create_collection(
                    name=name, embedding_function=self._embedding_function
                )
            else:
                handle = self._client.get_collection(
                    name=name, embedding_function=self._embedding_function
                )
        except Exception as error:
            if not create and _not_found(error):
                return None
            raise MemoryStoreError(f"cannot open memory partition {name!r}: {error}") from error
        self._partitions[name] = handle
        return handle

    def _partition_handles(self) -> dict[str, Any]:
        """Every partition of this store on the client now, by name."""
        try:
            names = [getattr(c, "name", c) for c in self._client.list_collections()]
        except Exception as error:
            raise MemoryStoreError(f"cannot list memory partitions: {error}") from error
        found = {}
        for name in sorted(n for n in names if partitions.is_partition(self.name, str(n))):
            if name not in self._partitions:
                try:
                    self._partitions[name] = self._client.get_collection(
                        name=name, embedding_function=self._embedding_function
                    )
                except Exception as error:
                    if _not_found(error):  # deleted between the listing and now
                        continue
                    raise MemoryStoreError(
                        f"cannot open memory partition {name!r}: {error}"
                    ) from error
            found[name] = self._partitions[name]
        return found

    def _targets(self, worlds: set[str] | None) -> list[Any]:
        """The partitions a read for ``worlds`` (None: all) must look in."""
        if worlds is None:
            return list(self._partition_handles().values())
        handles = [self._partition(world, create=False) for world in sorted(worlds)]
        return [handle for handle in handles if handle is not None]

    def _move_unpartitioned(self) -> None:
        """Move cards written into the anchor (by a version before partitions) to their
        worlds, vectors included; upsert first, delete after, so a crash loses nothing."""
        try:
            if not self._anchor.count():
                return
            while True:
                batch = self._anchor.get(
                    limit=self._max_batch_size or 5000,
                    include=["embeddings", "metadatas", "documents"],
                )
                if not batch["ids"]:
                    return
                self._write(
                    list(batch["ids"]),
                    list(batch["embeddings"]),
                    list(batch["metadatas"]),
                    list(batch["documents"]),
                )
                self._anchor.delete(ids=list(batch["ids"]))
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(
                f"cannot move the cards of {self.name!r} into world partitions: {error}"
            ) from error

    # -- writes --------------------------------------------------------------

    def upsert(
        self, cards: Sequence[KnowledgeCard], embeddings: Sequence[Any] | None = None
    ) -> None:
        """Insert or replace ``cards`` by id (idempotent).

        All cards are validated and embedded before anything is written, so an invalid
        batch writes nothing. Within a batch, the last card with a given id wins; a card
        whose world changed leaves its old world's partition. (Batches beyond Chroma's
        maximum batch size, thousands of cards, are written in several calls.)

        Args:
            embeddings: the cards' vectors when already computed with this store's
                embedding function (a bulk import); embedded here when None.

        Raises:
            MemoryStoreError: a card is invalid, embedding failed or Chroma failed.
        """
        valid = _validate_cards(cards)
        if not valid:
            return
        if embeddings is not None and len(embeddings) != len(valid):
            raise MemoryStoreError(
                f"{len(embeddings)} embeddings for {len(valid)} cards, nothing written"
            )
        by_id: dict[str, tuple[KnowledgeCard, Any]] = {}
        for position, card in enumerate(valid):
            by_id.pop(card.id, None)
            by_id[card.id] = (card, None if embeddings is None else embeddings[position])
        ids = list(by_id)
        documents = [card_document(card) for card, _ in by_id.values()]
        metadatas = [_card_metadata(card) for card, _ in by_id.values()]
        if embeddings is None:
            try:
                vectors = list(self._embedding_function(documents))
            except Exception as error:
                raise MemoryStoreError(
                    f"cannot embed {len(ids)} cards, nothing written: {error}"
                ) from error
        else:
            vectors = [vector for _, vector in by_id.values()]
        self._write(ids, vectors, metadatas, documents)
        logger.debug("memory: upserted %d cards", len(ids))

    def _write(
        self,
        ids: list[str],
        vectors: list[Any],
        metadatas: list[Any],
        documents: list[Any],
    ) -> None:
        """Upsert rows into their worlds' partitions and drop the ids from the others."""
        groups: dict[str, list[int]] = {}
        for row, metadata in enumerate(metadatas):
            groups.setdefault(str((metadata or {}).get("world", "")), []).append(row)
        try:
            for world, rows in groups.items():
                partition = self._partition(world, create=True)
                limit = self._max_batch_size or len(rows)
                for start in range(0, len(rows), limit):
                    chunk = rows[start : start + limit]
                    partition.upsert(
                        ids=[ids[i] for i in chunk],
                        embeddings=[vectors[i] for i in chunk],
                        metadatas=[metadatas[i] for i in chunk],
                        documents=[documents[i] for i in chunk],
                    )
            written = {partitions.partition_name(self.name, world) for world in groups}
            for name, handle in self._partition_handles().items():
                if name not in written:  # the same id under another world: moved
                    handle.delete(ids=ids)
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(f"cannot write {len(ids)} cards to memory: {error}") from error

    def delete(self, ids: str | Sequence[str]) -> None:
        """Remove the cards with these ids (unknown ids are ignored)."""
        id_list = [ids] if isinstance(ids, str) else list(ids)
        if not id_list:
            return
        try:
            for handle in self._partition_handles().values():
                handle.delete(ids=id_list)
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(f"cannot delete cards {id_list}: {error}") from error

    # -- reads ---------------------------------------------------------------

    def count(self) -> int:
        """Number of cards in the store."""
        try:
            return sum(int(handle.count()) for handle in self._partition_handles().values())
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(f"cannot count memory cards: {error}") from error

    def get(self, card_id: str) -> KnowledgeCard | None:
        """The card with ``card_id``, or None."""
        try:
            for handle in self._partition_handles().values():
                result = handle.get(ids=[card_id], include=["metadatas"])
                for found_id, metadata in zip(
                    result["ids"], result["metadatas"] or [], strict=False
                ):
                    if found_id == card_id:
                        return _card_from_metadata(found_id, metadata)
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(f"cannot read card {card_id!r}: {error}") from error
        return None

    def _query_vector(self, query: str) -> Any:
        """The query's embedding, from a small per-store cache (agents repeat their
        queries: the goal is searched before every experiment)."""
        vector = self._query_vectors.get(query)
        if vector is None:
            vector = self._embedding_function([query])[0]
            self._query_vectors[query] = vector
            if len(self._query_vectors) > QUERY_CACHE_SIZE:
                self._query_vectors.popitem(last=False)
        else:
            self._query_vectors.move_to_end(query)
        return vector

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
        worlds, rest = partitions.split_where(where)
        rows: list[tuple[float, str, Any]] = []
        try:
            targets = self._targets(worlds)
            if not targets:
                return []
            vector = self._query_vector(query)
            for handle in targets:
                result = handle.query(
                    query_embeddings=[vector],
                    n_results=k,
                    where=rest,
                    include=["metadatas", "distances"],
                )
                ids = (result.get("ids") or [[]])[0]
                metadatas = (result.get("metadatas") or [[]])[0] or []
                distances = (result.get("distances") or [[]])[0] or []
                rows.extend(
                    (float(distance), card_id, metadata)
                    for card_id, metadata, distance in zip(ids, metadatas, distances, strict=False)
                )
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(f"memory search failed ({query!r}, {where}): {error}") from error
        found: list[RetrievedCard] = []
        for distance, card_id, metadata in sorted(rows, key=lambda row: row[:2])[:k]:
            card = _card_from_metadata(card_id, metadata)
            if card is None:
                continue
            similarity = _similarity(distance, self._space)
            found.append(RetrievedCard(card=card, similarity=similarity))
        return found

    def list(
        self, where: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[KnowledgeCard]:
        """Cards matching ``where`` (all when None), world by world in store order, at most
        ``limit``."""
        if limit is not None and limit <= 0:
            return []
        worlds, rest = partitions.split_where(where)
        cards: list[KnowledgeCard] = []
        try:
            for handle in self._targets(worlds):
                wanted = None if limit is None else limit - len(cards)
                result = handle.get(where=rest, limit=wanted, include=["metadatas"])
                for card_id, metadata in zip(
                    result["ids"], result["metadatas"] or [], strict=False
                ):
                    card = _card_from_metadata(card_id, metadata)
                    if card is not None:
                        cards.append(card)
                if limit is not None and len(cards) >= limit:
                    break
        except MemoryStoreError:
            raise
        except Exception as error:
            raise MemoryStoreError(f"cannot list memory cards ({where}): {error}") from error
        return cards


def _not_found(error: Exception) -> bool:
    """True for Chroma's "collection does not exist" (its class differs by client)."""
    return type(error).__name__ == "NotFoundError" or "does not exist" in str(error)


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
