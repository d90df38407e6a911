"""One Chroma collection per world: how cards are partitioned and how a filter is routed.

Why: Chroma evaluates a metadata filter (``where={"world": ...}``) by collecting every
matching record id from its metadata index before the vector search, so a filtered
query costs time linear in the matching cards: 186 ms p50 at 100,000 cards (idle machine),
against 1-2 ms for the vector search alone. Every retrieval the agents make names the
world, so the world becomes the partition: a query for one world searches that world's
collection with no filter left, and a query over all worlds searches each partition and
merges the nearest cards. The results are the same cards; only the work is smaller.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

#: Between the store's collection name and a world's partition: ``agentx_knowledge--w-...``.
SEPARATOR = "--w-"
_UNSAFE = re.compile(r"[^a-z0-9]+")


def partition_name(base: str, world: str) -> str:
    """The collection holding ``world``'s cards (Chroma's name rules: ``[a-z0-9._-]``,
    alphanumeric ends; a short hash keeps distinct world names distinct)."""
    slug = _UNSAFE.sub("-", world.lower()).strip("-")[:40] or "none"
    digest = hashlib.sha256(world.encode()).hexdigest()[:8]
    return f"{base}{SEPARATOR}{slug}-{digest}"


def is_partition(base: str, name: str) -> bool:
    """True when ``name`` is one of ``base``'s world partitions."""
    return name.startswith(f"{base}{SEPARATOR}")


def _pinned(condition: Any) -> set[str] | None:
    """The worlds a ``{"world": ...}`` condition allows, or None if it is no such pin."""
    if isinstance(condition, str):
        return {condition}
    if isinstance(condition, dict) and len(condition) == 1:
        [(operator, value)] = condition.items()
        if operator == "$eq" and isinstance(value, str):
            return {value}
        if operator == "$in" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return set(value)
    return None


def _clauses(where: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``where`` as the conjunction of single-key clauses, if it is one."""
    if set(where) == {"$and"} and isinstance(where["$and"], list):
        if all(isinstance(clause, dict) for clause in where["$and"]):
            return list(where["$and"])
        return None
    if any(key.startswith("$") for key in where):
        return None
    return [{key: value} for key, value in where.items()]


def _join(clauses: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def split_where(where: dict[str, Any] | None) -> tuple[set[str] | None, dict[str, Any] | None]:
    """(the worlds ``where`` is limited to, or None for all; the rest of the filter).

    Only a top-level conjunct on ``world`` (a value, ``$eq`` or ``$in``) is lifted out;
    anything else (``$or``, ``$ne``...) stays in the filter and is applied in every
    partition, which is still correct, only not faster.

    >>> split_where({"$and": [{"world": "tiny"}, {"decision": "KEEP"}]})
    ({'tiny'}, {'decision': 'KEEP'})
    """
    if not where:
        return None, None
    clauses = _clauses(where)
    if clauses is None:
        return None, where
    worlds: set[str] | None = None
    rest: list[dict[str, Any]] = []
    for clause in clauses:
        pinned = _pinned(clause["world"]) if set(clause) == {"world"} else None
        if pinned is None:
            rest.append(clause)
        else:
            worlds = pinned if worlds is None else worlds & pinned
    if worlds is None:
        return None, where
    return worlds, _join(rest)
