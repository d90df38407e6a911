"""Read a unified diff (as ``git diff`` writes it) into what each file gained and lost.

The rules look only at what a change adds, with the new line numbers, so a defect that
was already in the baseline is never blamed on the experiment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass
class FileDiff:
    """The lines one file gained (with new line numbers) and lost."""

    path: str
    added: list[tuple[int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def added_numbers(self) -> set[int]:
        """New line numbers of the added lines."""
        return {number for number, _ in self.added}


def parse_diff(text: str) -> dict[str, FileDiff]:
    """Files of a unified diff keyed by their new path (old path for deletions)."""
    files: dict[str, FileDiff] = {}
    current: FileDiff | None = None
    old_path = ""
    line_no = 0
    for line in text.splitlines():
        if line.startswith("diff --git "):
            current, old_path = None, ""
        elif line.startswith("--- "):
            old_path = line[4:].removeprefix("a/")
        elif line.startswith("+++ "):
            new_path = line[4:].removeprefix("b/")
            path = old_path if new_path == "/dev/null" else new_path
            current = files.setdefault(path, FileDiff(path))
        elif match := _HUNK.match(line):
            line_no = int(match.group(1))
        elif current is None:
            continue
        elif line.startswith("+"):
            current.added.append((line_no, line[1:]))
            line_no += 1
        elif line.startswith("-"):
            current.removed.append(line[1:])
        elif line.startswith(" "):
            line_no += 1
    return files
