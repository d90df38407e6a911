"""Repository states as content-addressed directories, shared by every strategy of a world.

A state is a plain copy of a recommender repository (no git), named by the same content hash
the sandbox uses for its arm snapshots and ground-truth cache. Strategies that reach the
same code (the loop and random search often test the same first change) share one
directory and one ground truth.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from agentx.models import Edit
from agentx.sandbox.target import content_hash
from agentx.workspace.edits import apply_edits

_SKIP = (".git", "__pycache__", ".pytest_cache", ".ruff_cache")


class StateError(RuntimeError):
    """A change could not be applied to a state; the message says which and why."""


class StateStore:
    """Content-addressed repository states under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _scratch(self, base: Path) -> Path:
        scratch = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root)) / "repo"
        shutil.copytree(base, scratch, ignore=shutil.ignore_patterns(*_SKIP))
        return scratch

    def _seal(self, scratch: Path) -> Path:
        key = content_hash(scratch)
        final = self.root / key
        if final.exists() and content_hash(final) == key:
            shutil.rmtree(scratch.parent, ignore_errors=True)
            return final
        shutil.rmtree(final, ignore_errors=True)
        scratch.replace(final)
        shutil.rmtree(scratch.parent, ignore_errors=True)
        return final

    def adopt(self, source: Path) -> Path:
        """The state of the repository at ``source`` (a copy, so later edits there do not
        change it)."""
        return self._seal(self._scratch(Path(source)))

    def with_edits(self, base: Path, edits: list[Edit]) -> Path:
        """``base`` with ``edits`` applied (as the offline Developing Agent applies a recipe).

        Raises:
            StateError: an edit does not apply.
        """
        scratch = self._scratch(base)
        try:
            apply_edits(scratch, edits)
        except Exception as error:
            shutil.rmtree(scratch.parent, ignore_errors=True)
            raise StateError(f"edits do not apply to {base.name}: {error}") from None
        return self._seal(scratch)

    def with_diff(self, base: Path, diff: str) -> Path:
        """``base`` with a unified git diff applied (how a loop experiment's treatment is
        rebuilt from its recorded patch).

        Raises:
            StateError: the diff does not apply.
        """
        scratch = self._scratch(base)
        patch = scratch.parent / "change.diff"
        patch.write_text(diff if diff.endswith("\n") else diff + "\n")
        # A throwaway repository, so git does not resolve paths against an enclosing one.
        commands = [["git", "init", "-q"], ["git", "apply", "--whitespace=nowarn", str(patch)]]
        for command in commands:
            done = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(scratch.parent, ignore_errors=True)
                raise StateError(f"recorded diff does not apply to {base.name}: {done.stderr}")
        shutil.rmtree(scratch / ".git", ignore_errors=True)
        patch.unlink()
        return self._seal(scratch)
