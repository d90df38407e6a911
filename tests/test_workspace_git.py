"""Worktrees and branches: isolated, diffable, and gone without residue."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentx.workspace import git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "a.py").write_text("A = 1\n")
    (root / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    git.init_repository(root, "baseline")
    return root


def test_worktree_changes_leave_the_baseline_alone(repo: Path, tmp_path: Path) -> None:
    tree = git.add_worktree(repo, tmp_path / "wt", "exp/x-a1")
    assert tree.base == git.head(repo)
    (tree.path / "a.py").write_text("A = 2\n")
    git.commit_all(tree.path, "change")
    assert (repo / "a.py").read_text() == "A = 1\n"
    assert git.head(repo) == tree.base


def test_diff_lists_both_ends_of_a_rename(repo: Path, tmp_path: Path) -> None:
    tree = git.add_worktree(repo, tmp_path / "wt", "exp/x-a1")
    (tree.path / "tests" / "test_a.py").rename(tree.path / "moved.py")
    files, lines = git.diff_stats(tree.path, tree.base)
    assert sorted(files) == ["moved.py", "tests/test_a.py"]  # the protected path is visible
    assert lines == 4
    assert "rename from" not in git.diff(tree.path, tree.base)


def test_remove_and_delete_branches_leave_no_residue(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "wt"
    git.add_worktree(repo, path, "exp/x-a1")
    (path / "a.py").write_text("A = 3\n")
    git.commit_all(path, "attempt 1")
    git.add_worktree(repo, path, "exp/x-a2", base="exp/x-a1")
    assert git.branches(repo, "exp/x-a*") == ["exp/x-a1", "exp/x-a2"]
    git.remove_worktree(repo, path, "exp/x-a2")
    assert git.delete_branches(repo, "exp/x-a*") == ["exp/x-a1"]
    assert not path.exists()
    assert git.branches(repo, "exp/*") == []
    assert git.worktree_paths(repo) == [repo.resolve()]


def test_restore_clean_removes_what_a_run_left_behind(repo: Path, tmp_path: Path) -> None:
    tree = git.add_worktree(repo, tmp_path / "wt", "exp/x-a1")
    (tree.path / "stray.bin").write_bytes(b"x")
    (tree.path / "a.py").write_text("A = 42\n")
    stray = git.restore_clean(tree.path)
    assert sorted(stray) == ["a.py", "stray.bin"]
    assert not (tree.path / "stray.bin").exists()
    assert (tree.path / "a.py").read_text() == "A = 1\n"
    assert git.restore_clean(tree.path) == []
