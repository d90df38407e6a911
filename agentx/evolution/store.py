"""Versioned harnesses, the refinement experience and the trajectory archive of a workspace.

Layout under ``<workspace>/harness``::

    active.json                     {"brainstorm": 3, ...}: the version each agent runs
    <agent>/v<N>/<agent>/...        a full copy of the agent's prompts/ directory at version N
    steps.jsonl                     every SGPO step, kept or rolled back (refinement experience)
    trajectories/<run_id>.json      each run's experiment records, for diagnosis and replay

Why copies under the workspace and not edits of ``prompts/``: the bundled harness is the
versioned source of truth in git; evolution is per workspace, so runs never dirty the
checkout, and deleting the workspace restores the bundled harness. Every write goes to a
temporary path first and is renamed into place, so a killed process leaves either the old or
the new version, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from agentx.evolution.models import EvolutionStep
from agentx.harness import HarnessError, default_prompts_dir, load_harness
from agentx.models import ExperimentRecord


class RunTrajectory(BaseModel):
    """The experiments of one run, with the context needed to replay them."""

    run_id: str
    world: str
    objective: str
    direction: str = "increase"
    north_star: str
    seed: int = 0
    saved_at: float = Field(default_factory=time.time)
    records: list[ExperimentRecord] = Field(default_factory=list)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class HarnessStore:
    """The evolving harnesses of one workspace."""

    def __init__(self, root: Path, bundled: Path | None = None):
        self.root = Path(root)
        self.bundled = bundled or default_prompts_dir()

    # ------------------------------------------------------------------ versions
    def _active(self) -> dict[str, int]:
        path = self.root / "active.json"
        if not path.exists():
            return {}
        try:
            active = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise HarnessError(
                f"{path} is unreadable ({error}); delete it to run the bundled harnesses"
            ) from None
        if not isinstance(active, dict) or not all(isinstance(v, int) for v in active.values()):
            raise HarnessError(f"{path} must map agent names to version numbers; delete it")
        return active

    def prompts_dir(self, agent: str) -> Path:
        """The prompts root holding the active version of ``agent`` (as ``<root>/<agent>``)."""
        version = self._active().get(agent)
        if version is None:
            return self.bundled
        folder = self.root / agent / f"v{version}"
        if not (folder / agent / "harness.yaml").is_file():
            raise HarnessError(
                f"active {agent} harness v{version} is missing from {folder}; remove "
                f"{agent!r} from {self.root / 'active.json'} to run the bundled one"
            )
        return folder

    def harness(self, agent: str) -> dict[str, Any]:
        """The active harness mapping of ``agent``."""
        return load_harness(agent, self.prompts_dir(agent))

    def version(self, agent: str) -> int:
        """The active version number of ``agent``."""
        return int(self.harness(agent).get("version", 1))

    def versions(self, agent: str) -> list[int]:
        """Every version of ``agent`` this workspace holds, bundled one first."""
        bundled = int(load_harness(agent, self.bundled).get("version", 1))
        folder = self.root / agent
        kept = (
            sorted(int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit())
            if folder.exists()
            else []
        )
        return [bundled, *[v for v in kept if v != bundled]]

    def commit(self, agent: str, harness: dict[str, Any], files: dict[str, str], note: str) -> int:
        """Write a new version of ``agent`` from the active one and make it active.

        Args:
            harness: the new ``harness.yaml`` mapping (its version is set here).
            files: other files of the agent's directory to replace (relative path -> text).
            note: why this version exists, written at the top of its ``harness.yaml``.
        """
        base = self.prompts_dir(agent) / agent
        number = max(self.versions(agent)) + 1
        final = self.root / agent / f"v{number}"
        staging = self.root / agent / f".v{number}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(base, staging / agent)
        for relative, text in files.items():
            (staging / agent / relative).write_text(text)
        body = yaml.safe_dump({**harness, "version": number}, sort_keys=False)
        header = "".join(f"# {line}\n" for line in note.splitlines())
        (staging / agent / "harness.yaml").write_text(header + body)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        _write_atomic(self.root / "active.json", json.dumps({**self._active(), agent: number}))
        return number

    # ------------------------------------------------------------------ experience
    def record_step(self, step: EvolutionStep) -> None:
        """Append a step to the ledger (kept edits and rolled-back refinement experience)."""
        path = self.root / "steps.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(step.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def steps(self, agent: str | None = None) -> list[EvolutionStep]:
        """Recorded steps, oldest first; a torn last line (killed writer) is skipped."""
        path = self.root / "steps.jsonl"
        if not path.exists():
            return []
        steps: dict[str, EvolutionStep] = {}
        for line in path.read_text().splitlines():
            try:
                step = EvolutionStep.model_validate_json(line)
            except ValidationError:
                continue
            if agent is None or step.agent == agent:
                steps[step.id] = step
        return list(steps.values())

    def step(self, step_id: str) -> EvolutionStep | None:
        """A recorded step by id (a resumed run reuses it instead of redoing it)."""
        return next((s for s in self.steps() if s.id == step_id), None)

    # ------------------------------------------------------------------ trajectories
    def save_trajectory(self, trajectory: RunTrajectory) -> None:
        """Store (replace) a run's trajectory."""
        path = self.root / "trajectories" / f"{trajectory.run_id}.json"
        if path.exists():
            previous = RunTrajectory.model_validate_json(path.read_text())
            trajectory = trajectory.model_copy(update={"saved_at": previous.saved_at})
        _write_atomic(path, trajectory.model_dump_json())

    def trajectories(self) -> list[RunTrajectory]:
        """Every stored run trajectory, in the order runs were first saved."""
        folder = self.root / "trajectories"
        runs = []
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                runs.append(RunTrajectory.model_validate_json(path.read_text()))
            except ValidationError:
                continue
        return sorted(runs, key=lambda run: (run.saved_at, run.run_id))
