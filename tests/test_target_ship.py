"""Shipping goes through the target contract (issue 16): the sandbox ships with git, once;
the loop's learn node asks the target and never merges by itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentx.graph.nodes import Nodes
from agentx.graph.resources import Resources
from agentx.graph.state import ExperimentOutcome, Finished, Scheduled
from agentx.graph.tracelog import read_trace
from agentx.models import Decision, Proposal, Verdict
from agentx.research.catalog import load_catalog
from agentx.settings import load_settings
from agentx.target.shipping import ShipResult, ship_git_worktree
from agentx.workspace import git


def _repo_with_change(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.toml").write_text("slots = 1\n")
    git.init_repository(repo, "baseline")
    worktree = git.add_worktree(repo, tmp_path / "wt", "exp/p-1-a1")
    (worktree.path / "config.toml").write_text("slots = 2\n")
    assert git.commit_all(worktree.path, "the change")
    return repo, worktree.path


def test_git_shipping_merges_the_change_once(tmp_path: Path) -> None:
    repo, worktree = _repo_with_change(tmp_path)
    before = git.head(repo)
    first = ship_git_worktree(repo, worktree, "Keep slots (e-1)")
    assert first.shipped and first.revision == git.head(repo) != before
    assert (repo / "config.toml").read_text() == "slots = 2\n"
    again = ship_git_worktree(repo, worktree, "Keep slots (e-1)")  # a resumed learn
    assert not again.shipped and again.revision == first.revision == git.head(repo)
    assert len(git.subjects(repo, before, "HEAD")) == 2  # the change and one merge, not two


def test_the_sandbox_target_ships_through_the_contract(tmp_path: Path, tiny_target) -> None:
    assert callable(tiny_target.ship)  # the sandbox implements the contract's ship
    repo, worktree = _repo_with_change(tmp_path)
    assert ship_git_worktree(repo, worktree, "m").shipped


class _PlatformTarget:
    """A team's target whose baseline is a deployment platform, not a local git repo: it
    records what it was asked to ship (every other call goes to the real sandbox)."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.shipped: list[tuple[Path, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def ship(self, workdir: Path, message: str) -> ShipResult:
        self.shipped.append((workdir, message))
        return ShipResult(revision="deploy-42", shipped=True)


def test_learn_ships_a_kept_change_through_the_target(tmp_path: Path, tiny_target) -> None:
    from agentx.agents.developing.agent import Developer
    from agentx.harness import load_harness
    from agentx.memory.store import open_store

    settings = load_settings(world="tiny", workspace=tmp_path / "ws")
    target = _PlatformTarget(tiny_target)
    catalog = load_catalog()
    developer = Developer(target, catalog, tmp_path / "worktrees", load_harness("developing"))
    proposal = Proposal(
        id="p-ship",
        technique="exploration_slots",
        lever="test",
        params={"slots": 2},
        hypothesis="test",
        target_metric="watch_time",
        implementation_location=["config.toml"],
    )
    patch, applied = developer.implement(proposal, 1)
    assert applied.passed
    baseline = git.head(tiny_target.repo_path)
    resources = Resources(
        settings=settings,
        target=target,  # type: ignore[arg-type]
        store=open_store(settings.workspace, settings.memory, settings.embeddings),
        catalog=catalog,
        developer=developer,
        world_name="tiny",
    )
    verdict = Verdict(experiment_id="e-ship", decision=Decision.KEEP)
    outcome = ExperimentOutcome(patch=patch, verdict=verdict)
    scheduled = Scheduled(iteration=0, proposal=proposal)
    state = {
        "run_id": "run-ship",
        "goal": None,
        "finished": [Finished(scheduled=scheduled, proposal=proposal, outcome=outcome)],
    }
    from agentx.agents.brainstorm.intake import parse_goal

    state["goal"] = parse_goal("raise watch time", ["watch_time"], ["active_days"])
    update = Nodes(resources).learn(state)  # type: ignore[arg-type]
    [(workdir, message)] = target.shipped
    assert workdir == Path(patch.worktree) and "exploration_slots" in message
    assert git.head(tiny_target.repo_path) == baseline  # the loop merged nothing itself
    assert update["experiments"][0].status.value == "kept"
    [event] = [e for e in read_trace(settings.workspace, "run-ship") if e.node == "learn"]
    assert event.data["shipped"] == "deploy-42"
