"""The data contract: a valid directory loads, every kind of violation raises DataError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.data import DataError, load_dataset


def test_valid_directory_loads_with_normalised_dtypes(data_dir: Path) -> None:
    ds = load_dataset(data_dir)
    assert len(ds.log) > 0
    assert ds.items.category.shape == (ds.meta.n_items,)
    assert ds.log.user.dtype == np.int64 and ds.log.click.dtype == np.int8
    assert ds.log.watch_time.dtype == np.float64
    assert set(np.unique(ds.log.click)) <= {0, 1}


def test_missing_directory_and_file(data_copy: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(data_copy / "nope")
    (data_copy / "items.npz").unlink()
    with pytest.raises(DataError, match="missing file"):
        load_dataset(data_copy)


def test_meta_missing_key(data_copy: Path) -> None:
    meta = json.loads((data_copy / "meta.json").read_text())
    del meta["slate_size"]
    (data_copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="slate_size"):
        load_dataset(data_copy)


def test_missing_array(data_copy: Path, edit_npz) -> None:
    edit_npz(data_copy, "interactions.npz", lambda a: a.pop("watch_time"))
    with pytest.raises(DataError, match="watch_time"):
        load_dataset(data_copy)


def _set(name: str, index: int, value: float):
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[name][index] = value

    return change


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("interactions.npz", _set("item", 0, 10_000), "interactions.item out of range"),
        ("interactions.npz", _set("user", 3, -1), "interactions.user out of range"),
        ("interactions.npz", _set("click", 0, 2), "interactions.click out of range"),
        ("interactions.npz", _set("position", 0, 10), "interactions.position out of range"),
        ("interactions.npz", _set("day", 0, 99), "interactions.day out of range"),
        ("items.npz", _set("category", 0, 6), "items.category out of range"),
        ("items.npz", _set("creator", 5, 20), "items.creator out of range"),
    ],
)
def test_out_of_range_values(data_copy: Path, edit_npz, file, change, message) -> None:
    edit_npz(data_copy, file, change)
    with pytest.raises(DataError, match=message):
        load_dataset(data_copy)


def test_length_mismatch(data_copy: Path, edit_npz) -> None:
    def shorten(a: dict[str, np.ndarray]) -> None:
        a["day"] = a["day"][:-1]

    edit_npz(data_copy, "interactions.npz", shorten)
    with pytest.raises(DataError, match="interactions.day has length"):
        load_dataset(data_copy)


def test_float_ids_rejected(data_copy: Path, edit_npz) -> None:
    def to_float(a: dict[str, np.ndarray]) -> None:
        a["item"] = a["item"].astype(np.float32)

    edit_npz(data_copy, "interactions.npz", to_float)
    with pytest.raises(DataError, match="integer"):
        load_dataset(data_copy)


def test_watch_time_without_click(data_copy: Path, edit_npz) -> None:
    def change(a: dict[str, np.ndarray]) -> None:
        row = int(np.flatnonzero(a["click"] == 0)[0])
        a["watch_time"][row] = 5.0

    edit_npz(data_copy, "interactions.npz", change)
    with pytest.raises(DataError, match="watch_time must be 0"):
        load_dataset(data_copy)


def test_item_shown_before_release(data_copy: Path, edit_npz) -> None:
    with np.load(data_copy / "interactions.npz") as log:
        item, day = int(log["item"][0]), int(log["day"][0])
    edit_npz(data_copy, "items.npz", _set("release_day", item, day + 1))
    with pytest.raises(DataError, match="before its release_day"):
        load_dataset(data_copy)


def test_empty_log(data_copy: Path, edit_npz) -> None:
    def empty(a: dict[str, np.ndarray]) -> None:
        for key in list(a):
            a[key] = a[key][:0]

    edit_npz(data_copy, "interactions.npz", empty)
    with pytest.raises(DataError, match="no impressions"):
        load_dataset(data_copy)
