"""Wall time per stage of a multi-stage step (training, a daily update)."""

from __future__ import annotations

import time


class Laps:
    """Call with a stage name at the end of each stage; ``seconds`` maps stage -> wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._clock
        self._clock = now
