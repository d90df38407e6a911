"""Model-backed evaluator and refiner of SGPO.

The model drafts; drafts are validated the same way as the rubric's own output (fields must
be evolvable, values within bounds, checked again by the safety check), so a model cannot
edit the rubric, a verifier or a protected file, and malformed output falls back to the
rubric with the reason recorded.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from agentx.evolution.models import (
    Category,
    FieldEdit,
    GradientItem,
    HarnessEdit,
    SemanticGradient,
)
from agentx.evolution.rubric import Rubric, get_field
from agentx.evolution.store import RunTrajectory
from agentx.harness import load_prompt
from agentx.llm.structured import StructuredResult, invoke_structured, structured_options


class GradientItemDraft(BaseModel):
    """One gradient item as the model drafts it."""

    criterion: str
    category: Category
    finding: str = Field(min_length=5)
    field: str | None = None
    direction: Literal["increase", "decrease"] = "increase"
    magnitude: float = Field(0.5, ge=0.0, le=1.0)


class GradientDraft(BaseModel):
    """The model's loss and gradient."""

    loss_text: str = Field(min_length=5)
    items: list[GradientItemDraft] = Field(default_factory=list)


class FieldChange(BaseModel):
    """A field and its new value, as the model drafts it."""

    field: str
    value: float


class EditDraft(BaseModel):
    """The model's edit of the harness."""

    changes: list[FieldChange] = Field(default_factory=list, max_length=3)
    add_rules: list[str] = Field(default_factory=list, max_length=3)
    rationale: str = ""


def _system() -> SystemMessage:
    return SystemMessage(
        "You improve the harness (instructions and numeric policy) of an agent in a "
        "recommender-iteration system. Answer only with the requested structured output."
    )


def _experiment_lines(runs: list[RunTrajectory]) -> str:
    lines = []
    for run in runs:
        for r in run.records:
            verdict = r.verdict
            measured = verdict.north_star.relative if verdict and verdict.north_star else None
            true = verdict.true_effects.get(run.north_star) if verdict else None
            lines.append(
                f"- {r.id}: {r.proposal.technique} {r.proposal.params} expected "
                f"{r.proposal.expected_size:+.2%}; {r.status.value}; "
                f"{verdict.decision.value if verdict else 'no verdict'}; measured "
                f"{'n/a' if measured is None else f'{measured:+.2%}'}; true "
                f"{'n/a' if true is None else f'{true:+.2%}'}; {r.root_cause or '-'}"
            )
    return "\n".join(lines[-40:]) or "(none)"


def _evolvable(rubric: Rubric) -> str:
    return "\n".join(f"- {k}: [{b.min}, {b.max}]" for k, b in rubric.evolvable.items())


def _invoke(model: BaseChatModel, prompt: str, schema: type, settings: dict[str, Any]):
    return invoke_structured(
        model,
        [_system(), HumanMessage(prompt)],
        schema,
        **structured_options(settings),
    )


def llm_diagnose(
    model: BaseChatModel,
    agent: str,
    harness: dict[str, Any],
    rubric: Rubric,
    runs: list[RunTrajectory],
    rubric_gradient: SemanticGradient,
    settings: dict[str, Any],
) -> tuple[SemanticGradient | None, str | None]:
    """The model's gradient (items pointing at non-evolvable fields lose their field)."""
    criteria = "\n".join(
        f"- {name}: {c.finding.strip()} -> {c.field} ({c.direction})"
        for name, c in rubric.criteria.items()
    )
    prompt = load_prompt("evolution", "diagnose").format(
        agent=agent,
        criteria=criteria,
        evolvable=_evolvable(rubric),
        version=harness.get("version", 1),
        harness=yaml.safe_dump(harness, sort_keys=False),
        experiments=_experiment_lines(runs),
        rubric_loss=rubric_gradient.loss_text,
    )
    result: StructuredResult[GradientDraft] = _invoke(model, prompt, GradientDraft, settings)
    if not result.ok or result.value is None:
        return None, result.error or "no reply"
    items = [
        GradientItem(
            criterion=d.criterion,
            category=d.category,
            finding=d.finding,
            field=d.field if d.field in rubric.evolvable else None,
            direction=d.direction,
            magnitude=d.magnitude,
        )
        for d in result.value.items
    ]
    items.sort(key=lambda item: -item.magnitude)
    gradient = SemanticGradient(
        agent=agent,
        loss=round(sum(i.magnitude for i in items), 6),
        loss_text=result.value.loss_text,
        items=items,
        source="model",
    )
    return gradient, None


def llm_refine(
    model: BaseChatModel,
    agent: str,
    gradient: SemanticGradient,
    harness: dict[str, Any],
    rubric: Rubric,
    tried: set[str],
    settings: dict[str, Any],
) -> tuple[HarnessEdit | None, str | None]:
    """The model's edit, or None with the reason (unknown field, not numeric, no change)."""
    items = "\n".join(
        f"- [{i.category}] {i.finding} -> {i.field} ({i.direction}, {i.magnitude:.2f})"
        for i in gradient.items
    )
    prompt = load_prompt("evolution", "refine").format(
        agent=agent,
        loss=gradient.loss_text,
        items=items or "(none)",
        evolvable=_evolvable(rubric),
        version=harness.get("version", 1),
        harness=yaml.safe_dump(harness, sort_keys=False),
        tried=", ".join(sorted(tried)) or "(none)",
    )
    result: StructuredResult[EditDraft] = _invoke(model, prompt, EditDraft, settings)
    if not result.ok or result.value is None:
        return None, result.error or "no reply"
    edits = []
    for change in result.value.changes:
        try:
            old = get_field(harness, change.field)
        except KeyError:
            return None, f"the model edited unknown field {change.field!r}"
        if not isinstance(old, int | float) or isinstance(old, bool):
            return None, f"the model edited non-numeric field {change.field!r}"
        if float(old) != change.value:
            edits.append(FieldEdit(field=change.field, old=float(old), new=change.value))
    edit = HarnessEdit(
        agent=agent,
        edits=edits,
        add_rules=[r.strip() for r in result.value.add_rules if r.strip()],
        rationale=result.value.rationale,
        source="model",
    )
    if edit.key() in tried and not edit.add_rules:
        return None, f"the model repeated a rolled-back edit ({edit.key()})"
    return edit, None
