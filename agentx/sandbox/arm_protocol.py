"""The wire format between the simulator and an arm's confined process.

A message is one JSON header line followed by the raw bytes of its arrays, in the order the
header lists them (``{"op": ..., "arrays": [{"name", "dtype", "shape"}, ...], ...}``).
Arrays travel as plain C-ordered bytes of a small set of numeric dtypes, never as pickles,
so a hostile arm can send nothing but numbers, and sizes are bounded before anything is
allocated.
"""

from __future__ import annotations

import json
from typing import IO, Any

import numpy as np

ALLOWED_DTYPES = frozenset({"int8", "int16", "int32", "int64", "float32", "float64", "bool"})
MAX_HEADER_BYTES = 1 << 16
MAX_ARRAY_BYTES = 1 << 31


class ProtocolError(RuntimeError):
    """The peer sent something that is not a well-formed message (or hung up)."""


def write_message(
    stream: IO[bytes], op: str, arrays: dict[str, np.ndarray] | None = None, **fields: Any
) -> None:
    """Send ``op`` with JSON ``fields`` and numeric ``arrays``; flushes."""
    arrays = arrays or {}
    specs = []
    payloads = []
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        if data.dtype.name not in ALLOWED_DTYPES:
            raise ProtocolError(f"array {name!r} has dtype {data.dtype}, not a plain number type")
        specs.append({"name": name, "dtype": data.dtype.name, "shape": list(data.shape)})
        payloads.append(data.tobytes())
    header = json.dumps({"op": op, "arrays": specs, **fields}).encode() + b"\n"
    stream.write(header)
    for payload in payloads:
        stream.write(payload)
    stream.flush()


def parse_header(line: bytes) -> dict[str, Any]:
    """Decode and check a header line; raises :class:`ProtocolError`."""
    if not line:
        raise ProtocolError("the peer closed the connection")
    if len(line) > MAX_HEADER_BYTES or not line.endswith(b"\n"):
        raise ProtocolError("message header too long or truncated")
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProtocolError(f"message header is not JSON: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError("message header must be an object with an 'op'")
    specs = header.get("arrays", [])
    if not isinstance(specs, list):
        raise ProtocolError("'arrays' must be a list")
    for spec in specs:
        if (
            not isinstance(spec, dict)
            or spec.get("dtype") not in ALLOWED_DTYPES
            or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("shape"), list)
            or not all(isinstance(n, int) and n >= 0 for n in spec["shape"])
        ):
            raise ProtocolError(f"bad array spec {str(spec)[:200]}")
        if array_nbytes(spec) > MAX_ARRAY_BYTES:
            raise ProtocolError(f"array {spec['name']!r} is too large")
    return header


def array_nbytes(spec: dict[str, Any]) -> int:
    """Bytes of the array a spec announces."""
    return int(np.prod(spec["shape"], dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize


def decode_arrays(header: dict[str, Any], payload: bytes) -> dict[str, np.ndarray]:
    """Arrays from the bytes that follow ``header`` (exactly their total size)."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in header.get("arrays", []):
        size = array_nbytes(spec)
        chunk = payload[offset : offset + size]
        if len(chunk) != size:
            raise ProtocolError(f"array {spec['name']!r} is truncated")
        out[spec["name"]] = np.frombuffer(chunk, dtype=spec["dtype"]).reshape(spec["shape"])
        offset += size
    return out


def payload_size(header: dict[str, Any]) -> int:
    """Total bytes of the arrays announced by ``header``."""
    return sum(array_nbytes(spec) for spec in header.get("arrays", []))


def read_message(stream: IO[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Blocking read of one message from a trusted peer (the arm server's side)."""
    header = parse_header(stream.readline(MAX_HEADER_BYTES + 1))
    size = payload_size(header)
    payload = stream.read(size) if size else b""
    return header, decode_arrays(header, payload)
