"""Model-backed evaluator and refiner of SGPO.

The model drafts; drafts are validated the same way as the rubric's own output (fields must
be evolvable, values within bounds, checked again by the safety check), so a model cannot
edit the rubric, a verifier or a protected file. A draft that is valid JSON but unusable (a
gradient whose items name no evolvable field, an edit that changes nothing or leaves the
bounds) is shown back to the model; when the re-asks run out, the rubric's own gradient or
refiner is used and the reason recorded: junk never replaces the offline output.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from langchain_core.language_models import BaseChatModel
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
from agentx.llm.ask import ask
from agentx.llm.budget import Context
from agentx.llm.structured import StructuredResult


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


_SYSTEM = (
    "You improve the harness (instructions and numeric policy) of an agent in a "
    "recommender-iteration system. Answer only with the requested structured output."
)


def _experiment_lines(runs: list[RunTrajectory]) -> list[str]:
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
    return list(reversed(lines))  # most recent first: the budget keeps the latest


def _evolvable(rubric: Rubric) -> str:
    return "\n".join(f"- {k}: [{b.min}, {b.max}]" for k, b in rubric.evolvable.items())


def gradient_problem(draft: GradientDraft, rubric: Rubric) -> str | None:
    """Why a drafted gradient is unusable: no item names an evolvable field."""
    if any(item.field in rubric.evolvable for item in draft.items):
        return None
    named = sorted({str(item.field) for item in draft.items})
    return (
        f"no gradient item names an evolvable field (named: {', '.join(named) or 'none'}); "
        f"each item's field must be one of: {', '.join(rubric.evolvable)}"
    )


def edit_problem(draft: EditDraft, harness: dict[str, Any], rubric: Rubric) -> str | None:
    """Why a drafted edit is unusable: a field that is not evolvable or not numeric, a value
    outside its bounds, or no change at all."""
    moved = 0
    for change in draft.changes:
        bounds = rubric.evolvable.get(change.field)
        if bounds is None:
            return f"{change.field!r} is not evolvable; change only: {', '.join(rubric.evolvable)}"
        try:
            old = get_field(harness, change.field)
        except KeyError:
            return f"the harness has no field {change.field!r}"
        if not isinstance(old, int | float) or isinstance(old, bool):
            return f"{change.field!r} is not numeric"
        if not bounds.min <= change.value <= bounds.max:
            return f"{change.field}={change.value} is outside [{bounds.min}, {bounds.max}]"
        moved += float(old) != change.value
    if not moved and not any(rule.strip() for rule in draft.add_rules):
        return "the edit changes nothing: move at least one field to a new value"
    return None


def _notes(result: StructuredResult[Any]) -> list[str]:
    return [f"model call: {note}" for note in result.notes()]


def llm_diagnose(
    model: BaseChatModel,
    agent: str,
    harness: dict[str, Any],
    rubric: Rubric,
    runs: list[RunTrajectory],
    rubric_gradient: SemanticGradient,
    settings: dict[str, Any],
) -> tuple[SemanticGradient | None, str | None, list[str]]:
    """The model's gradient, or None with the reason; and the call's fallback notes.

    Items that name no evolvable field are dropped; a gradient without one usable item is
    asked again, then given up (the rubric's gradient stands).
    """
    criteria = "\n".join(
        f"- {name}: {c.finding.strip()} -> {c.field} ({c.direction})"
        for name, c in rubric.criteria.items()
    )
    result: StructuredResult[GradientDraft] = ask(
        model,
        _SYSTEM,
        load_prompt("evolution", "diagnose"),
        GradientDraft,
        settings,
        required={
            "agent": agent,
            "criteria": criteria,
            "evolvable": _evolvable(rubric),
            "version": str(harness.get("version", 1)),
            "harness": yaml.safe_dump(harness, sort_keys=False),
            "rubric_loss": rubric_gradient.loss_text,
        },
        optional=[Context(name="experiments", pieces=_experiment_lines(runs))],
        check=lambda draft: gradient_problem(draft, rubric),
    )
    if not result.ok or result.value is None:
        return None, result.error or "no reply", _notes(result)
    items = [
        GradientItem(
            criterion=d.criterion,
            category=d.category,
            finding=d.finding,
            field=d.field,
            direction=d.direction,
            magnitude=d.magnitude,
        )
        for d in result.value.items
        if d.field in rubric.evolvable  # an item with no field to move cannot be applied
    ]
    items.sort(key=lambda item: -item.magnitude)
    gradient = SemanticGradient(
        agent=agent,
        loss=round(sum(i.magnitude for i in items), 6),
        loss_text=result.value.loss_text,
        items=items,
        source="model",
    )
    return gradient, None, _notes(result)


def llm_refine(
    model: BaseChatModel,
    agent: str,
    gradient: SemanticGradient,
    harness: dict[str, Any],
    rubric: Rubric,
    tried: set[str],
    settings: dict[str, Any],
) -> tuple[HarnessEdit | None, str | None, list[str]]:
    """The model's edit, or None with the reason; and the call's fallback notes.

    An edit of a field that is not evolvable, out of bounds or not numeric, or one that
    changes nothing, is asked again, then given up (the rubric's refiner is used).
    """
    items = [
        f"- [{i.category}] {i.finding} -> {i.field} ({i.direction}, {i.magnitude:.2f})"
        for i in gradient.items
    ]
    result: StructuredResult[EditDraft] = ask(
        model,
        _SYSTEM,
        load_prompt("evolution", "refine"),
        EditDraft,
        settings,
        required={
            "agent": agent,
            "loss": gradient.loss_text,
            "evolvable": _evolvable(rubric),
            "version": str(harness.get("version", 1)),
            "harness": yaml.safe_dump(harness, sort_keys=False),
        },
        optional=[
            Context(name="items", pieces=items),
            Context(name="tried", pieces=sorted(tried), joiner=", "),
        ],
        check=lambda draft: edit_problem(draft, harness, rubric),
    )
    if not result.ok or result.value is None:
        return None, result.error or "no reply", _notes(result)
    edits = [
        FieldEdit(field=c.field, old=float(get_field(harness, c.field)), new=c.value)
        for c in result.value.changes
        if float(get_field(harness, c.field)) != c.value
    ]
    edit = HarnessEdit(
        agent=agent,
        edits=edits,
        add_rules=[r.strip() for r in result.value.add_rules if r.strip()],
        rationale=result.value.rationale,
        source="model",
    )
    if edit.key() in tried and not edit.add_rules:
        return None, f"the model repeated a rolled-back edit ({edit.key()})", _notes(result)
    return edit, None, _notes(result)
