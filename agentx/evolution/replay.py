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

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentx.agents.brainstorm.agent import combine_score, score_parts
from agentx.agents.brainstorm.evidence import EvidenceBundle, cite
from agentx.agents.brainstorm.policy import Belief, belief_for
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


@dataclass(frozen=True)
class ReplayContext:
    """What the brainstorm replay scores with besides the harness: the catalog and the
    target's system description and data report (the evidence the agent cites)."""

    catalog: dict[str, Technique]
    system: SystemDescription
    data: DataReport


@dataclass
class _Decision:
    """A recorded brainstorm decision: the options still ahead and what each was worth."""

    key: str
    rng_key: tuple[int, int]
    options: list[ExperimentRecord]
    values: np.ndarray
    techniques: list[Technique]
    beliefs: list[Belief]
    n_evidence: list[int]
    goal: Goal


def _decisions(
    policy: dict[str, Any],
    runs: list[RunTrajectory],
    rubric: Rubric,
    context: ReplayContext,
) -> Iterator[_Decision]:
    """Every recorded decision with >= 2 options, with beliefs from the memory at that time."""
    harm, abandon = rubric.replay.get("harm_cost", 0.02), rubric.replay.get("abandon_cost", 0.01)
    # Each record's card is built once (make_card reads the card templates) and reused by
    # every later decision whose memory holds it.
    cards = {(run.run_id, r.id): card_of(r, run) for run in runs for r in run.records}
    for run_index, run in enumerate(runs):
        goal = Goal(text=run.objective, objective=run.objective, direction=run.direction)  # type: ignore[arg-type]
        earlier = [cards[(prior.run_id, r.id)] for prior in runs[:run_index] for r in prior.records]
        ordered = sorted(run.records, key=lambda r: r.iteration)
        for t, record in enumerate(ordered):
            options = [r for r in ordered[t:] if r.proposal.technique in context.catalog]
            if len(options) < 2 or options[0] is not record:
                continue
            memory = earlier + [cards[(run.run_id, r.id)] for r in ordered[:t]]
            bundle = EvidenceBundle(
                system=context.system, data=context.data, catalog=context.catalog, cards=memory
            )
            techniques = [context.catalog[o.proposal.technique] for o in options]
            yield _Decision(
                key=f"{run.run_id}/{record.id}",
                rng_key=(run_index, t),
                options=options,
                values=np.array(
                    [pick_value(r, run.north_star, run.direction, harm, abandon) for r in options]
                ),
                techniques=techniques,
                beliefs=[
                    belief_for(tech, memory, run.world, policy, retune=o.proposal.retune)
                    for tech, o in zip(techniques, options, strict=True)
                ],
                n_evidence=[len(cite(tech, bundle, run.world)) for tech in techniques],
                goal=goal,
            )


def _parts(decision: _Decision, j: int, draw: float, policy: dict[str, Any]) -> dict[str, float]:
    return score_parts(
        decision.techniques[j],
        decision.beliefs[j],
        draw,
        decision.goal,
        decision.n_evidence[j],
        policy,
        feasible=True,
        handoff=1.0,
    )


def replay_brainstorm(
    harness: dict[str, Any],
    runs: list[RunTrajectory],
    rubric: Rubric,
    context: ReplayContext,
    seed: int,
) -> ReplayScore:
    """Expected value of the harness's picks at every recorded decision with >= 2 options."""
    draws = int(rubric.replay.get("draws", 64))
    policy, weights = harness["policy"], harness["score_weights"]
    per_task: dict[str, float] = {}
    for decision in _decisions(policy, runs, rubric, context):
        rng = np.random.default_rng([seed, *decision.rng_key])
        noise = rng.standard_normal((draws, len(decision.options)))
        scores = np.empty((draws, len(decision.options)))
        for j, belief in enumerate(decision.beliefs):
            for d in range(draws):
                parts = _parts(decision, j, belief.mean + belief.sd * noise[d, j], policy)
                scores[d, j] = combine_score(parts, weights)
        picks = np.argmax(scores, axis=1)
        per_task[decision.key] = round(float(decision.values[picks].mean()), 6)
    return _score(per_task)


def regret_attribution(
    harness: dict[str, Any],
    runs: list[RunTrajectory],
    rubric: Rubric,
    context: ReplayContext,
    tolerance: float,
) -> dict[str, float]:
    """Which score part favoured the better option where the pick was worse, on average.

    At every decision where a later-tested option beat the pick by more than ``tolerance``,
    the better option's score parts (at the belief means) minus the pick's; risk counts
    against, so its difference is negated. A positive mean for a part says weighting it more
    would have ranked the better option higher: the direction of the semantic gradient.
    """
    policy = harness["policy"]
    totals: dict[str, float] = {}
    count = 0
    for decision in _decisions(policy, runs, rubric, context):
        best = int(np.argmax(decision.values))
        if decision.values[best] - decision.values[0] <= tolerance:
            continue
        pick = _parts(decision, 0, decision.beliefs[0].mean, policy)
        better = _parts(decision, best, decision.beliefs[best].mean, policy)
        for name in pick:
            sign = -1.0 if name == "risk" else 1.0
            totals[name] = totals.get(name, 0.0) + sign * (better[name] - pick[name])
        count += 1
    return {name: round(total / count, 6) for name, total in totals.items()} if count else {}


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
                slot=record.traffic,
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
