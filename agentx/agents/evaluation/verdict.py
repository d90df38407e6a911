"""From a rollout to a verdict (KEEP / EXTEND / DISCARD) and a knowledge card."""

from __future__ import annotations

from agentx.models import (
    Decision,
    ExperimentStatus,
    KnowledgeCard,
    Proposal,
    Rollout,
    RootCause,
    Verdict,
    stable_id,
)
from agentx.stats import adjust_p_values

MIN_INTERESTING_EFFECT = 0.005


def decide(rollout: Rollout, north_star: str, alpha: float) -> Verdict:
    """The verdict with its evidence; never KEEP on missing or vetoed evidence."""
    last = rollout.stages[-1]
    verdict = Verdict(
        experiment_id=rollout.experiment_id, decision=Decision.DISCARD, guardrails=last.guardrails
    )
    effects = {e.metric: e for e in last.effects}
    verdict.north_star = effects.get(north_star)
    if rollout.halted_at:
        reason = rollout.halt_reason or ""
        if reason.startswith("crashed arm"):
            verdict.root_cause = RootCause.CRASHED_ARM
        elif "mismatch" in reason:
            verdict.root_cause = RootCause.TRAFFIC_MISMATCH
        elif reason.startswith("guardrail"):
            verdict.root_cause = RootCause.GUARDRAIL_HARM
        else:
            verdict.root_cause = RootCause.NO_SIGNIFICANCE
        verdict.caveats.append(f"halted at {rollout.halted_at}: {reason}")
        return verdict
    effect = verdict.north_star
    if effect is None:
        verdict.root_cause = RootCause.NO_SIGNIFICANCE
        verdict.caveats.append(f"north-star {north_star} could not be estimated")
        return verdict
    secondary = [e for e in last.effects if e.metric != north_star]
    if secondary:
        adjusted = adjust_p_values([e.p_value for e in secondary], method="holm")
        moved = [
            f"{e.metric} {e.relative:+.2%}"
            for e, p in zip(secondary, adjusted, strict=True)
            if p < alpha
        ]
        if moved:
            verdict.caveats.append(
                "secondary metrics that moved (Holm-adjusted): " + ", ".join(moved)
            )
    if effect.p_value < alpha and effect.relative > 0:
        verdict.decision = Decision.KEEP
    elif effect.p_value < alpha and effect.relative < 0:
        verdict.root_cause = RootCause.NEGATIVE_EFFECT
    elif effect.relative > 0 and effect.ci_high > MIN_INTERESTING_EFFECT:
        verdict.decision = Decision.EXTEND
        verdict.root_cause = RootCause.NO_SIGNIFICANCE
        verdict.caveats.append("inconclusive: more traffic could decide")
    else:
        verdict.root_cause = RootCause.NO_SIGNIFICANCE
    if last.decision == "stop_early":
        verdict.caveats.append(f"stopped early at {last.stage}: {last.reason}")
    return verdict


def status_of(verdict: Verdict) -> ExperimentStatus:
    """Ledger status of a verdict."""
    if verdict.decision == Decision.KEEP:
        return ExperimentStatus.KEPT
    if verdict.decision == Decision.EXTEND:
        return ExperimentStatus.EXTENDED
    if verdict.root_cause == RootCause.GUARDRAIL_HARM:
        return ExperimentStatus.VETOED
    return ExperimentStatus.DISCARDED


def make_card(
    proposal: Proposal,
    experiment_id: str,
    objective: str,
    world: str,
    run_id: str,
    verdict: Verdict | None,
    root_cause: str | None,
    stage: str | None,
) -> KnowledgeCard:
    """A playbook for a win, a counterexample with a root cause for anything else."""
    decision = verdict.decision.value if verdict else "ABANDONED"
    effect = verdict.north_star.relative if verdict and verdict.north_star else 0.0
    cause = root_cause or (verdict.root_cause.value if verdict and verdict.root_cause else None)
    params = ", ".join(f"{k}={v}" for k, v in proposal.params.items()) or "defaults"
    kind = "playbook" if decision == "KEEP" else "counterexample"
    if kind == "playbook":
        title = (
            f"{proposal.technique} ({params}) raised {objective} by {effect:+.2%} in world {world}"
        )
        lesson = (
            "Reuse it: the mechanism worked here; neighbouring parameter values are worth probing."
        )
    else:
        title = f"{proposal.technique} ({params}) failed in world {world}: {cause}"
        lesson = {
            "guardrail_harm": "It moved a guardrail the wrong way: do not repeat unmitigated.",
            "no_significance": "No detectable effect at this traffic: not worth repeating as is.",
            "negative_effect": "It hurt the objective: avoid in this world.",
            "implementation_defect": "The change did not pass verification: fix the recipe first.",
            "traffic_mismatch": "The traffic split was broken: the readout is not trustworthy.",
            "crashed_arm": "The treatment crashed online: implementation problem.",
        }.get(cause or "", "Not shipped.")
    guard = ""
    if verdict:
        broken = [f"{g.metric} {g.relative:+.2%}" for g in verdict.guardrails if g.breached]
        guard = f" Guardrails breached: {', '.join(broken)}." if broken else " Guardrails held."
    text = (
        f"{title}. Lever: {proposal.lever}. Hypothesis: {proposal.hypothesis} "
        f"Decision: {decision}; measured effect on {objective}: {effect:+.2%}; "
        f"stage reached: {stage or 'none'}.{guard} Lesson: {lesson}"
    )
    return KnowledgeCard(
        id=stable_id(run_id, experiment_id, "card"),
        kind=kind,
        title=title,
        text=text,
        technique=proposal.technique,
        lever=proposal.lever,
        params=proposal.params,
        objective=objective,
        world=world,
        decision=decision,
        effect=round(effect, 6),
        root_cause=cause,
        stage=stage,
        run_id=run_id,
    )
