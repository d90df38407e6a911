"""What one strategy did in one seed: its experiments and its shipped state after each.

A trace holds paths of :class:`~efficacylib.states.StateStore` states, not truths: scoring
asks the judge afterwards, so no strategy can see ground truth while it searches (except
the ceiling, whose whole point is to search on it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class Trial:
    """One experiment of a strategy."""

    index: int  # 1-based: the experiment count after this one
    label: str  # technique and parameters, or a TPE configuration
    control: str | None  # the state it was tested against (None: no A/B ran)
    treatment: str | None
    accepted: bool = False  # the evaluation said ship (KEEP; TPE: passed guardrails, gain > 0)
    launched: bool = False  # it became the shipped state
    decision: str | None = None
    measured: float | None = None
    halted: str | None = None  # why the rollout halted, if it did
    option_key: str | None = None  # the catalog option tested, when it was a single one

    @property
    def evaluated(self) -> bool:
        """An A/B ran (a change abandoned at verification never reached one)."""
        return self.control is not None and self.treatment is not None


@dataclass
class RunTrace:
    """One strategy, one world, one seed."""

    strategy: str
    world: str
    seed: int
    budget: int
    original: str
    trials: list[Trial] = field(default_factory=list)
    shipped: list[str] = field(default_factory=list)  # shipped state after each trial
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> str:
        """The state the strategy ships at the end."""
        return self.shipped[-1] if self.shipped else self.original

    def save(self, path: Path) -> None:
        """Write the trace as JSON (the cache ``--workdir`` keeps)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RunTrace:
        """Read a trace written by :meth:`save`."""
        data = json.loads(path.read_text())
        known = {f.name for f in fields(Trial)}  # traces of older versions kept trial seconds
        data["trials"] = [
            Trial(**{k: v for k, v in t.items() if k in known}) for t in data["trials"]
        ]
        return cls(**data)
