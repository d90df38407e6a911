"""Memory retrieval latency as the experiment memory grows (1k, 10k, 100k cards).

Usage: python benchmarks/memory_bench.py [--sizes 1000 10000 100000] [--queries 200]

Cards are realistic knowledge cards over the catalog's techniques, worlds and outcomes.
To keep the set-up affordable, 1,000 distinct card texts are embedded with the real
MiniLM model and larger stores reuse those vectors with a little noise (queries are still
embedded for real, so the measured latency includes the query embedding). Prints a table
and writes benchmarks/results/memory.json.
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


def fill(
    store: KnowledgeStore, cards: list[KnowledgeCard], base: np.ndarray, rng: np.random.Generator
) -> None:
    """Insert cards with precomputed vectors (base vectors plus small noise)."""
    batch = 5000
    for start in range(0, len(cards), batch):
        chunk = cards[start : start + batch]
        vectors = base[np.arange(start, start + len(chunk)) % len(base)]
        vectors = vectors + rng.normal(0, 0.01, size=vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metas = []
        for card in chunk:
            meta = card.metadata()
            meta["card_json"] = card.model_dump_json()
            metas.append(meta)
        store.collection.add(
            ids=[c.id for c in chunk],
            embeddings=vectors.tolist(),
            documents=[card_document(c) for c in chunk],
            metadatas=metas,
        )


def measure(store: KnowledgeStore, queries: list[str], where: dict | None) -> dict[str, float]:
    """p50/p95 latency in milliseconds of ``store.search``."""
    times = []
    for query in queries:
        started = time.perf_counter()
        store.search(query, k=5, where=where)
        times.append(1000.0 * (time.perf_counter() - started))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    largest = max(args.sizes)
    cards = make_cards(largest, rng)
    base = embed_texts([card_document(c) for c in cards[:1000]])
    techniques = sorted({c.technique for c in cards})
    queries = [
        f"did {techniques[i % len(techniques)]} raise watch time in world "
        f"{WORLDS[i % len(WORLDS)]}?"
        for i in range(args.queries)
    ]
    rows = []
    for size in sorted(args.sizes):
        with tempfile.TemporaryDirectory() as tmp:
            client = chromadb.PersistentClient(
                path=tmp, settings=chromadb.Settings(anonymized_telemetry=False)
            )
            store = KnowledgeStore.from_client(client, "bench", MiniLMEmbeddingFunction())
            started = time.perf_counter()
            fill(store, cards[:size], base, rng)
            load_s = time.perf_counter() - started
            plain = measure(store, queries, None)
            filtered = measure(store, queries, {"world": "default"})
            rows.append(
                {
                    "cards": size,
                    "load_s": load_s,
                    **plain,
                    "filtered_p50_ms": filtered["p50_ms"],
                    "filtered_p95_ms": filtered["p95_ms"],
                }
            )
    print(f"{'cards':>8} {'load s':>8} {'p50 ms':>8} {'p95 ms':>8} {'filt p50':>9} {'filt p95':>9}")
    for row in rows:
        print(
            f"{row['cards']:>8} {row['load_s']:>8.1f} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} "
            f"{row['filtered_p50_ms']:>9.2f} {row['filtered_p95_ms']:>9.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
