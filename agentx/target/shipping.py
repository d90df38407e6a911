"""Shipping a kept change: the contract's result, and the git implementation targets whose
baseline is a local git repository can use.

Why in the contract: the loop used to merge the change's branch into the target's
repository itself, so a team whose baseline is not a local git repository (a
deployment platform, a config service, a model registry) could not ship. The loop now
asks the target to ``ship`` a verified worktree; the sandbox does it with git.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from agentx.workspace import git


class ShipResult(BaseModel):
    """What shipping a change did to the baseline."""

    revision: str = Field(description="The baseline's revision after shipping.")
    shipped: bool = Field(description="False when the change was already in the baseline.")


def ship_git_worktree(repo: Path, workdir: Path, message: str) -> ShipResult:
    """Merge the branch checked out in ``workdir`` into ``repo``'s baseline, once.

    Idempotent: a change whose commit the baseline already contains (a run resumed after
    the merge but before its checkpoint) is not merged again; nor is one whose worktree is
    gone (removed after it shipped) when the baseline has its merge ``message``.

    Raises:
        git.GitError: the worktree is gone and the baseline never took the change.
    """
    if not workdir.is_dir():
        subjects = git.git(repo, "log", "--format=%s").splitlines()
        if message in subjects:
            return ShipResult(revision=git.head(repo), shipped=False)
        raise git.GitError(f"the worktree {workdir} is gone and {message!r} was never merged")
    branch = git.git(workdir, "rev-parse", "--abbrev-ref", "HEAD").strip()
    change = git.head(workdir)
    if git.is_ancestor(repo, change):
        return ShipResult(revision=git.head(repo), shipped=False)
    return ShipResult(revision=git.merge_branch(repo, branch, message), shipped=True)
