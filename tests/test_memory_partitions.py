"""The memory's world partitions (issue 16): the same cards come back as from one collection
filtered by Chroma, and as from an exact cosine ranking; older stores are moved into
partitions; a card that changes world moves; other writers' new worlds are seen."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings

from agentx.memory.embedding import MiniLMEmbeddingFunction, embed_texts
from agentx.memory.partitions import partition_name, split_where
from agentx.memory.store import KnowledgeStore, card_document, open_store
from agentx.models import KnowledgeCard
from agentx.settings import EmbeddingSettings, MemorySettings

WORLDS = ["default", "fresh", "niche", "tiny", "/teams/a/world.json"]
TECHNIQUES = [
    ("mmr_rerank", "diversity", "Re-rank the slate for diversity with MMR."),
    ("freshness_channel", "freshness", "Add a candidate channel of fresh uploads."),
    ("embedding_dim", "embedding_size", "Double the item embedding dimension."),
    ("cache_warmup", "serving", "Warm the feature cache before traffic."),
    ("ips_debias", "debias", "Reweight clicks by inverse propensity."),
    ("candidate_pool", "retrieval", "Grow the candidate pool before ranking."),
]
DECISIONS = ["KEEP", "DISCARD", "EXTEND"]
QUERIES = [
    "more diverse recommendations",
    "fresh content for new uploads",
    "latency of serving",
    "position bias in click logs",
    "did a bigger embedding raise watch time?",
    "retrieve more candidates",
]
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"world": "tiny"},
    {"world": {"$eq": "/teams/a/world.json"}},
    {"world": {"$in": ["fresh", "niche"]}},
    {"$and": [{"world": "default"}, {"decision": "KEEP"}]},
    {"$and": [{"decision": "DISCARD"}, {"world": {"$in": ["tiny", "default"]}}]},
    {"decision": "EXTEND"},
    {"$or": [{"world": "tiny"}, {"decision": "KEEP"}]},
    {"world": {"$ne": "default"}},
    {"world": "no-such-world"},
]


def _client(path: Path) -> Any:
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )


def _cards(n: int) -> list[KnowledgeCard]:
    rng = np.random.default_rng(7)
    cards = []
    for i in range(n):
        technique, lever, summary = TECHNIQUES[i % len(TECHNIQUES)]
        world = WORLDS[int(rng.integers(len(WORLDS)))]
        decision = DECISIONS[int(rng.integers(len(DECISIONS)))]
        effect = float(rng.normal(0, 0.03))
        cards.append(
            KnowledgeCard(
                id=f"card-{i}",
                kind="playbook" if decision == "KEEP" else "counterexample",
                title=f"{technique} {decision.lower()} in {world}: {effect:+.2%}",
                text=f"{summary} Seen in run {i % 7}.",
                technique=technique,
                lever=lever,
                objective="watch_time",
                world=world,
                decision=decision,
                effect=effect,
            )
        )
    return cards


@pytest.fixture(scope="module")
def corpus() -> tuple[list[KnowledgeCard], np.ndarray]:
    cards = _cards(150)
    return cards, embed_texts([card_document(card) for card in cards])


def _one_collection(tmp_path: Path, cards: list[KnowledgeCard], vectors: np.ndarray) -> Any:
    """The layout before partitions: every card in one collection, filtered by Chroma."""
    collection = _client(tmp_path / "flat").get_or_create_collection(
        "flat", embedding_function=MiniLMEmbeddingFunction()
    )
    metadatas = [{**card.metadata(), "card_json": card.model_dump_json()} for card in cards]
    collection.upsert(
        ids=[c.id for c in cards], embeddings=list(vectors), metadatas=metadatas,
        documents=[card_document(c) for c in cards],
    )  # fmt: skip
    return collection


def _matches(card: KnowledgeCard, where: dict[str, Any] | None) -> bool:
    """A reference evaluation of the filters used here."""
    if where is None:
        return True
    [(key, value)] = where.items()
    if key == "$and":
        return all(_matches(card, clause) for clause in value)
    if key == "$or":
        return any(_matches(card, clause) for clause in value)
    field = getattr(card, key)
    if not isinstance(value, dict):
        return field == value
    [(operator, operand)] = value.items()
    return {
        "$eq": field == operand, "$ne": field != operand, "$in": field in operand,
    }[operator]  # fmt: skip


def test_split_where_lifts_only_a_conjunct_on_world() -> None:
    assert split_where(None) == (None, None)
    assert split_where({"world": "tiny"}) == ({"tiny"}, None)
    assert split_where({"world": {"$in": ["a", "b"]}}) == ({"a", "b"}, None)
    and_ = {"$and": [{"world": "a"}, {"decision": "KEEP"}, {"effect": {"$gt": 0}}]}
    assert split_where(and_) == ({"a"}, {"$and": [{"decision": "KEEP"}, {"effect": {"$gt": 0}}]})
    assert split_where({"$and": [{"world": {"$in": ["a", "b"]}}, {"world": "b"}]}) == ({"b"}, None)
    for untouched in ({"$or": [{"world": "a"}, {"decision": "KEEP"}]}, {"world": {"$ne": "a"}}):
        assert split_where(untouched) == (None, untouched)


def test_partition_names_are_valid_and_distinct() -> None:
    names = {partition_name("agentx_knowledge", world) for world in [*WORLDS, "Tiny", ""]}
    assert len(names) == len(WORLDS) + 2
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    for name in names:  # Chroma accepts every one
        client.get_or_create_collection(name)
        client.delete_collection(name)


def test_search_returns_the_same_cards_as_one_filtered_collection(
    tmp_path: Path, corpus: tuple[list[KnowledgeCard], np.ndarray]
) -> None:
    cards, vectors = corpus
    store = KnowledgeStore.from_client(
        _client(tmp_path / "parts"), "cards", MiniLMEmbeddingFunction()
    )
    store.upsert(cards, embeddings=list(vectors))
    assert store.count() == len(cards)
    assert len(store.worlds_collections()) == len(WORLDS)
    flat = _one_collection(tmp_path, cards, vectors)
    queries = embed_texts(QUERIES)
    for query, query_vector in zip(QUERIES, queries, strict=True):
        for where in FILTERS:
            for k in (1, 5, 12):
                hits = store.search(query, k=k, where=where)
                old = flat.query(query_embeddings=[query_vector], n_results=k, where=where)
                assert [h.card.id for h in hits] == old["ids"][0], (query, where, k)
                # and the exact answer: the k most cosine-similar matching cards
                allowed = [i for i, card in enumerate(cards) if _matches(card, where)]
                scores = vectors[allowed] @ query_vector
                exact = [cards[allowed[i]].id for i in np.argsort(-scores, kind="stable")[:k]]
                assert [h.card.id for h in hits] == exact, (query, where, k)
                assert [h.similarity for h in hits] == pytest.approx(
                    sorted(scores, reverse=True)[:k], abs=1e-4
                )
    for where in FILTERS:
        listed = {card.id for card in store.list(where=where)}
        assert listed == {card.id for card in cards if _matches(card, where)}, where


def test_a_store_written_before_partitions_is_moved_into_them(
    tmp_path: Path, corpus: tuple[list[KnowledgeCard], np.ndarray]
) -> None:
    cards, vectors = corpus
    old = _one_collection(tmp_path, cards, vectors)  # cards in the store's own collection
    store = KnowledgeStore.from_client(
        _client(tmp_path / "flat"), "flat", MiniLMEmbeddingFunction()
    )
    assert old.count() == 0
    assert store.count() == len(cards) and len(store.worlds_collections()) == len(WORLDS)
    assert {card.id for card in store.list()} == {card.id for card in cards}
    assert store.get("card-3") == cards[3]
    top = store.search(QUERIES[0], k=3, where={"world": "tiny"})
    assert top and all(hit.card.world == "tiny" for hit in top)


def test_a_card_that_changes_world_leaves_its_old_partition(tmp_path: Path) -> None:
    store = open_store(tmp_path, MemorySettings(), EmbeddingSettings())
    [card] = _cards(1)
    store.upsert([card.model_copy(update={"world": "tiny"})])
    store.upsert([card.model_copy(update={"world": "niche"})])
    assert store.count() == 1
    assert store.list(where={"world": "tiny"}) == []
    assert [c.world for c in store.list(where={"world": "niche"})] == ["niche"]
    store.delete(card.id)
    assert store.count() == 0


def test_another_writers_new_world_is_found_at_once(tmp_path: Path) -> None:
    name = f"shared_{uuid.uuid4().hex[:8]}"
    reader = KnowledgeStore.from_client(_client(tmp_path), name, MiniLMEmbeddingFunction())
    writer = KnowledgeStore.from_client(_client(tmp_path), name, MiniLMEmbeddingFunction())
    [first, second] = _cards(2)
    writer.upsert([first.model_copy(update={"world": "tiny"})])
    assert [hit.card.id for hit in reader.search(first.text, k=5)] == [first.id]
    writer.upsert([second.model_copy(update={"world": "a-world-nobody-used"})])
    assert {hit.card.id for hit in reader.search(second.text, k=5)} == {first.id, second.id}
    assert reader.count() == 2


class _CountingEmbedding(MiniLMEmbeddingFunction):
    calls = 0

    def __call__(self, input: Any) -> Any:
        type(self).calls += 1
        return super().__call__(input)


def test_a_repeated_query_is_embedded_once(tmp_path: Path) -> None:
    store = KnowledgeStore.from_client(_client(tmp_path), "cached", _CountingEmbedding())
    store.upsert(_cards(6))
    before = _CountingEmbedding.calls
    first = store.search("fresh content for new uploads", k=3)
    again = store.search("fresh content for new uploads", k=3, where={"world": "tiny"})
    other = store.search("latency of serving", k=3)
    assert _CountingEmbedding.calls - before == 2  # two distinct query texts
    assert first and other and all(hit.card.world == "tiny" for hit in again)
