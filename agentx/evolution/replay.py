"""Replay: score a harness on the same recorded tasks as another, to decide if an edit helps.

- **Brainstorm**: at every recorded decision, the options are the experiments the run went
  on to test from there (their outcomes are known); the harness re-scores them with the
  memory as it was at that decision, through the agent's own scoring functions, and the
  replay score is the expected value of its pick over Thompson draws. The draws use common
  random numbers, so two harnesses differ only by what they are.
- **Evaluation**: every recorded rollout whose arms are still available is run again stage
  by stage with the same traffic (same seeds and assignment) under the harness, and its
  verdict is scored against the target's ground truth. This needs a target that can replay
  traffic (the sandbox can); on others the Evaluation Agent is not evolved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agentx.agents.brainstorm.agent import combine_score, score_parts
from agentx.agents.brainstorm.evidence import EvidenceBundle, cite
from agentx.agents.brainstorm.policy import belief_for
from agentx.agents.evaluation.cards import make_card
from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.agents.evaluation.rollout import run_rollout
from agentx.agents.evaluation.verdict import decide
from agentx.evolution.models import ReplayScore
from agentx.evolution.outcomes import keep_utility, pick_value, true_effect
from agentx.evolution.rubric import Rubric
from agentx.evolution.store import RunTrajectory
from agentx.models import ExperimentRecord, ExperimentStatus, Goal, KnowledgeCard
from agentx.research.catalog import Technique
from agentx.settings import Settings
from agentx.target.contract import Target
from agentx.target.models import ArmHandle, DataReport, SystemDescription


def card_of(record: ExperimentRecord, run: RunTrajectory) -> KnowledgeCard:
    """The knowledge card the loop wrote for ``record`` (rebuilt the same way)."""
    abandoned = record.verdict is None
    return make_card(
        record.proposal,
        record.id,
        run.objective,
        run.world,
        run.run_id,
        record.verdict,
        "implementation_defect" if abandoned else None,
        record.rollout.last_stage if record.rollout else None,
    )


def replay_brainstorm(
    harness: dict[str, Any],
    runs: list[RunTrajectory],
    rubric: Rubric,
    catalog: dict[str, Technique],
    system: SystemDescription,
    data: DataReport,
    seed: int,
) -> ReplayScore:
    """Expected value of the harness's picks at every recorded decision with >= 2 options."""
    harm, abandon = rubric.replay.get("harm_cost", 0.02), rubric.replay.get("abandon_cost", 0.01)
    draws = int(rubric.replay.get("draws", 64))
    policy, weights = harness["policy"], harness["score_weights"]
    per_task: dict[str, float] = {}
    for run_index, run in enumerate(runs):
        goal = Goal(text=run.objective, objective=run.objective, direction=run.direction)  # type: ignore[arg-type]
        earlier = [card_of(r, prior) for prior in runs[:run_index] for r in prior.records]
        ordered = [r for r in sorted(run.records, key=lambda r: r.iteration)]
        for t, record in enumerate(ordered):
            options = [r for r in ordered[t:] if r.proposal.technique in catalog]
            if len(options) < 2:
                continue
            memory = earlier + [card_of(r, run) for r in ordered[:t]]
            bundle = EvidenceBundle(system=system, data=data, catalog=catalog, cards=memory)
            values = np.array(
                [pick_value(r, run.north_star, run.direction, harm, abandon) for r in options]
            )
            rng = np.random.default_rng([seed, run_index, t])
            noise = rng.standard_normal((draws, len(options)))
            scores = np.empty((draws, len(options)))
            for j, option in enumerate(options):
                technique = catalog[option.proposal.technique]
                belief = belief_for(technique, memory, run.world, policy)
                n_evidence = len(cite(technique, bundle, run.world))
                for d in range(draws):
                    draw = belief.mean + belief.sd * noise[d, j]
                    parts = score_parts(
                        technique,
                        belief,
                        draw,
                        goal,
                        n_evidence,
                        policy,
                        feasible=True,
                        handoff=1.0,
                    )
                    scores[d, j] = combine_score(parts, weights)
            picks = np.argmax(scores, axis=1)
            per_task[f"{run.run_id}/{record.id}"] = round(float(values[picks].mean()), 6)
    return _score(per_task)


def _arm(data: dict[str, Any]) -> ArmHandle | None:
    """A recorded arm, ready to serve again, or None when its artefact is gone."""
    try:
        arm = ArmHandle.model_validate(data)
    except ValueError:
        return None
    if not Path(arm.artefact).exists():
        return None
    return arm.model_copy(update={"ok": True, "error": None})


def replay_evaluation(
    policy: EvaluationPolicy,
    runs: list[RunTrajectory],
    rubric: Rubric,
    target: Target,
    settings: Settings,
) -> ReplayScore:
    """True utility of the verdicts the policy reaches on the recorded rollouts' traffic."""
    harm_weight = rubric.replay.get("harm_weight", 3.0)
    directions = {m.name: m.direction for m in target.describe().metrics}
    per_task: dict[str, float] = {}
    for run in runs:
        run_settings = settings.model_copy(update={"seed": run.seed, "autonomous": True})
        for record in run.records:
            if record.rollout is None or record.status == ExperimentStatus.ABANDONED:
                continue
            if true_effect(record, run.north_star, run.direction) is None:
                continue
            arms = [_arm(record.arms.get(name, {})) for name in ("control", "treatment")]
            if arms[0] is None or arms[1] is None:
                continue
            rollout = run_rollout(
                target,
                arms[0],
                arms[1],
                record.rollout.experiment_id,
                run_settings,
                policy=policy,
                rollback=False,
            )
            verdict = decide(
                rollout,
                run.north_star,
                run_settings.alpha,
                policy=policy,
                direction=directions.get(run.north_star, "higher_is_better"),  # type: ignore[arg-type]
            )
            utility = keep_utility(
                verdict.decision,
                record,
                run.north_star,
                run.direction,
                settings.guardrails,
                harm_weight,
            )
            if utility is not None:
                per_task[f"{run.run_id}/{record.id}"] = round(utility, 6)
    return _score(per_task)


def _score(per_task: dict[str, float]) -> ReplayScore:
    mean = sum(per_task.values()) / len(per_task) if per_task else 0.0
    return ReplayScore(score=round(mean, 6), tasks=len(per_task), per_task=per_task)
