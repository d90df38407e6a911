"""Cumulative guardrails: every KEEP is also judged against the original baseline.

Why: each experiment is judged against the current baseline, so several small losses that
are each within tolerance (or not significant) add up unseen: one run ended at -27 % tail
share against where it started. Before a KEEP is merged, the treatment (which contains every
change kept so far) runs one more final-sized stage against the *origin*, the baseline before
the workspace's first kept change, and every guardrail is checked there; a breach blocks the
merge.

The origin is a git ref in the target repository (``refs/agentx/origin``), written the first
time a run starts, so it survives runs and resumes.
"""

from __future__ import annotations

from pathlib import Path

from agentx.agents.evaluation.analysis import (
    check_guardrails,
    estimate_effects,
    unmeasured_guardrail,
)
from agentx.agents.evaluation.rollout import stage_assignment, stage_seed
from agentx.models import GuardrailResult, stable_id
from agentx.settings import RolloutStage, Settings
from agentx.target.contract import Target
from agentx.target.models import ArmHandle
from agentx.workspace import git

ORIGIN_REF = "refs/agentx/origin"
STAGE = "cumulative"


def origin_commit(repo: Path) -> str:
    """The origin baseline's commit, recorded at HEAD the first time it is asked for."""
    try:
        return git.head(repo, ORIGIN_REF)
    except git.GitError:
        current = git.head(repo)
        git.git(repo, "update-ref", ORIGIN_REF, current)
        return current


def check_against_origin(
    target: Target,
    treatment: ArmHandle,
    origin: str,
    experiment_id: str,
    stage: RolloutStage,
    settings: Settings,
    worktrees: Path,
) -> tuple[list[GuardrailResult], str]:
    """Every guardrail of the treatment against the origin over one ``stage``-sized run.

    Returns the guardrail results and a problem line (empty when the check ran). A check
    that cannot run counts every non-observe guardrail as breached: missing evidence never
    passes a merge.
    """
    repo = target.repo_path
    path = worktrees / f"origin-{origin[:12]}"
    branch = f"agentx-origin-{origin[:12]}"
    try:
        if not path.exists():
            git.add_worktree(repo, path, branch, base=origin)
        control = target.launch("origin", path)
        if not control.ok:
            raise RuntimeError(f"the origin arm did not start: {control.error}")
        users = target.user_ids()
        salt = stable_id(experiment_id, STAGE)
        readout = target.collect(
            control,
            treatment,
            stage_assignment(users, salt, stage.treatment_share),
            days=stage.days,
            seed=stage_seed(settings.seed, experiment_id, STAGE),
            earlier=[],
        )
        specs = target.describe().metrics
    except Exception as error:  # any failure of the check is recorded, and blocks the merge
        problem = f"the check against the origin could not run: {type(error).__name__}: {error}"
        return [unmeasured_guardrail(spec, problem) for spec in settings.guardrails], problem
    if readout.errors:
        problem = "; ".join(f"{arm}: {err}" for arm, err in readout.errors.items())
        return check_guardrails({}, {}, settings.guardrails, settings.alpha), problem
    effects, problems = estimate_effects(readout, specs, settings.alpha)
    return check_guardrails(effects, problems, settings.guardrails, settings.alpha), ""


def breaches(results: list[GuardrailResult]) -> list[GuardrailResult]:
    """The guardrails the cumulative change breaks (every tier but observe counts)."""
    return [g for g in results if g.breached]
