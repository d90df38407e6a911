"""How much of the machine's memory is still available, for the sandbox's choice of how
many rollouts to keep running between stages.

Why not a fixed count alone: an arm process holds its users' history and model, about
0.9 GB at 200,000 users and a few MB on `tiny`, so a count that suits one world swaps or
meets the OOM killer on another. Linux's ``MemAvailable`` is the kernel's own estimate of
what can be allocated without swapping (page cache it can drop included).
"""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def available_share(meminfo: Path = MEMINFO) -> float | None:
    """``MemAvailable / MemTotal`` of this machine, or None where the kernel does not
    report it (not Linux, or an old kernel): then nothing is judged short."""
    fields: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            value = rest.split()
            if value and value[0].isdigit():
                fields[name] = int(value[0])
    except OSError:
        return None
    total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    if not total or available is None:
        return None
    return available / total


def memory_is_short(reserve: float, meminfo: Path = MEMINFO) -> bool:
    """Whether less than ``reserve`` (a share of the machine's memory) is available."""
    share = available_share(meminfo)
    return share is not None and share < reserve
