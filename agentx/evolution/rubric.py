"""The rubric of an agent's harness evolution (``prompts/<agent>/rubric.yaml``).

Why a file: what counts as a loss, which fields an edit may touch and within which bounds
are the evaluator's rules; they are read-only to the refiner (an edit that touches them is
unsafe), and a team can tune them without touching code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentx.evolution.models import Category
from agentx.harness import HarnessError, default_prompts_dir, describe_validation, load_mapping

RUBRIC_FILE = "rubric.yaml"
# Files of an agent's harness directory no edit may change: the rubric is the evaluator's
# own yardstick; the evolution prompts judge and refine, they are not evolved.
PROTECTED_FILES = frozenset({RUBRIC_FILE})


class Criterion(BaseModel):
    """One rubric criterion: how much it weighs and which field it points at."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0.0)
    category: Category
    field: str | None = None
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: float = Field(0.0, ge=0.0)
    finding: str


class Bounds(BaseModel):
    """Allowed range of an evolvable numeric field."""

    model_config = ConfigDict(extra="forbid")

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError(f"min {self.min} exceeds max {self.max}")
        return self


class Rubric(BaseModel):
    """Criteria, evolvable fields, the refiner's step and the replay's constants."""

    model_config = ConfigDict(extra="forbid")

    criteria: dict[str, Criterion]
    evolvable: dict[str, Bounds]
    step: float = Field(1.5, gt=1.0)
    replay: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_evolvable(self) -> Rubric:
        """A criterion pointing at a field no edit may touch could never be acted on."""
        stray = {
            name: c.field
            for name, c in self.criteria.items()
            if c.field is not None and c.field not in self.evolvable
        }
        if stray:
            raise ValueError(f"criteria point at fields that are not evolvable: {stray}")
        return self


def load_rubric(agent: str, prompts_dir: Path | None = None) -> Rubric:
    """The validated rubric of ``agent``; HarnessError names the file and field."""
    path = (prompts_dir or default_prompts_dir()) / agent / RUBRIC_FILE
    data = load_mapping(path, f"rubric of agent {agent!r}")
    try:
        return Rubric.model_validate(data)
    except ValidationError as error:
        raise HarnessError(f"invalid rubric {path}: {describe_validation(error)}") from None


def get_field(harness: dict[str, Any], dotted: str) -> Any:
    """The value at ``a.b.c`` of a nested mapping; KeyError if absent."""
    node: Any = harness
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def set_field(harness: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` of a nested mapping in place (the parents must exist)."""
    *parents, last = dotted.split(".")
    node = harness
    for part in parents:
        node = node[part]
    node[last] = value
