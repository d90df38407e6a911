"""apply_edits: strict, atomic, confined to the worktree."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentx.models import Edit
from agentx.workspace.edits import EditError, apply_edits


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("X = 1\nY = 2\n")
    (root / "pkg" / "b.py").write_text("Z = 3\nZ = 3\n")
    (root / "config.toml").write_text("slots = 0  # off\n")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_literal_regex_and_new_file_edits_apply(repo: Path) -> None:
    changed = apply_edits(
        repo,
        [
            Edit(path="pkg/a.py", search="X = 1", replace="X = 10"),
            Edit(path="config.toml", search=r"^slots\s*=\s*\d+", replace="slots = 2", regex=True),
            Edit(path="pkg/new/c.py", search="", replace="W = 0\n"),
        ],
    )
    assert changed == ["config.toml", "pkg/a.py", "pkg/new/c.py"]
    assert (repo / "pkg" / "a.py").read_text() == "X = 10\nY = 2\n"
    assert (repo / "config.toml").read_text() == "slots = 2  # off\n"
    assert (repo / "pkg" / "new" / "c.py").read_text() == "W = 0\n"


def test_edits_of_one_file_chain(repo: Path) -> None:
    apply_edits(
        repo,
        [
            Edit(path="pkg/a.py", search="X = 1", replace="X = 5"),
            Edit(path="pkg/a.py", search="X = 5\nY", replace="X = 6\nY"),
        ],
    )
    assert (repo / "pkg" / "a.py").read_text() == "X = 6\nY = 2\n"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Edit(path="pkg/a.py", search="nope", replace="x"), "not found"),
        (Edit(path="pkg/b.py", search="Z = 3", replace="x"), "found 2 times"),
        (Edit(path="pkg/b.py", search=r"^Z", replace="x", regex=True), "matched 2 times"),
        (Edit(path="pkg/b.py", search="(", replace="x", regex=True), "invalid pattern"),
        (Edit(path="pkg/missing.py", search="a", replace="b"), "does not exist"),
        (Edit(path="pkg/a.py", search="", replace="b"), "empty search"),
        (Edit(path="pkg", search="a", replace="b"), "directory"),
    ],
)
def test_a_failing_batch_writes_nothing(repo: Path, bad: Edit, message: str) -> None:
    before = _snapshot(repo)
    good = [
        Edit(path="pkg/a.py", search="X = 1", replace="X = 99"),
        Edit(path="fresh/new.py", search="", replace="N = 1\n"),
    ]
    with pytest.raises(EditError, match=message):
        apply_edits(repo, [*good, bad])
    assert _snapshot(repo) == before
    assert not (repo / "fresh").exists()


@pytest.mark.parametrize(
    "path", ["../outside.py", "pkg/../../outside.py", "/etc/passwd", ".git/config", "link/x.py"]
)
def test_paths_outside_the_worktree_or_into_git_are_refused(repo: Path, path: str) -> None:
    outside = repo.parent / "elsewhere"
    outside.mkdir()
    (repo / "link").symlink_to(outside)  # a symlink that leads out of the worktree
    with pytest.raises(EditError, match="absolute|escapes|git internals"):
        apply_edits(repo, [Edit(path=path, search="", replace="pwned\n")])
    assert not (repo.parent / "outside.py").exists()
    assert not list(outside.iterdir())


def test_dry_run_proves_the_edits_apply_without_writing(repo: Path) -> None:
    before = _snapshot(repo)
    changed = apply_edits(repo, [Edit(path="pkg/a.py", search="Y = 2", replace="Y = 3")], True)
    assert changed == ["pkg/a.py"]
    assert _snapshot(repo) == before


def test_a_file_in_the_way_of_a_new_directory_is_refused(repo: Path) -> None:
    before = _snapshot(repo)
    with pytest.raises(EditError, match="is a file"):
        apply_edits(repo, [Edit(path="pkg/a.py/inner.py", search="", replace="x\n")])
    assert _snapshot(repo) == before
