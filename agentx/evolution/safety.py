"""Is an edit safe to try? It may only move evolvable fields within bounds, add rules, and
change prompt templates; never the rubric, the verifiers or any protected path."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from agentx.evolution.models import HarnessEdit
from agentx.evolution.rubric import PROTECTED_FILES, Rubric, get_field

MAX_RULE_CHARS = 400
MAX_RULES_ADDED = 3


def unsafe_reasons(edit: HarnessEdit, harness: dict[str, Any], rubric: Rubric) -> list[str]:
    """Every reason the edit is unsafe (empty = safe)."""
    problems: list[str] = []
    for change in edit.edits:
        bounds = rubric.evolvable.get(change.field)
        if bounds is None:
            problems.append(f"{change.field} is not an evolvable field")
            continue
        try:
            current = get_field(harness, change.field)
        except KeyError:
            problems.append(f"{change.field} does not exist in the harness")
            continue
        if not isinstance(current, int | float) or isinstance(current, bool):
            problems.append(f"{change.field} is not numeric")
        if not bounds.min <= change.new <= bounds.max:
            problems.append(f"{change.field}={change.new} is outside [{bounds.min}, {bounds.max}]")
    if len(edit.add_rules) > MAX_RULES_ADDED:
        problems.append(f"adds {len(edit.add_rules)} rules (at most {MAX_RULES_ADDED})")
    problems += [
        f"rule longer than {MAX_RULE_CHARS} characters"
        for rule in edit.add_rules
        if len(rule) > MAX_RULE_CHARS
    ]
    for name in edit.files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or len(path.parts) != 1:
            problems.append(f"{name}: only files of the agent's own directory may change")
        elif path.name in PROTECTED_FILES or path.name == "harness.yaml":
            problems.append(f"{name} is protected")
        elif path.suffix != ".md":
            problems.append(f"{name}: only prompt templates (.md) may be rewritten")
    if not (edit.edits or edit.add_rules or edit.files):
        problems.append("the edit changes nothing")
    return problems
