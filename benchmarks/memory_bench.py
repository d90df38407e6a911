"""Memory retrieval latency as the experiment memory grows (1k, 10k, 100k cards).

Usage: python benchmarks/memory_bench.py [--sizes 1000 10000 100000] [--queries 200] [--flat]

Cards are realistic knowledge cards over the catalog's techniques, worlds and outcomes.
To keep the set-up affordable, 1,000 distinct card texts are embedded with the real
MiniLM model and larger stores reuse those vectors with a little noise. Queries are
distinct texts embedded for real at search time (the store's query cache cannot help), so
the measured latency includes the query embedding; "repeat" columns search the same texts
again (the agents repeat their queries: the goal before every experiment).

``--flat`` also measures the layout before world partitions (every card in one collection,
filtered by Chroma's ``where``) for comparison. Prints a table and writes
benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import chromadb
import numpy as np

from agentx.memory.embedding import MiniLMEmbeddingFunction, embed_texts
from agentx.memory.store import KnowledgeStore, card_document
from agentx.models import KnowledgeCard
from agentx.research.catalog import load_catalog

WORLDS = ["default", "fresh", "niche", "tiny"]
DECISIONS = [
    ("KEEP", None),
    ("DISCARD", "no_significance"),
    ("DISCARD", "guardrail_harm"),
    ("EXTEND", "no_significance"),
    ("ABANDONED", "implementation_defect"),
]


def make_cards(n: int, rng: np.random.Generator) -> list[KnowledgeCard]:
    """``n`` plausible cards over the catalog."""
    catalog = list(load_catalog().values())
    cards = []
    for i in range(n):
        technique = catalog[i % len(catalog)]
        world = WORLDS[(i // len(catalog)) % len(WORLDS)]
        decision, cause = DECISIONS[int(rng.integers(len(DECISIONS)))]
        effect = float(rng.normal(0.0, 0.03))
        params = {p.name: p.values[int(rng.integers(len(p.values)))] for p in technique.params}
        title = f"{technique.id} {params} {decision.lower()} in world {world}: {effect:+.2%}"
        cards.append(
            KnowledgeCard(
                id=f"card-{i}",
                kind="playbook" if decision == "KEEP" else "counterexample",
                title=title,
                text=f"{title}. {technique.summary} Root cause: {cause}.",
                technique=technique.id,
                lever=technique.lever,
                params=params,
                objective="watch_time",
                world=world,
                decision=decision,
                effect=effect,
                root_cause=cause,
                run_id=f"run-{i % 50}",
            )
        )
    return cards


def card_vectors(n: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vectors for ``n`` cards: the embedded base texts plus a little noise, unit length."""
    vectors = base[np.arange(n) % len(base)]
    vectors = vectors + rng.normal(0, 0.01, size=vectors.shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill(store: KnowledgeStore, cards: list[KnowledgeCard], vectors: np.ndarray) -> None:
    """Insert cards with precomputed vectors through the store (its world partitions)."""
    batch = 5000
    for start in range(0, len(cards), batch):
        store.upsert(cards[start : start + batch], embeddings=list(vectors[start : start + batch]))


class FlatSearch:
    """The layout before partitions: one collection, the world filter applied by Chroma."""

    def __init__(self, client, cards: list[KnowledgeCard], vectors: np.ndarray) -> None:
        self.collection = client.get_or_create_collection(
            "flat", embedding_function=MiniLMEmbeddingFunction()
        )
        for start in range(0, len(cards), 5000):
            chunk = cards[start : start + 5000]
            self.collection.add(
                ids=[c.id for c in chunk],
                embeddings=list(vectors[start : start + 5000]),
                documents=[card_document(c) for c in chunk],
                metadatas=[{**c.metadata(), "card_json": c.model_dump_json()} for c in chunk],
            )

    def search(self, query: str, k: int, where: dict | None) -> None:
        self.collection.query(
            query_embeddings=embed_texts([query]), n_results=k, where=where,
            include=["metadatas", "distances"],
        )  # fmt: skip


def measure(store, queries: list[str], where: dict | None) -> dict[str, float]:
    """p50/p95 latency in milliseconds of ``store.search``."""
    times = []
    for query in queries:
        started = time.perf_counter()
        store.search(query, k=5, where=where)
        times.append(1000.0 * (time.perf_counter() - started))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def measure_embedding(queries: list[str]) -> dict[str, float]:
    """p50/p95 in milliseconds of embedding one query (what a cold search pays first)."""
    times = []
    for query in queries:
        started = time.perf_counter()
        embed_texts([query])
        times.append(1000.0 * (time.perf_counter() - started))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


PHRASES = [
    "did {t} raise watch time in world {w}?",
    "what happened when we tried {t} on {w}",
    "{t} guardrail harm in the {w} world",
    "lessons about {t} for {w} users",
    "should we retune {t} ({w})",
]


def distinct_queries(n: int, techniques: list[str]) -> list[str]:
    """``n`` different query texts (so no query embedding is reused)."""
    combos = [
        phrase.format(t=technique.replace("_", " "), w=world)
        for phrase in PHRASES
        for technique in techniques
        for world in WORLDS
    ]
    return [combos[i % len(combos)] + ("" if i < len(combos) else f" #{i}") for i in range(n)]


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flat", action="store_true", help="also measure one filtered collection")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    largest = max(args.sizes)
    cards = make_cards(largest, rng)
    base = embed_texts([card_document(c) for c in cards[:1000]])
    vectors = card_vectors(largest, base, rng)
    techniques = sorted({c.technique for c in cards})
    queries = distinct_queries(args.queries, techniques)
    world = {"world": "default"}
    rows = []
    for size in sorted(args.sizes):
        with tempfile.TemporaryDirectory() as tmp:
            client = chromadb.PersistentClient(
                path=tmp, settings=chromadb.Settings(anonymized_telemetry=False)
            )
            store = KnowledgeStore.from_client(client, "bench", MiniLMEmbeddingFunction())
            started = time.perf_counter()
            fill(store, cards[:size], vectors[:size])
            load_s = time.perf_counter() - started
            measure(store, queries[:5], world)  # warm up the model (not a query measured)
            plain = measure(store, queries[: len(queries) // 2], None)
            embed = measure_embedding(queries[len(queries) // 2 :])  # the model alone
            filtered = measure(store, queries[len(queries) // 2 :], world)  # not yet embedded
            repeat = measure(store, queries[len(queries) // 2 :], world)  # cached embeddings
            row = {
                "cards": size,
                "load_s": load_s,
                **plain,
                "embed_p50_ms": embed["p50_ms"],
                "filtered_p50_ms": filtered["p50_ms"],
                "filtered_p95_ms": filtered["p95_ms"],
                "repeat_filtered_p50_ms": repeat["p50_ms"],
                "repeat_filtered_p95_ms": repeat["p95_ms"],
            }
            if args.flat:
                flat = FlatSearch(client, cards[:size], vectors[:size])
                old = measure(flat, queries[len(queries) // 2 :], world)
                row.update(flat_filtered_p50_ms=old["p50_ms"], flat_filtered_p95_ms=old["p95_ms"])
            rows.append(row)
    print(
        f"{'cards':>8} {'load s':>8} {'p50 ms':>8} {'p95 ms':>8} {'embed':>6} {'filt p50':>9}"
        f" {'filt p95':>9}"
        f" {'rep p50':>8} {'rep p95':>8}"
        + (f" {'flat p50':>9} {'flat p95':>9}" if args.flat else "")
    )
    for row in rows:
        line = (
            f"{row['cards']:>8} {row['load_s']:>8.1f} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} "
            f"{row['embed_p50_ms']:>6.2f} {row['filtered_p50_ms']:>9.2f} "
            f"{row['filtered_p95_ms']:>9.2f} "
            f"{row['repeat_filtered_p50_ms']:>8.2f} {row['repeat_filtered_p95_ms']:>8.2f}"
        )
        if args.flat:
            line += f" {row['flat_filtered_p50_ms']:>9.2f} {row['flat_filtered_p95_ms']:>9.2f}"
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
