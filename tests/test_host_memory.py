"""The machine's available memory as the sandbox reads it (``/proc/meminfo``)."""

from __future__ import annotations

from pathlib import Path

from agentx.sandbox.host_memory import available_share, memory_is_short


def _meminfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(text)
    return path


def test_available_share_is_mem_available_over_mem_total(tmp_path: Path) -> None:
    path = _meminfo(
        tmp_path,
        "MemTotal:       24000000 kB\nMemFree:         1000000 kB\n"
        "MemAvailable:    3000000 kB\nBuffers:          100 kB\n",
    )
    assert available_share(path) == 0.125
    assert memory_is_short(0.15, path)
    assert not memory_is_short(0.10, path)


def test_nothing_is_short_where_the_kernel_does_not_say(tmp_path: Path) -> None:
    without = _meminfo(tmp_path, "MemTotal:       24000000 kB\nMemFree:  10 kB\n")
    assert available_share(without) is None
    assert not memory_is_short(0.99, without)
    assert available_share(tmp_path / "missing") is None
    assert not memory_is_short(0.99, tmp_path / "missing")


def test_this_machine_reports_a_share() -> None:
    share = available_share()
    assert share is not None and 0.0 < share <= 1.0
