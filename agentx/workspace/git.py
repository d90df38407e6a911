"""Git operations on a target repository through the git CLI.

Each experiment works in its own worktree and branches; the baseline branch is only
changed by :func:`merge_branch` when an experiment is kept. Diffs never detect renames,
so every path a change touches (old and new) shows up in the file list that the scope
and protected-path checks read.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

_IDENTITY = ["-c", "user.name=AgentX", "-c", "user.email=agentx@localhost"]


class GitError(RuntimeError):
    """A git command failed; the message holds git's own explanation."""


# One git command at a time in this process: experiments of a wave add and remove worktrees
# and branches of the same repository side by side, and git's own lock files
# (index.lock, packed-refs.lock) make a concurrent second command fail rather than wait.
_LOCK = threading.RLock()


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run ``git args`` in ``repo`` and return stdout."""
    with _LOCK:
        result = _run(repo, args)
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _run(repo: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *_IDENTITY, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )


def init_repository(path: Path, message: str) -> str:
    """Make ``path`` a git repository with everything committed on ``main``."""
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return head(path)


def head(repo: Path, ref: str = "HEAD") -> str:
    """Commit id of ``ref``."""
    return git(repo, "rev-parse", ref).strip()


@dataclass(frozen=True)
class Worktree:
    """An isolated checkout of the target repository for one experiment."""

    path: Path
    branch: str
    base: str


def add_worktree(repo: Path, path: Path, branch: str, base: str = "HEAD") -> Worktree:
    """Create ``branch`` from ``base`` checked out at ``path`` (replacing leftovers).

    ``base`` defaults to the repository's checked-out baseline, whatever its branch name.
    """
    remove_worktree(repo, path, branch)
    path.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "-q", "-b", branch, str(path), base)
    return Worktree(path=path, branch=branch, base=head(repo, base))


def remove_worktree(repo: Path, path: Path, branch: str | None = None) -> None:
    """Remove a worktree and (optionally) its branch; missing ones are fine."""
    if path.exists():
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
    git(repo, "worktree", "prune", check=False)
    if branch and git(repo, "branch", "--list", branch, check=False).strip():
        git(repo, "branch", "-q", "-D", branch, check=False)


def branches(repo: Path, pattern: str) -> list[str]:
    """Local branches matching the glob ``pattern`` (e.g. ``exp/abc-a*``)."""
    out = git(repo, "branch", "--list", "--format=%(refname:short)", pattern, check=False)
    return [line.strip() for line in out.splitlines() if line.strip()]


def delete_branches(repo: Path, pattern: str) -> list[str]:
    """Delete every local branch matching ``pattern``; return their names."""
    names = branches(repo, pattern)
    for name in names:
        git(repo, "branch", "-q", "-D", name, check=False)
    return names


def worktree_paths(repo: Path) -> list[Path]:
    """Paths of every worktree git knows for ``repo`` (the main checkout first)."""
    out = git(repo, "worktree", "list", "--porcelain")
    return [Path(line[9:]) for line in out.splitlines() if line.startswith("worktree ")]


def restore_clean(worktree: Path) -> list[str]:
    """Put ``worktree`` back at its last commit; return the stray paths removed or reset.

    Running code in a worktree may leave files behind; removing them keeps what is
    launched and merged identical to what was committed and verified.
    """
    stray = [line[3:] for line in git(worktree, "status", "--porcelain", "--ignored").splitlines()]
    if stray:
        git(worktree, "reset", "-q", "--hard", "HEAD")
        git(worktree, "clean", "-q", "-f", "-d", "-x")
    return stray


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit every change in ``worktree``; None when there was nothing to commit."""
    git(worktree, "add", "-A")
    if not git(worktree, "status", "--porcelain").strip():
        return None
    git(worktree, "commit", "-q", "-m", message)
    return head(worktree)


def commit_empty(worktree: Path, message: str) -> str:
    """Record an event (e.g. an unchanged retry) as an empty commit; return its id."""
    git(worktree, "commit", "-q", "--allow-empty", "-m", message)
    return head(worktree)


def subjects(repo: Path, base: str, ref: str) -> list[str]:
    """Subject lines of the commits in ``ref`` that are not in ``base``, newest first."""
    return git(repo, "log", "--format=%s", f"{base}..{ref}").splitlines()


def diff(worktree: Path, base: str) -> str:
    """Unified diff of the worktree (committed and not) against ``base``."""
    git(worktree, "add", "-A")
    return git(worktree, "diff", "--cached", "--no-renames", base)


def diff_stats(worktree: Path, base: str) -> tuple[list[str], int]:
    """Files touched and lines added+removed against ``base``."""
    git(worktree, "add", "-A")
    out = git(worktree, "diff", "--cached", "--numstat", "--no-renames", base)
    files, lines = [], 0
    for row in out.splitlines():
        added, removed, name = row.split("\t", 2)
        files.append(name)
        lines += int(added if added != "-" else 0) + int(removed if removed != "-" else 0)
    return files, lines


def merge_branch(repo: Path, branch: str, message: str) -> str:
    """Merge ``branch`` into the checked-out baseline (main) of ``repo``."""
    git(repo, "merge", "-q", "--no-ff", "-m", message, branch)
    return head(repo)


def is_ancestor(repo: Path, commit: str, ref: str = "HEAD") -> bool:
    """True when ``commit`` is already contained in ``ref`` (e.g. already merged)."""
    result = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, ref], cwd=repo, capture_output=True
    )
    return result.returncode == 0
