"""The knowledge store on a real Chroma (embedded, and a `chroma run` server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings
from servers import chroma_server as start_chroma
from servers import free_port

from agentx.memory.embedding import MiniLMEmbeddingFunction
from agentx.memory.partitions import partition_name
from agentx.memory.store import (
    KnowledgeStore,
    MemoryStoreError,
    RetrievedCard,
    open_store,
)
from agentx.models import KnowledgeCard
from agentx.settings import EmbeddingSettings, MemorySettings

MINILM = MiniLMEmbeddingFunction.name()


def make_card(card_id: str, **overrides: Any) -> KnowledgeCard:
    fields: dict[str, Any] = {
        "id": card_id,
        "kind": "playbook",
        "title": f"Card {card_id}",
        "text": "A generic experiment outcome.",
        "technique": "generic",
        "lever": "generic",
        "params": {"alpha": 0.5},
        "objective": "watch_time",
        "world": "default",
        "decision": "KEEP",
        "effect": 0.01,
    }
    fields.update(overrides)
    return KnowledgeCard(**fields)


LEVER_CARDS = [
    make_card(
        "diversity",
        kind="counterexample",
        title="Diversity re-ranking hurt return visits",
        text="MMR re-ranking for more diverse recommendations lowered active days by 1.4%; "
        "watch time did not move.",
        technique="mmr_rerank",
        lever="diversity",
        params={"lambda": 0.7},
        decision="DISCARD",
        effect=-0.014,
        root_cause="guardrail_harm",
    ),
    make_card(
        "embedding",
        title="Larger embedding size raised watch time",
        text="Doubling the item embedding dimension from 32 to 64 improved watch time by 2%.",
        technique="embedding_dim",
        lever="embedding_size",
        params={"dim": 64},
        effect=0.02,
    ),
    make_card(
        "cache",
        title="Serving cache warm-up cut latency",
        text="Warming the feature cache before traffic reduced p99 latency by 30 ms.",
        technique="cache_warmup",
        lever="serving",
    ),
    make_card(
        "recency",
        title="Recency boost for fresh uploads",
        text="Boosting items uploaded in the last day raised clicks on new content.",
        technique="recency_boost",
        lever="freshness",
        world="other",
    ),
]


@pytest.fixture
def store(tmp_path: Path) -> KnowledgeStore:
    return open_store(tmp_path, MemorySettings(), EmbeddingSettings())


def test_open_store_persists_under_workspace_with_minilm(tmp_path: Path) -> None:
    store = open_store(tmp_path, MemorySettings(collection="cards_test"), EmbeddingSettings())
    assert (tmp_path / "memory").is_dir()
    assert store.embedding_function_name == MINILM
    assert store.space == "cosine"
    assert store.count() == 0
    assert store.search("anything") == []
    assert store.list() == []


def test_upsert_is_idempotent_and_updates(store: KnowledgeStore) -> None:
    card = make_card("c1", text="first version")
    store.upsert([card])
    store.upsert([card])
    assert store.count() == 1
    updated = card.model_copy(update={"text": "second version", "effect": 0.5})
    store.upsert([updated])
    assert store.count() == 1
    assert store.get("c1") == updated
    assert store.search("second version", k=1)[0].card.text == "second version"


def test_card_round_trips_exactly(store: KnowledgeStore) -> None:
    card = make_card(
        "exact",
        params={"nested": {"a": [1, 2.5, "x"]}, "flag": True},
        root_cause=None,
        stage="ramp",
        segment="new_users",
        run_id="run-7",
    )
    store.upsert([card])
    assert store.get("exact") == card
    assert store.list() == [card]
    assert store.get("missing") is None


def test_duplicate_ids_in_one_batch_last_wins(store: KnowledgeStore) -> None:
    store.upsert([make_card("d", text="old"), make_card("d", text="new")])
    assert store.count() == 1
    assert store.get("d").text == "new"  # type: ignore[union-attr]


def test_metadata_filter_excludes_other_worlds(store: KnowledgeStore) -> None:
    store.upsert(
        [
            make_card("a", world="default", text="Diversity re-ranking for variety."),
            make_card("b", world="other", text="Diversity re-ranking for variety."),
            make_card("c", world="default", kind="counterexample", text="Unrelated."),
        ]
    )
    found = store.search("diversity re-ranking", k=10, where={"world": "default"})
    assert {hit.card.id for hit in found} == {"a", "c"}
    assert all(hit.card.world == "default" for hit in found)
    both = {"$and": [{"world": "default"}, {"kind": "counterexample"}]}
    assert [card.id for card in store.list(where=both)] == ["c"]
    assert {card.id for card in store.list(where={"world": "other"})} == {"b"}
    assert len(store.list(limit=2)) == 2


def test_relevant_card_ranks_first_for_a_lever_query(store: KnowledgeStore) -> None:
    store.upsert(LEVER_CARDS)
    hits = store.search("re-rank recommendations for more diversity", k=4)
    assert isinstance(hits[0], RetrievedCard)
    assert hits[0].card.id == "diversity"
    assert [hit.similarity for hit in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert all(-1.0 <= hit.similarity <= 1.0 for hit in hits)
    assert hits[0].similarity > hits[-1].similarity + 0.1
    assert store.search("increase the embedding dimension", k=1)[0].card.id == "embedding"
    assert store.search("latency of serving", k=1)[0].card.id == "cache"


def test_invalid_batch_writes_nothing(store: KnowledgeStore) -> None:
    store.upsert([make_card("kept")])
    good = make_card("new-good")
    bad_kind = KnowledgeCard.model_construct(**{**make_card("bad").model_dump(), "kind": "bogus"})
    missing_fields = {"id": "partial", "title": "no other fields"}
    for batch in ([good, bad_kind], [good, missing_fields], [good, "not a card"]):
        with pytest.raises(MemoryStoreError, match="nothing written"):
            store.upsert(batch)  # type: ignore[arg-type]
    assert store.count() == 1
    assert store.get("new-good") is None


def test_embedding_failure_writes_nothing(store: KnowledgeStore) -> None:
    def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding backend down")

    store._embedding_function = broken
    with pytest.raises(MemoryStoreError, match="embedding backend down"):
        store.upsert([make_card("x"), make_card("y")])
    assert store.count() == 0


def test_dict_cards_are_accepted(store: KnowledgeStore) -> None:
    store.upsert([make_card("from-dict").model_dump()])  # type: ignore[list-item]
    assert store.get("from-dict") == make_card("from-dict")


def test_delete(store: KnowledgeStore) -> None:
    store.upsert([make_card("a"), make_card("b"), make_card("c")])
    store.delete("a")
    store.delete(["b", "unknown"])
    store.delete([])
    assert [card.id for card in store.list()] == ["c"]


def test_chroma_errors_become_memory_store_errors(store: KnowledgeStore) -> None:
    store.upsert([make_card("a")])
    with pytest.raises(MemoryStoreError, match="search failed"):
        store.search("x", where={"$bogus": [1]})
    with pytest.raises(MemoryStoreError, match="cannot list"):
        store.list(where={"world": {"$nope": 1}})


def test_reopening_with_another_embedding_is_a_clear_error(tmp_path: Path) -> None:
    open_store(tmp_path, MemorySettings(), EmbeddingSettings()).upsert([make_card("a")])
    other = EmbeddingSettings(provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(MemoryStoreError, match="agentx_knowledge"):
        open_store(tmp_path, MemorySettings(), other)


def test_collection_reopened_from_config_uses_minilm(tmp_path: Path) -> None:
    open_store(tmp_path, MemorySettings(), EmbeddingSettings()).upsert(LEVER_CARDS)
    client = chromadb.PersistentClient(
        path=str(tmp_path / "memory"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    # No embedding function passed: Chroma must rebuild ours from the persisted config,
    # for the store's collection and for the world partition that holds the cards.
    for name in ("agentx_knowledge", partition_name("agentx_knowledge", "default")):
        collection = client.get_collection(name)
        assert collection.configuration_json["embedding_function"]["name"] == MINILM
        assert isinstance(collection.configuration["embedding_function"], MiniLMEmbeddingFunction)
    result = collection.query(query_texts=["diversity re-ranking"], n_results=1)
    assert result["ids"][0] == ["diversity"]


_REOPEN_SCRIPT = """
import json, sys
from pathlib import Path
from agentx.memory.store import open_store
from agentx.settings import EmbeddingSettings, MemorySettings
store = open_store(Path(sys.argv[1]), MemorySettings(), EmbeddingSettings())
hits = store.search("re-rank recommendations for more diversity", k=2)
print(json.dumps({
    "count": store.count(),
    "ef": store.embedding_function_name,
    "cards": [card.model_dump(mode="json") for card in store.list()],
    "top": hits[0].card.id,
}))
"""


def test_reopened_store_in_a_new_process_returns_same_cards(tmp_path: Path) -> None:
    store = open_store(tmp_path, MemorySettings(), EmbeddingSettings())
    store.upsert(LEVER_CARDS)
    home = tmp_path / "home"  # an empty HOME: no cached Chroma default model to fall back on
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _REOPEN_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["count"] == len(LEVER_CARDS)
    assert report["ef"] == MINILM
    assert report["top"] == "diversity"
    reread = sorted((KnowledgeCard.model_validate(c) for c in report["cards"]), key=lambda c: c.id)
    assert reread == sorted(LEVER_CARDS, key=lambda c: c.id)
    assert not (home / ".cache" / "chroma").exists()


def test_bad_chroma_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MemoryStoreError, match="chroma_url"):
        open_store(tmp_path, MemorySettings(chroma_url="ftp://x/y"), EmbeddingSettings())


# -- a real Chroma server --------------------------------------------------------------


def _chroma_cli() -> str | None:
    local = Path(sys.executable).parent / "chroma"
    return str(local) if local.exists() else shutil.which("chroma")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if _chroma_cli() is None:
        pytest.skip("the `chroma` CLI is not installed, so no Chroma server can be started")
    data = tmp_path_factory.mktemp("chroma-server")
    with start_chroma(data / "db", dict(os.environ)) as url:
        yield url


def test_store_against_chroma_server(
    chroma_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    memory = MemorySettings(chroma_url=chroma_server, collection="server_cards")
    store = open_store(tmp_path, memory, EmbeddingSettings())
    assert not (tmp_path / "memory").exists()
    store.upsert(LEVER_CARDS)
    store.upsert(LEVER_CARDS)
    assert store.count() == len(LEVER_CARDS)
    assert store.embedding_function_name == MINILM
    hits = store.search(
        "re-rank recommendations for more diversity", k=2, where={"world": "default"}
    )
    assert hits[0].card == LEVER_CARDS[0]
    # A second client (as another process would) sees the same cards and embedding.
    again = open_store(tmp_path, memory, EmbeddingSettings())
    assert again.get("embedding") == LEVER_CARDS[1]
    assert again.embedding_function_name == MINILM


def test_unreachable_chroma_server_is_a_clear_error(tmp_path: Path) -> None:
    memory = MemorySettings(chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MemoryStoreError, match="Chroma server"):
        open_store(tmp_path, memory, EmbeddingSettings())


def test_from_client_on_an_ephemeral_client() -> None:
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    name = f"eph_{uuid.uuid4().hex[:8]}"
    store = KnowledgeStore.from_client(client, name, MiniLMEmbeddingFunction())
    assert store.embedding_function_name == MINILM and store.space == "cosine"
    store.upsert(LEVER_CARDS)
    assert store.search("cache warm-up and p99 latency", k=1)[0].card.id == "cache"
    client.delete_collection(name)
