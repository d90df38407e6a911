"""The AgentX strategies: the loop run through its public entry point, ``run_loop``.

``agentx`` is the loop as shipped offline (SGPO on), ``agentx_no_sgpo`` the same with
``evolution.enabled = False``, ``agentx_prefilled`` the shipped loop whose memory holds
the knowledge cards of an earlier run of the loop on another seed (same world, fresh
repository: only the memory is carried over, as a team re-using a past campaign's memory
on a new baseline would).

Nothing of the loop is replaced or shortened: its own Brainstorm, Developing and
Evaluation agents, verification, rollout, verdict and memory run as ``agentx run`` would
run them. Each experiment's treatment is rebuilt afterwards from the patch the loop
recorded, and the rebuilt shipped state is checked against the loop's real repository.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from agentx.agents.brainstorm.policy import combo_key
from agentx.graph.resources import build_resources
from agentx.memory.store import open_store
from agentx.models import ExperimentRecord, ExperimentStatus
from agentx.runner import run_loop
from agentx.settings import load_settings
from efficacylib.states import StateError, StateStore
from efficacylib.trace import RunTrace, Trial


def loop_settings(workspace: Path, world: str, seed: int, budget: int, sgpo: bool):
    """The loop's settings for a benchmark run: shipped defaults but for the budget, the
    SGPO switch, and no checkpoint file (the run is not resumed)."""
    return load_settings(
        workspace=workspace,
        world=world,
        seed=seed,
        iterations=budget,
        checkpointer="memory",
        evolution={"enabled": sgpo},
    )


def copy_memory(source: Path, destination: Path, settings) -> int:
    """Copy every knowledge card of the workspace ``source`` into ``destination``'s memory."""
    earlier = open_store(source, settings.memory, settings.embeddings)
    cards = earlier.list()
    if cards:
        open_store(destination, settings.memory, settings.embeddings).upsert(cards)
    return len(cards)


def run_agentx(
    strategy: str,
    world: str,
    seed: int,
    budget: int,
    workspace: Path,
    states: StateStore,
    *,
    sgpo: bool = True,
    prefill_from: Path | None = None,
) -> RunTrace:
    """Run the loop for ``budget`` experiments in a fresh ``workspace`` and trace it."""
    if workspace.exists():
        shutil.rmtree(workspace)  # an interrupted earlier attempt: start clean
    settings = loop_settings(workspace, world, seed, budget, sgpo)
    notes = []
    if prefill_from is not None:
        copied = copy_memory(prefill_from, workspace, settings)
        notes.append(f"memory pre-filled with {copied} cards from {prefill_from.name}")
    resources = build_resources(settings)
    original = states.adopt(resources.target.repo_path)
    records: list[ExperimentRecord] = []
    started = time.perf_counter()
    run_loop(settings, resources=resources, on_experiment=records.append)
    wall = time.perf_counter() - started
    # The finished run's trained models only served its own arms; on `default` they are
    # about 1.2 GB each, four per sandbox, and a 5-seed sweep of every strategy would fill
    # the disk. Its truth records and snapshots stay (the judge and the rebuild read them).
    resources.target.models.clear()
    trace = RunTrace(strategy, world, seed, budget, str(original), wall_s=wall, notes=notes)
    rebuild_trials(trace, records, states)
    real = states.adopt(resources.target.repo_path)
    if real != Path(trace.final):
        trace.notes.append(
            "the shipped state rebuilt from the recorded patches differs from the loop's "
            "repository; the repository's state is scored"
        )
        if trace.shipped:
            trace.shipped[-1] = str(real)
    return trace


def _tested_against(record: ExperimentRecord, states: StateStore, current: Path) -> Path:
    """The state the experiment's treatment was compared with: its control arm's frozen
    snapshot when the workspace still holds it, else the shipped state at that point.

    Experiments of one wave are developed on the baseline the wave started from; when one
    of them is kept, the others' patches belong to that older baseline (their diffs may not
    even apply to the new one), and the truth that scores them must be taken against the
    code their A/B really compared them with.
    """
    artefact = record.arms.get("control", {}).get("artefact")
    if artefact and Path(artefact).is_dir():
        return states.adopt(Path(artefact))
    return current


def _rebuilt_treatment(
    record: ExperimentRecord, states: StateStore, control: Path, notes: list[str], index: int
) -> Path | None:
    """The treatment: the recorded patch on its control; when the patch does not apply (the
    ledger keeps the first 20,000 characters of a diff), the treatment arm's own frozen
    snapshot if the workspace still holds it; else None, with a note."""
    assert record.patch is not None
    try:
        return states.with_diff(control, record.patch.diff)
    except StateError as error:
        artefact = record.arms.get("treatment", {}).get("artefact")
        if artefact and Path(artefact).is_dir():
            notes.append(f"experiment {index}: its arm's snapshot scored ({error})")
            return states.adopt(Path(artefact))
        notes.append(f"experiment {index}: {error}")
        return None


def rebuild_trials(trace: RunTrace, records: list[ExperimentRecord], states: StateStore) -> None:
    """Append a trial per experiment record, in the loop's order, with the states the
    judge scores: each treatment rebuilt from its recorded patch on the code it was tested
    against, and each KEEP's patch put on the shipped state as the loop merged it."""
    current = Path(trace.original)
    for index, record in enumerate(records, start=1):
        trial = Trial(
            index=index,
            label=f"{record.proposal.technique}{record.proposal.params or ''}",
            control=None,
            treatment=None,
            decision=record.verdict.decision.value if record.verdict else None,
            measured=record.verdict.north_star.relative
            if record.verdict and record.verdict.north_star
            else None,
            halted=record.rollout.halt_reason if record.rollout else record.root_cause,
            option_key=combo_key(record.proposal.technique, record.proposal.params),
        )
        if record.rollout is not None and record.patch is not None and record.patch.diff:
            control = _tested_against(record, states, current)
            treatment = _rebuilt_treatment(record, states, control, trace.notes, index)
            if treatment is not None:
                trial.control, trial.treatment = str(control), str(treatment)
                trial.accepted = record.status == ExperimentStatus.KEPT
                if trial.accepted:
                    trial.launched = True
                    try:
                        current = (
                            treatment
                            if control == current
                            else states.with_diff(current, record.patch.diff)
                        )
                    except StateError as error:
                        trace.notes.append(f"experiment {index} (shipping it): {error}")
        trace.trials.append(trial)
        trace.shipped.append(str(current))
