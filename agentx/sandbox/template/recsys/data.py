"""Load and validate the logged data written by the simulator.

Layout of a data directory (the contract; this code only reads it):

* ``items.npz``: ``category``, ``creator``, ``release_day`` (int, one entry per item).
* ``interactions.npz``: impression log ``user``, ``item``, ``day``, ``position``, ``click``,
  ``watch_time`` (aligned arrays, one entry per shown item).
* ``meta.json``: ``n_users``, ``n_items``, ``n_categories``, ``n_creators``, ``first_day``,
  ``last_day``, ``slate_size``.

Validation is strict because a silently malformed log would produce a silently bad model, and
the experiment loop would then learn the wrong lesson.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META_KEYS = (
    "n_users",
    "n_items",
    "n_categories",
    "n_creators",
    "first_day",
    "last_day",
    "slate_size",
)
ITEM_FIELDS = ("category", "creator", "release_day")
LOG_FIELDS = ("user", "item", "day", "position", "click", "watch_time")


class DataError(ValueError):
    """The data directory does not satisfy the logged-data contract."""


@dataclass(frozen=True)
class Meta:
    """Sizes and the logged day range; ids are dense ``0..n-1``."""

    n_users: int
    n_items: int
    n_categories: int
    n_creators: int
    first_day: int
    last_day: int
    slate_size: int


@dataclass(frozen=True)
class Items:
    """Static item table; ``release_day`` < ``first_day`` means released before logging."""

    category: np.ndarray  # int64 [n_items]
    creator: np.ndarray  # int64 [n_items]
    release_day: np.ndarray  # int64 [n_items]

    def released(self, day: int) -> np.ndarray:
        """Boolean mask of items that may be served on ``day``."""
        return self.release_day <= day


@dataclass(frozen=True)
class Interactions:
    """The impression log of the logging policy (position-biased: see docs/ARCHITECTURE.md)."""

    user: np.ndarray  # int64 [m]
    item: np.ndarray  # int64 [m]
    day: np.ndarray  # int64 [m]
    position: np.ndarray  # int64 [m], 0 = top of the slate
    click: np.ndarray  # int8 [m], 0/1
    watch_time: np.ndarray  # float64 [m], seconds, 0 without click

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Everything the recommender may learn from."""

    meta: Meta
    items: Items
    log: Interactions


def _load_npz(path: Path, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    with npz:
        missing = [f for f in fields if f not in npz.files]
        if missing:
            raise DataError(f"{path.name} lacks array(s) {missing}; has {npz.files}")
        try:
            return {f: np.asarray(npz[f]) for f in fields}
        except ValueError as exc:  # e.g. object arrays, which need pickle
            raise DataError(f"cannot read arrays of {path}: {exc}") from exc


def _load_meta(path: Path) -> Meta:
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path.name} must hold a JSON object")
    missing = [k for k in META_KEYS if k not in raw]
    if missing:
        raise DataError(f"{path.name} lacks key(s) {missing}")
    bad = [k for k in META_KEYS if not isinstance(raw[k], int) or isinstance(raw[k], bool)]
    if bad:
        raise DataError(f"{path.name}: key(s) {bad} must be integers")
    meta = Meta(**{k: raw[k] for k in META_KEYS})
    for key in ("n_users", "n_items", "n_categories", "n_creators", "slate_size"):
        if getattr(meta, key) < 1:
            raise DataError(f"meta.{key} must be >= 1")
    if meta.last_day < meta.first_day:
        raise DataError("meta.last_day must be >= meta.first_day")
    return meta


def _as_int(name: str, arr: np.ndarray, length: int | None) -> np.ndarray:
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise DataError(f"{name} has length {arr.shape[0]}, expected {length}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} must be an integer array, got {arr.dtype}")
    return arr.astype(np.int64)


def _check_range(name: str, arr: np.ndarray, low: int, high: int) -> None:
    """Require ``low <= arr < high``."""
    if arr.size and (arr.min() < low or arr.max() >= high):
        raise DataError(f"{name} out of range [{low}, {high}): min {arr.min()}, max {arr.max()}")


def _build_items(raw: dict[str, np.ndarray], meta: Meta) -> Items:
    arrays = {f: _as_int(f"items.{f}", raw[f], meta.n_items) for f in ITEM_FIELDS}
    _check_range("items.category", arrays["category"], 0, meta.n_categories)
    _check_range("items.creator", arrays["creator"], 0, meta.n_creators)
    return Items(**arrays)


def _normalise_log(raw: dict[str, np.ndarray], where: str) -> Interactions:
    """Shape, dtype and value checks that need no metadata; returns the normalised dtypes."""
    user = np.asarray(raw["user"])
    m = user.shape[0] if user.ndim == 1 else -1
    ints = {f: _as_int(f"{where}.{f}", np.asarray(raw[f]), m) for f in LOG_FIELDS[:-1]}
    watch = np.asarray(raw["watch_time"])
    if watch.ndim != 1 or watch.shape[0] != m:
        raise DataError(f"{where}.watch_time has shape {watch.shape}, expected ({m},)")
    if not np.issubdtype(watch.dtype, np.number) or np.issubdtype(watch.dtype, np.complexfloating):
        raise DataError(f"{where}.watch_time must be real numbers, got {watch.dtype}")
    watch = watch.astype(np.float64)
    _check_range(f"{where}.click", ints["click"], 0, 2)
    if not np.all(np.isfinite(watch)) or (watch.size and watch.min() < 0):
        raise DataError(f"{where}.watch_time must be finite and >= 0")
    if np.any((ints["click"] == 0) & (watch > 0)):
        raise DataError(f"{where}.watch_time must be 0 when click == 0")
    return Interactions(
        user=ints["user"],
        item=ints["item"],
        day=ints["day"],
        position=ints["position"],
        click=ints["click"].astype(np.int8),
        watch_time=watch,
    )


