"""Generation, scoring and admission of a batch of proposals (offline policy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agentx.agents.brainstorm.evidence import EvidenceBundle, cite
from agentx.agents.brainstorm.llm import IdeaDraft, validate_draft
from agentx.agents.brainstorm.policy import (
    Belief,
    belief_for,
    choose_params,
    combo_key,
    thompson_draw,
)
from agentx.models import Evidence, Goal, KnowledgeCard, Maturity, Proposal, stable_id
from agentx.research.catalog import Technique
from agentx.research.recipes import application, infeasible


def feasible(technique: Technique, params: dict[str, Any], repo: Path) -> str | None:
    """None if the technique applies to ``repo`` (its recipe, or a retune of merged code);
    else why not."""
    return infeasible(technique, params, repo)


def tested_here(card: KnowledgeCard, world: str, workspace_id: str) -> bool:
    """Whether a card's experiment ran on this workspace's own repository lineage.

    A shared or pre-filled memory also holds cards of other workspaces: their experiments
    ran against another baseline, so another workspace's KEEP is not in this repository and
    its DISCARD was measured against different code. Those cards are evidence for the
    policy's beliefs, never a reason to skip an idea. A card or reader without a workspace
    id (older cards, embedded use) counts as this lineage, as before workspaces had ids.
    """
    if card.world != world:
        return False
    return not (card.workspace_id and workspace_id) or card.workspace_id == workspace_id


def avoid_set(
    goal: Goal, bundle: EvidenceBundle, world: str, workspace_id: str = ""
) -> dict[str, str]:
    """Combinations not to propose again, with the reason for each."""
    avoid: dict[str, str] = {}
    for card in bundle.cards:
        if tested_here(card, world, workspace_id):
            avoid[combo_key(card.technique, card.params)] = f"already tested ({card.decision})"
    for technique in bundle.catalog.values():
        if technique.id in goal.forbidden or technique.lever in goal.forbidden:
            avoid[f"{technique.id}:*"] = "forbidden by the goal"
        if any(
            path.startswith(tuple(goal.forbidden)) for path in technique.locations if goal.forbidden
        ):
            avoid[f"{technique.id}:*"] = "touches a forbidden path"
    return avoid


def combine_score(parts: dict[str, float], weights: dict[str, float]) -> float:
    """S = λo·objective + λb·business + λf·feasibility + λh·handoff + λe·evidence − λr·risk."""
    return (
        sum(weights[name] * parts[name] for name in parts if name != "risk")
        - weights["risk"] * parts["risk"]
    )


def score_parts(
    technique: Technique,
    belief: Belief,
    draw: float,
    goal: Goal,
    n_evidence: int,
    policy: dict[str, Any],
    *,
    feasible: bool,
    handoff: float,
) -> dict[str, float]:
    """The parts of a candidate's score, each on a comparable 0..1-ish scale.

    Shared by the live policy and the SGPO replay, so a replayed harness ranks candidates
    exactly as the agent would.
    """
    moved = technique.metrics_moved.get(goal.objective, "?")
    sign = 1.0 if goal.direction == "increase" else -1.0
    return {
        "objective": float(np.clip(sign * draw / float(policy["effect_scale"]), -2.0, 3.0)),
        "business": {"+": 1.0, "?": 0.5, "0": 0.2}.get(moved, 0.0) if sign > 0 else 0.5,
        "feasibility": 1.0 if feasible else 0.0,
        "handoff": handoff,
        "evidence": min(1.0, n_evidence / 4.0),
        "risk": technique.risk + 0.5 * belief.harms,
    }


def propose_batch(
    goal: Goal,
    bundle: EvidenceBundle,
    repo: Path,
    world: str,
    harness: dict[str, Any],
    rng: np.random.Generator,
    extra_avoid: dict[str, str] | None = None,
    drafts: list[IdeaDraft] | None = None,
    workspace_id: str = "",
) -> tuple[list[Proposal], dict[str, str]]:
    """Score candidates and return the ranked batch and the avoid set.

    Offline, every catalog technique is a candidate (with untested parameters chosen by
    the policy). With ``drafts`` from a model, only the drafts are candidates, each
    checked against the catalog first. Proposals that fail admission are returned with
    ``admitted=False`` and the reasons, so the funnel and the avoid set can show them.
    """
    policy, weights = harness["policy"], harness["score_weights"]
    avoid = {**avoid_set(goal, bundle, world, workspace_id), **(extra_avoid or {})}
    tested = set(avoid)
    here = [c for c in bundle.cards if tested_here(c, world, workspace_id)]
    kept_elsewhere = [
        c
        for c in bundle.cards
        if c.world == world and c.decision == "KEEP" and not tested_here(c, world, workspace_id)
    ]
    candidates: list[tuple[Technique, dict[str, Any], IdeaDraft | None]] = []
    if drafts is None:
        for technique in bundle.catalog.values():
            params = choose_params(technique, tested, here, kept_elsewhere)
            if params is not None:
                candidates.append((technique, params, None))
    else:
        for draft in drafts:
            params, reason = validate_draft(draft, bundle)
            if params is None:
                avoid[f"{draft.technique}:{sorted(draft.params.items())}"] = reason
                continue
            if combo_key(draft.technique, params) in tested:
                continue
            candidates.append((bundle.catalog[draft.technique], params, draft))
    scored: list[Proposal] = []
    for technique, params, draft in candidates:
        if f"{technique.id}:*" in avoid:
            continue
        if goal.scope and technique.lever not in goal.scope and technique.id not in goal.scope:
            continue
        problem, how = application(technique, params, repo)
        belief = belief_for(technique, bundle.cards, world, policy, retune=how == "retune")
        draw = thompson_draw(belief, rng)
        evidence = cite(technique, bundle, world)
        if draft is not None:
            known = {e.ref for e in evidence}
            evidence += [
                Evidence(source="memory", ref=ref, summary="cited by the model")
                for ref in draft.evidence
                if ref not in known and any(card.id == ref for card in bundle.cards)
            ]
        moved = technique.metrics_moved.get(goal.objective, "?")
        sign = 1.0 if goal.direction == "increase" else -1.0
        proposal = Proposal(
            id=stable_id(goal.text, technique.id, params),
            technique=technique.id,
            lever=technique.lever,
            params=params,
            hypothesis=draft.hypothesis
            if draft is not None
            else (
                f"{technique.name} ({_fmt(params)}) changes {goal.objective} by about "
                f"{belief.mean:+.1%}: {technique.summary}"
            ),
            target_metric=goal.objective,
            expected_direction="increase" if belief.mean * sign >= 0 else "decrease",
            expected_size=round(belief.mean, 4),
            implementation_location=technique.locations,
            required_signals=technique.signals,
            risks=[
                f"may hurt {metric}"
                for metric, way in technique.metrics_moved.items()
                if way == "-"
            ]
            or ["no known risk"],
            guardrails=goal.guardrails,
            validation_plan=(
                "verify in a worktree (tests, dry run, offline metrics, latency, diff scope), "
                "then canary -> ramp -> full with SRM and guardrail checks"
            ),
            evidence=evidence,
            maturity=draft.maturity if draft is not None else technique.maturity,
            retune=how == "retune",
        )
        filled = [
            proposal.hypothesis,
            proposal.implementation_location,
            proposal.risks,
            proposal.guardrails,
            proposal.validation_plan,
            proposal.required_signals,
        ]
        parts = score_parts(
            technique,
            belief,
            draw,
            goal,
            len(evidence),
            policy,
            feasible=problem is None,
            handoff=sum(bool(x) for x in filled) / len(filled),
        )
        proposal.score = round(combine_score(parts, weights), 4)
        proposal.score_breakdown = {k: round(v, 4) for k, v in parts.items()}
        gain = belief.prob_positive() if sign > 0 else 1.0 - belief.prob_positive()
        notes = _admission(proposal, technique, problem, moved, goal)
        floor = float(policy.get("min_prob_gain", 0.0))
        if gain < floor:
            notes.append(f"probability of a gain {gain:.0%} is below the bar of {floor:.0%}")
        proposal.admitted = not notes
        proposal.admission_notes = notes or ["admitted"]
        if notes:
            avoid[combo_key(technique.id, params)] = "; ".join(notes)
        scored.append(proposal)
    # Rank first, then admit: the batch is the best-scored candidates whatever admission
    # says, so rejections show in the funnel; if none of them is admitted, the best admitted
    # candidate further down joins the batch.
    scored.sort(key=lambda p: (-p.score, p.technique))
    size = int(policy["batch_size"])
    batch = scored[:size]
    if not any(p.admitted for p in batch):
        batch += [p for p in scored[size:] if p.admitted][:1]
    batch.sort(key=lambda p: (-p.admitted, -p.score, p.technique))
    return batch, avoid


def _admission(
    proposal: Proposal, technique: Technique, problem: str | None, moved: str, goal: Goal
) -> list[str]:
    notes: list[str] = []
    if problem:
        notes.append(f"not feasible on the current baseline: {problem}")
    if moved == "-" and goal.direction == "increase":
        notes.append(f"expected to lower the objective {goal.objective}")
    if not proposal.evidence:
        notes.append("no evidence cited")
    if technique.maturity == Maturity.MOONSHOT and proposal.score < 0:
        notes.append("moonshot with a negative score")
    return notes


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "as specified"
