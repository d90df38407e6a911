"""Knowledge cards: a playbook for a win, a counterexample with a root cause for anything else.

Why the text carries intervals, the method, guardrails and caveats: the Brainstorm Agent
retrieves cards by meaning, and a later proposal is only as good as what the card says about
the conditions of the result (how sure, at which stage, what it cost elsewhere). Wording lives
in ``prompts/evaluation/cards.yaml``.
"""

from __future__ import annotations

from agentx.agents.evaluation.policy import load_card_templates
from agentx.models import KnowledgeCard, Proposal, Verdict, stable_id

MAX_CAVEATS = 4


def make_card(
    proposal: Proposal,
    experiment_id: str,
    objective: str,
    world: str,
    run_id: str,
    verdict: Verdict | None,
    root_cause: str | None,
    stage: str | None,
    workspace_id: str = "",
) -> KnowledgeCard:
    """The card of one experiment outcome.

    Its id is deterministic (a resumed run upserts the same card) and includes the
    workspace's id: run ids (``run-1``...) repeat across workspaces, and workspaces that
    share a Chroma server must not overwrite each other's knowledge.
    """
    templates = load_card_templates()
    decision = verdict.decision.value if verdict else "ABANDONED"
    north = verdict.north_star if verdict else None
    effect = north.relative if north else 0.0
    cause = root_cause or (verdict.root_cause.value if verdict and verdict.root_cause else None)
    params = ", ".join(f"{k}={v}" for k, v in proposal.params.items()) or "defaults"
    kind = "playbook" if decision == "KEEP" else "counterexample"
    fields = {
        "technique": proposal.technique,
        "params": params,
        "objective": objective,
        "effect": effect,
        "world": world,
        "cause": cause or "not shipped",
    }
    if kind == "playbook":
        title = templates["playbook_title"].format(**fields)
        lesson = templates["playbook_lesson"]
    else:
        title = templates["counterexample_title"].format(**fields)
        lesson = templates.get("lessons", {}).get(cause or "", templates["default_lesson"])
    measured = (
        f"measured effect on {objective}: {effect:+.2%} [{north.ci_low:+.2%}, "
        f"{north.ci_high:+.2%}], p={north.p_value:.3g}, {north.method}, "
        f"{north.n_control}+{north.n_treatment} users"
        if north
        else f"no measured effect on {objective}"
    )
    guard = ""
    if verdict and verdict.guardrails:
        broken = [f"{g.metric} {g.relative:+.2%}" for g in verdict.guardrails if g.breached]
        guard = f" Guardrails breached: {', '.join(broken)}." if broken else " Guardrails held."
    caveats = ""
    if verdict and verdict.caveats:
        caveats = " Conditions: " + " | ".join(verdict.caveats[:MAX_CAVEATS]) + "."
    text = (
        f"{title}. Lever: {proposal.lever}. Hypothesis: {proposal.hypothesis} "
        f"Decision: {decision}; {measured}; stage reached: {stage or 'none'}."
        f"{guard}{caveats} Lesson: {lesson}"
    )
    return KnowledgeCard(
        id=stable_id(workspace_id, run_id, experiment_id, "card")
        if workspace_id
        else stable_id(run_id, experiment_id, "card"),
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
        workspace_id=workspace_id,
        retune=proposal.retune,
    )
