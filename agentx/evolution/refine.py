"""The refiner: turn a semantic gradient into an edit of the harness.

Offline it moves the field of the strongest gradient item not already tried from this base
version (the refinement experience) by one multiplicative step within the rubric's bounds.
"""

from __future__ import annotations

import copy
from typing import Any

from agentx.evolution.models import FieldEdit, GradientItem, HarnessEdit, SemanticGradient
from agentx.evolution.rubric import Rubric, get_field, set_field


def step_value(old: float, direction: str, step: float, low: float, high: float) -> float:
    """One step of ``old`` in ``direction``, clipped to ``[low, high]``.

    Multiplicative, so a step is the same relative size for a weight of 3 and a standard
    deviation of 0.02; a field at zero moves to a tenth of its range.
    """
    if old == 0.0:
        new = 0.1 * (high - low) + low if direction == "increase" else 0.0
    else:
        new = old * step if direction == "increase" else old / step
    return round(min(max(new, low), high), 6)


def edit_for_item(
    agent: str, item: GradientItem, harness: dict[str, Any], rubric: Rubric
) -> HarnessEdit | None:
    """The one-field edit a gradient item asks for, or None if it cannot move."""
    if item.field is None or item.field not in rubric.evolvable:
        return None
    try:
        old = get_field(harness, item.field)
    except KeyError:
        return None
    if not isinstance(old, int | float) or isinstance(old, bool):
        return None
    bounds = rubric.evolvable[item.field]
    new = step_value(float(old), item.direction, rubric.step, bounds.min, bounds.max)
    if new == float(old):
        return None
    return HarnessEdit(
        agent=agent,
        edits=[FieldEdit(field=item.field, old=float(old), new=new)],
        rationale=f"{item.criterion}: {item.finding}",
    )


def refine_offline(
    agent: str,
    gradient: SemanticGradient,
    harness: dict[str, Any],
    rubric: Rubric,
    tried: set[str],
) -> HarnessEdit | None:
    """The strongest untried one-field edit the gradient supports, or None."""
    for item in gradient.items:
        edit = edit_for_item(agent, item, harness, rubric)
        if edit is not None and edit.key() not in tried:
            return edit
    return None


def apply_edit(harness: dict[str, Any], edit: HarnessEdit) -> dict[str, Any]:
    """A copy of ``harness`` with the edit's field values and added rules."""
    updated = copy.deepcopy(harness)
    for change in edit.edits:
        old = get_field(updated, change.field)
        value: Any = int(round(change.new)) if isinstance(old, int) else change.new
        set_field(updated, change.field, value)
    if edit.add_rules:
        rules = list(updated.get("rules") or [])
        updated["rules"] = rules + [r for r in edit.add_rules if r not in rules]
    return updated