def check_log(log: Interactions, meta: Meta, items: Items, where: str = "interactions") -> None:
    """Range checks of a normalised log against the data directory's sizes and release days.

    Days are checked against ``first_day`` only: the caller decides the upper bound (the
    loader requires ``<= meta.last_day``; ``Model.update`` requires a single, new day).
    """
    _check_range(f"{where}.user", log.user, 0, meta.n_users)
    _check_range(f"{where}.item", log.item, 0, meta.n_items)
    _check_range(f"{where}.position", log.position, 0, meta.slate_size)
    if log.day.size and log.day.min() < meta.first_day:
        raise DataError(f"{where}.day before meta.first_day {meta.first_day}: {log.day.min()}")
    early = items.release_day[log.item] > log.day
    if np.any(early):
        first = int(np.flatnonzero(early)[0])
        raise DataError(
            f"{where} row {first}: item {log.item[first]} shown on day "
            f"{log.day[first]} before its release_day {items.release_day[log.item[first]]}"
        )


def interactions_from_arrays(**arrays: np.ndarray) -> Interactions:
    """Build an :class:`Interactions` from raw arrays, validated and normalised like the loader.

    Takes exactly the keyword arrays ``user``, ``item``, ``day``, ``position``, ``click`` and
    ``watch_time`` (any integer / real dtypes, e.g. the simulator's int32 and float32) and
    returns int64 ids, days and positions, int8 clicks and float64 watch time. Checks what
    needs no metadata (1-D, equal lengths, integer ids, clicks 0/1, finite non-negative watch
    time that is 0 without a click); ``Model.update`` checks ids, days and release days against
    the model's data. An empty set of arrays is valid (a day without traffic).
    Raises :class:`DataError` on any violation.
    """
    missing = [f for f in LOG_FIELDS if f not in arrays]
    unknown = sorted(set(arrays) - set(LOG_FIELDS))
    if missing or unknown:
        raise DataError(
            f"interactions need arrays {list(LOG_FIELDS)}; missing {missing}, unknown {unknown}"
        )
    return _normalise_log(arrays, "feedback")


def _build_log(raw: dict[str, np.ndarray], meta: Meta, items: Items) -> Interactions:
    if raw["user"].ndim == 1 and raw["user"].shape[0] == 0:
        raise DataError("interactions.npz holds no impressions: nothing to learn from")
    log = _normalise_log(raw, "interactions")
    _check_range("interactions.day", log.day, meta.first_day, meta.last_day + 1)
    check_log(log, meta, items)
    return log


class LogBuffer:
    """Append-only storage of a growing impression log, with spare capacity.

    ``Model.update`` adds one day to the log every day. Concatenating the whole history each
    day would cost O(history) per day (tens of millions of rows in the default world); writing
    the day into spare capacity costs O(day), and the occasional regrowth (by ``GROWTH``)
    keeps the amortised cost per appended row constant. :attr:`log` returns views of the
    filled prefix: rows a view covers are never written again, so an ``Interactions`` handed
    out earlier stays valid and unchanged. The public dtypes (int64 ids, int8 clicks, float64
    watch time) are kept so that code computing ``user * n_items + item`` cannot overflow.
    """

    GROWTH = 2.0

    def __init__(self, log: Interactions, spare_rows: int = 0) -> None:
        capacity = len(log) + max(spare_rows, 0)
        self._columns = {f: np.empty(capacity, getattr(log, f).dtype) for f in LOG_FIELDS}
        for name, column in self._columns.items():
            column[: len(log)] = getattr(log, name)
        self._size = len(log)

    def __len__(self) -> int:
        return self._size

    def __getstate__(self) -> dict[str, object]:
        """Pickle the filled rows only (the spare capacity is uninitialised memory)."""
        return {"columns": {f: c[: self._size].copy() for f, c in self._columns.items()}}

    def __setstate__(self, state: dict[str, object]) -> None:
        columns = state["columns"]
        assert isinstance(columns, dict)
        self._columns = columns
        self._size = int(columns["user"].shape[0])

    @property
    def capacity(self) -> int:
        return int(self._columns["user"].shape[0])

    @property
    def log(self) -> Interactions:
        """The rows appended so far (views, no copy)."""
        return Interactions(**{f: c[: self._size] for f, c in self._columns.items()})

    def append(self, rows: Interactions) -> Interactions:
        """Append normalised rows; returns the whole log."""
        needed = self._size + len(rows)
        if needed > self.capacity:
            capacity = max(needed, int(self.capacity * self.GROWTH))
            for name, column in self._columns.items():
                grown = np.empty(capacity, column.dtype)
                grown[: self._size] = column[: self._size]
                self._columns[name] = grown
        for name, column in self._columns.items():
            column[self._size : needed] = getattr(rows, name)
        self._size = needed
        return self.log


def load_dataset(data_dir: str | Path) -> Dataset:
    """Read and validate a data directory; raises :class:`DataError` on any violation."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data directory not found: {root}")
    meta = _load_meta(root / "meta.json")
    items = _build_items(_load_npz(root / "items.npz", ITEM_FIELDS), meta)
    log = _build_log(_load_npz(root / "interactions.npz", LOG_FIELDS), meta, items)
    return Dataset(meta=meta, items=items, log=log)
