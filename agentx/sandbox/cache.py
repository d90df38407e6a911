"""The arms and ground-truth caches: written only by the trusted parent, verified on read.

Entries are keyed by the content hash of the repository state they were computed from
(``arms/<hash>.npz``, ``truth/<hash>.json``), so a control's results are reused by
every experiment against that baseline. That reuse is why they must be tamper-evident:
an altered control arm would bias every later comparison. Code under test never sees
these directories (it writes into a private directory the parent then moves from); on
top of that each entry carries the SHA-256 of its bytes in ``<entry>.sha256``, written
after the entry, and a read whose bytes do not match (an entry from before the
checksums, a torn write, any alteration) discards the entry so it is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def _sidecar(entry: Path) -> Path:
    return entry.with_name(entry.name + ".sha256")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(entry: Path) -> bytes | None:
    """The entry's bytes when its checksum matches; otherwise discard it and return None."""
    sidecar = _sidecar(entry)
    try:
        if entry.is_symlink() or sidecar.is_symlink():
            raise OSError("a cache entry must be a regular file")
        data = entry.read_bytes()
        expected = sidecar.read_text().strip()
    except OSError:
        data, expected = b"", ""
    if expected and _digest(data) == expected:
        return data
    discard(entry)
    return None


def verified(entry: Path) -> bool:
    """True when ``entry`` exists and its bytes match its checksum (else it is discarded)."""
    return read(entry) is not None


def discard(entry: Path) -> None:
    """Remove an entry and its checksum."""
    entry.unlink(missing_ok=True)
    _sidecar(entry).unlink(missing_ok=True)


def seal(source: Path, entry: Path) -> None:
    """Move the regular file ``source`` to ``entry`` and record its checksum.

    Raises:
        OSError: ``source`` is not a regular file (a symlink a child left, say).
    """
    if source.is_symlink() or not source.is_file():
        raise OSError(f"{source.name} is not a regular file")
    entry.parent.mkdir(parents=True, exist_ok=True)
    digest = _digest(source.read_bytes())
    _sidecar(entry).unlink(missing_ok=True)  # no window where old checksum meets new bytes
    os.replace(source, entry)
    _write_atomic(_sidecar(entry), digest.encode())


def read_json(entry: Path) -> Any | None:
    """A verified JSON entry, or None when absent or altered."""
    data = read(entry)
    return None if data is None else json.loads(data)


def write_json(entry: Path, value: Any) -> None:
    """Store ``value`` as a verified JSON entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = entry.with_name(entry.name + ".tmp")
    _write_atomic(staging, json.dumps(value, sort_keys=True).encode())
    seal(staging, entry)


def _write_atomic(path: Path, data: bytes) -> None:
    staging = path.with_name(path.name + f".{os.getpid()}.part")
    staging.write_bytes(data)
    os.replace(staging, path)
