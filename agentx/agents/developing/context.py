"""Grounding: what the agent reads before it edits.

The context of a change is the repository map (files and their top-level symbols), the
configuration keys, the registered features and the logged-data schema (from
``Target.describe``), the technique's note, and the relevant spans of the files the change
may touch (:mod:`agentx.agents.developing.spans`), never whole files. A technique's
stated preconditions are checked against the same facts, so a recipe that relies on a
missing config key or data field fails grounding before any of its code runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from agentx.research.catalog import Technique
from agentx.target.models import SystemDescription

_CONFIG_PRECONDITION = re.compile(r"^([\w.]+)\s+exists in config\.toml$")
_FIELD_PRECONDITION = re.compile(r"^(\w+)\.(\w+)\s+is logged$")
_VALUE_PRECONDITION = re.compile(r"^(\w+\.\w+)\s+is\s+\"([^\"]*)\"$")
_SYMBOL_PRECONDITION = re.compile(r"^((?:\w+\.)+)(\w+)\s+exists$")
_PATH_IN_TEXT = re.compile(r"[\w./-]+\.py\b")


def repo_map(system: SystemDescription, limit: int = 60) -> str:
    """One line per file: its path and top-level symbols."""
    lines = []
    for info in system.files[:limit]:
        symbols = ", ".join(
            f"{s.name}()" if s.kind == "function" else s.name for s in info.symbols[:25]
        )
        lines.append(f"- {info.path}: {symbols or '(no top-level symbols)'}")
    return "\n".join(lines) or "(no files)"


def config_keys(system: SystemDescription) -> str:
    """``section.key = value`` lines of the target's configuration."""
    return "\n".join(f"- {key} = {value!r}" for key, value in system.config_keys.items()) or "-"


def unmet_preconditions(technique: Technique, system: SystemDescription) -> list[str]:
    """Preconditions of ``technique`` the target visibly does not meet.

    Understood forms: ``<section.key> exists in config.toml``, ``<section.key> is
    "<value>"``, ``<table>.<field> is logged`` and ``<package.module>.<symbol> exists``;
    other preconditions are prose for the model and not checked here.
    """
    symbols = {info.path: {s.name for s in info.symbols} for info in system.files}
    problems = []
    for text in technique.preconditions:
        statement = text.strip()
        if match := _CONFIG_PRECONDITION.match(statement):
            key = match.group(1)
            if system.config_keys and key not in system.config_keys:
                problems.append(f"config key {key} does not exist")
        elif match := _FIELD_PRECONDITION.match(statement):
            table, field = match.groups()
            if system.data_fields and field not in system.data_fields.get(table, []):
                problems.append(f"logged field {table}.{field} does not exist")
        elif match := _VALUE_PRECONDITION.match(statement):
            key, wanted = match.groups()
            if key in system.config_keys and str(system.config_keys[key]) != wanted:
                problems.append(f"config {key} is {system.config_keys[key]!r}, not {wanted!r}")
        elif match := _SYMBOL_PRECONDITION.match(statement):
            module = match.group(1).rstrip(".").replace(".", "/") + ".py"
            if module in symbols and match.group(2) not in symbols[module]:
                problems.append(f"{module} defines no {match.group(2)}")
    return problems


def relevant_files(
    root: Path, named: list[str], changed: list[str], evidence: str = ""
) -> list[str]:
    """Files the model should see: the named locations, the files already changed, and
    repository files that the failure evidence mentions (e.g. in a traceback)."""
    mentioned = []
    for token in _PATH_IN_TEXT.findall(evidence):
        for candidate in (token, *_suffixes(token)):
            if (root / candidate).is_file() and ".git" not in Path(candidate).parts:
                mentioned.append(candidate)
                break
    ordered: list[str] = []
    for name in [*named, *changed, *mentioned]:
        clean = name.strip().removeprefix("./")
        if clean and clean not in ordered and (root / clean).is_file():
            ordered.append(clean)
    return ordered


def _suffixes(token: str) -> list[str]:
    """``/abs/worktree/recsys/x.py`` -> ``recsys/x.py``, ``x.py``: paths relative to a root."""
    parts = Path(token).parts
    return [str(Path(*parts[i:])) for i in range(1, len(parts))]
