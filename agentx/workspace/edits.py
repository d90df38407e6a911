"""Strict application of search/replace edits.

A literal ``search`` must occur exactly once in its file; a regex ``search`` must match
exactly once. Anything else is an :class:`EditError` naming the file and the problem,
which the Developing Agent treats as a verification failure, not a crash. All edits of
a batch are checked before any file is written, so a failing batch changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from agentx.models import Edit


class EditError(ValueError):
    """An edit could not be applied exactly."""


def _resolve(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        raise EditError(f"{relative}: path escapes the worktree")
    return path


def _apply_one(text: str, edit: Edit) -> str:
    if edit.regex:
        pattern = re.compile(edit.search, re.MULTILINE)
        matches = list(pattern.finditer(text))
        if len(matches) != 1:
            raise EditError(f"{edit.path}: pattern {edit.search!r} matched {len(matches)} times")
        return pattern.sub(lambda _m: edit.replace, text, count=1)
    count = text.count(edit.search)
    if count != 1:
        snippet = edit.search.strip().splitlines()[0][:80] if edit.search.strip() else "(empty)"
        raise EditError(f"{edit.path}: search text {snippet!r} found {count} times, expected 1")
    return text.replace(edit.search, edit.replace, 1)


def apply_edits(root: Path, edits: list[Edit], dry_run: bool = False) -> list[str]:
    """Apply ``edits`` under ``root`` atomically; return the files changed.

    A ``search`` of ``""`` on a file that does not exist creates it with ``replace``.
    With ``dry_run`` nothing is written: the call only proves the edits apply.
    """
    pending: dict[Path, str] = {}
    for edit in edits:
        path = _resolve(root, edit.path)
        if path in pending:
            current = pending[path]
        elif path.exists():
            current = path.read_text()
        elif edit.search == "" and not edit.regex:
            pending[path] = edit.replace
            continue
        else:
            raise EditError(f"{edit.path}: file does not exist")
        pending[path] = _apply_one(current, edit)
    for path, text in pending.items():
        if dry_run:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(str(path.relative_to(root.resolve())) for path in pending)
