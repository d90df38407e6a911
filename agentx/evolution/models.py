"""What harness evolution produces and records: gradients, edits, replays, steps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Category = Literal["missing", "mis-ordered", "under-evidenced", "mis-calibrated"]
Outcome = Literal["kept", "rolled_back", "unsafe", "no_gradient", "not_enough_tasks", "failed"]


class GradientItem(BaseModel):
    """One direction of improvement, in words and as the harness field it points at."""

    criterion: str = Field(description="Rubric criterion that found it.")
    category: Category
    finding: str = Field(description="What went wrong, with the evidence, in one sentence.")
    field: str | None = Field(
        None, description="Dotted harness field to move, e.g. score_weights.risk; None = none."
    )
    direction: Literal["increase", "decrease"] = "increase"
    magnitude: float = Field(0.0, ge=0.0, description="Share of tasks affected x weight.")
    evidence: list[str] = Field(default_factory=list, description="Experiment ids.")


class SemanticGradient(BaseModel):
    """The evaluator's natural-language loss and the gradient items behind it."""

    agent: str
    loss: float = Field(description="Weighted rubric loss, 0 = nothing to fix.")
    loss_text: str
    items: list[GradientItem] = Field(default_factory=list)
    source: Literal["rubric", "model"] = "rubric"


class FieldEdit(BaseModel):
    """A change of one numeric harness field."""

    field: str
    old: float
    new: float


class HarnessEdit(BaseModel):
    """The refiner's proposed edit of an agent's harness."""

    agent: str
    edits: list[FieldEdit] = Field(default_factory=list)
    add_rules: list[str] = Field(default_factory=list)
    rationale: str = ""
    files: dict[str, str] = Field(
        default_factory=dict, description="Relative file path -> new text, for prompt edits."
    )
    source: Literal["rubric", "model"] = "rubric"

    def key(self) -> str:
        """Identity of the edit's direction, used to not retry a rejected one."""
        moves = sorted(f"{e.field}:{'+' if e.new > e.old else '-'}" for e in self.edits)
        return ",".join(moves + sorted(self.files)) or "rules-only"


class ReplayScore(BaseModel):
    """A harness replayed on a set of recorded tasks."""

    score: float
    tasks: int
    per_task: dict[str, float] = Field(default_factory=dict)


class EvolutionStep(BaseModel):
    """One SGPO step: the gradient, the edit, both replays and the decision."""

    id: str
    agent: str
    base_version: int
    new_version: int | None = None
    outcome: Outcome
    reason: str
    gradient: SemanticGradient | None = None
    edit: HarnessEdit | None = None
    old_score: ReplayScore | None = None
    new_score: ReplayScore | None = None
    run_id: str = ""
    iteration: int = 0

    @property
    def gain(self) -> float | None:
        """Replay score gain of the edit, when both replays ran."""
        if self.old_score is None or self.new_score is None:
            return None
        return self.new_score.score - self.old_score.score

    def line(self) -> str:
        """One readable line for progress and reports."""
        gain = self.gain
        scores = (
            f" replay {self.old_score.score:+.4f} -> {self.new_score.score:+.4f}"
            if self.old_score and self.new_score
            else ""
        )
        edit = f" [{self.edit.key()}]" if self.edit else ""
        version = f" v{self.base_version}->v{self.new_version}" if self.new_version else ""
        tail = f" (gain {gain:+.4f})" if gain is not None else ""
        return f"{self.agent}: {self.outcome}{version}{edit}{scores}{tail}: {self.reason}"
