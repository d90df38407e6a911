"""Strict application of search/replace edits.

A literal ``search`` must occur exactly once in its file; a regex ``search`` must match
exactly once. Anything else is an :class:`EditError` naming the file and the problem,
which the Developing Agent treats as a verification failure (fed back to the model), not
a crash. Edits are applied in two phases: every edit of a batch is computed in memory
first, so a batch with one bad edit writes nothing; then the files are replaced, and if
the file system fails midway the files already replaced are restored.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from agentx.models import Edit


class EditError(ValueError):
    """An edit could not be applied exactly."""


def _resolve(root: Path, relative: str) -> Path:
    """The file ``relative`` names under ``root``; refuse escapes and git internals."""
    if not relative.strip():
        raise EditError("an edit has an empty path")
    if Path(relative).is_absolute():
        raise EditError(f"{relative}: absolute paths are not allowed; use a repository path")
    if ".git" in Path(relative).parts:
        raise EditError(f"{relative}: git internals cannot be edited")
    base = root.resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise EditError(f"{relative}: path escapes the worktree")
    return path


def read_inside(root: Path, relative: str) -> str:
    """Text of the file ``relative`` under ``root``, refusing a path (or a symlink) that leads out.

    Everything the parent reads from a worktree may end up in a check detail or a
    prompt; code that ran there may have left a symlink to a file of the host.

    Raises:
        EditError: the path escapes ``root``.
        OSError: the file cannot be read.
    """
    return _resolve(root, relative).read_text(errors="replace")


def _apply_one(text: str, edit: Edit) -> str:
    if edit.regex:
        try:
            pattern = re.compile(edit.search, re.MULTILINE)
        except re.error as error:
            raise EditError(f"{edit.path}: invalid pattern {edit.search!r}: {error}") from None
        matches = list(pattern.finditer(text))
        if len(matches) != 1:
            raise EditError(f"{edit.path}: pattern {edit.search!r} matched {len(matches)} times")
        return pattern.sub(lambda _m: edit.replace, text, count=1)
    if not edit.search:
        raise EditError(f"{edit.path}: empty search text on an existing file")
    count = text.count(edit.search)
    if count != 1:
        snippet = edit.search.strip().splitlines()[0][:80] if edit.search.strip() else "(blank)"
        where = "not found" if count == 0 else f"found {count} times"
        raise EditError(
            f"{edit.path}: search text {snippet!r} {where}, expected exactly once "
            "(copy it verbatim from the current file)"
        )
    return text.replace(edit.search, edit.replace, 1)


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text()
    except IsADirectoryError:
        raise EditError(f"{name}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise EditError(f"{name}: not a UTF-8 text file") from None
    except OSError as error:
        raise EditError(f"{name}: cannot read ({error.strerror})") from None


def plan_edits(root: Path, edits: list[Edit]) -> dict[Path, str]:
    """The new text of every file ``edits`` change, computed without writing anything.

    A ``search`` of ``""`` on a file that does not exist creates it with ``replace``.
    """
    pending: dict[Path, str] = {}
    for edit in edits:
        path = _resolve(root, edit.path)
        if path in pending:
            current = pending[path]
        elif path.exists():
            current = _read(path, edit.path)
        elif edit.search == "" and not edit.regex:
            pending[path] = edit.replace
            continue
        else:
            raise EditError(f"{edit.path}: file does not exist")
        pending[path] = _apply_one(current, edit)
    for path in pending:
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                raise EditError(f"{path.relative_to(root.resolve())}: {parent.name} is a file")
            if parent == root.resolve():
                break
    return pending


def _commit(pending: dict[Path, str]) -> None:
    """Replace each file by its new text; on failure restore what was already replaced."""
    originals: dict[Path, str | None] = {}
    created_dirs: list[Path] = []
    try:
        for path, text in pending.items():
            originals[path] = path.read_text() if path.exists() else None
            missing = [p for p in reversed(path.parents) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            created_dirs += missing
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                if path.exists():
                    os.chmod(temp, path.stat().st_mode & 0o7777)
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
    except OSError as error:
        for path, original in originals.items():
            if original is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(original)
        for directory in reversed(created_dirs):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise EditError(f"writing the edits failed, nothing was changed: {error}") from None


def apply_edits(root: Path, edits: list[Edit], dry_run: bool = False) -> list[str]:
    """Apply ``edits`` under ``root`` atomically; return the files changed (sorted).

    With ``dry_run`` nothing is written: the call only proves the edits apply.

    Raises:
        EditError: an edit does not apply exactly, a path escapes ``root`` or names git
            internals, or writing failed (then every file is as it was).
    """
    pending = plan_edits(root, edits)
    if not dry_run:
        _commit(pending)
    return sorted(str(path.relative_to(root.resolve())) for path in pending)
