"""Reference slates a credible baseline must beat: random and popularity-only.

Each is a small edit of the baseline repository (so it runs through the same arm, the same
closed loop and the same ground truth as any change): the calibration benchmark and the
sandbox tests compare the baseline's truth against them.
"""

from __future__ import annotations

import re
from pathlib import Path

# A random slate: every user gets k released items drawn uniformly, keyed on (day, user).
RANDOM_SERVE = '''
    def serve(self, user_ids: np.ndarray, k: int, day: int) -> ServeResult:
        """Calibration baseline: uniformly random released items (no model at all)."""
        from .randomness import keyed_uniform

        users = np.asarray(user_ids, dtype=np.int64)
        released = np.flatnonzero(self.ctx.released(int(day)))
        keys = np.stack([keyed_uniform(99, int(day), users, slot) for slot in range(4 * k)], 1)
        draws = released[np.minimum((keys * released.size).astype(np.int64), released.size - 1)]
        items = np.full((users.size, k), -1, dtype=np.int64)
        for row in range(users.size):
            unique = list(dict.fromkeys(draws[row].tolist()))[:k]
            items[row, : len(unique)] = unique
        return ServeResult(items=items, candidates_scored=np.full(users.size, k, np.int64))

    def _unused_serve(self, user_ids: np.ndarray, k: int, day: int) -> ServeResult:'''


def random_slate(path: Path) -> None:
    """Serve uniformly random released items, keyed on (day, user): no model at all."""
    pipeline = path / "recsys" / "pipeline.py"
    text = pipeline.read_text()
    anchor = "    def serve(self, user_ids: np.ndarray, k: int, day: int) -> ServeResult:"
    if anchor not in text:
        raise ValueError(f"{pipeline}: no Model.serve to replace")
    pipeline.write_text(text.replace(anchor, RANDOM_SERVE.strip("\n"), 1))


def popularity_slate(path: Path) -> None:
    """Serve the most-clicked items only: no personalisation (seen filter kept)."""
    config = path / "config.toml"
    text = config.read_text()
    for key, value in {"mf_pool": "0", "popular_pool": "100", "fresh_pool": "0"}.items():
        lines = [
            f"{key} = {value}" if line.split("=")[0].strip() == key else line
            for line in text.splitlines()
        ]
        text = "\n".join(lines) + "\n"
    text, found = re.subn(
        r"^features\s*=\s*\[[^\]]*\]", 'features = ["item_popularity"]', text, count=1, flags=re.M
    )
    if not found:
        raise ValueError(f"{config}: no ranker features line to replace")
    config.write_text(text)


REFERENCE_SLATES = {"random_slate": random_slate, "popularity_slate": popularity_slate}
