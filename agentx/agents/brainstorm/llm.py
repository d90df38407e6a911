"""LLM mode of the Brainstorm Agent: goal intake and idea generation with a chat model.

The model only drafts; every draft is validated against the catalog (known technique,
parameter values it lists) and then scored and admitted by the same rules as the
offline policy, so a model cannot smuggle in an unknown mechanism or skip admission.
A reply that is valid JSON but not sensible (an objective that is no metric, a technique
``"1.0"``, no idea from the catalog at all) is shown back to the model and asked again;
when the re-asks run out the caller takes the offline decision and records why.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from agentx.agents.brainstorm.evidence import EvidenceBundle
from agentx.harness import load_prompt
from agentx.llm.ask import ask
from agentx.llm.budget import Context
from agentx.llm.structured import StructuredResult
from agentx.models import Goal, Maturity


class GoalDraft(BaseModel):
    """The model's reading of a goal."""

    objective: str = Field(description="One of the known metric names.")
    direction: Literal["increase", "decrease"] = "increase"
    scope: list[str] = Field(default_factory=list)
    forbidden: list[str] = Field(default_factory=list)
    guardrails: list[str] = Field(default_factory=list)
    requested_outputs: list[str] = Field(default_factory=list)
    open_questions: list[str] = Field(default_factory=list)


class IdeaDraft(BaseModel):
    """One proposed experiment, as drafted by the model."""

    technique: str = Field(description="A technique id from the catalog.")
    params: dict[str, Any] = Field(default_factory=dict)
    hypothesis: str = Field(min_length=10)
    expected_effect: float = Field(description="Expected relative effect on the objective.")
    maturity: Maturity = Maturity.READY
    risks: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list, description="Cited references.")


class IdeaBatch(BaseModel):
    """A batch of drafted ideas."""

    ideas: list[IdeaDraft] = Field(min_length=1)


_SYSTEM = (
    "You are the Brainstorm Agent of a recommender-system team. Answer only with the "
    "requested structured output."
)


def goal_problem(draft: GoalDraft, metrics: list[str]) -> str | None:
    """Why a goal draft is unusable (its objective is no known metric), or None."""
    if draft.objective not in metrics:
        shown = draft.objective if len(draft.objective) <= 60 else draft.objective[:60] + "..."
        return f"objective {shown!r} is not a metric name; use one of: {', '.join(metrics)}"
    return None


def llm_goal(
    model: BaseChatModel,
    text: str,
    metrics: list[str],
    levers: list[str],
    settings: dict[str, Any],
) -> StructuredResult[GoalDraft]:
    """Ask the model to normalise the goal (validated by the caller against the metrics)."""
    return ask(
        model,
        _SYSTEM,
        load_prompt("brainstorm", "intake"),
        GoalDraft,
        settings,
        required={"goal": text, "metrics": ", ".join(metrics)},
        optional=[Context(name="levers", pieces=levers, joiner=", ")],
        check=lambda draft: goal_problem(draft, metrics),
    )


def goal_from_draft(text: str, draft: GoalDraft, metrics: list[str]) -> Goal | None:
    """A :class:`Goal` if the draft names known metrics only, else None."""
    if goal_problem(draft, metrics) is not None:
        return None
    return Goal(
        text=text,
        objective=draft.objective,
        direction=draft.direction,
        scope=draft.scope,
        forbidden=draft.forbidden,
        guardrails=[g for g in draft.guardrails if g in metrics and g != draft.objective],
        requested_outputs=draft.requested_outputs,
        open_questions=draft.open_questions,
    )


def llm_ideas(
    model: BaseChatModel,
    goal: Goal,
    bundle: EvidenceBundle,
    avoid: dict[str, str],
    batch_size: int,
    settings: dict[str, Any],
) -> StructuredResult[IdeaBatch]:
    """Ask the model for a batch of ideas grounded in the four evidence sources."""
    ranked = [bundle.catalog[t] for t in sorted(bundle.catalog)]
    catalog = [
        f"- {t.id}: {t.summary} params: " + json.dumps({p.name: p.values for p in t.params})
        for t in ranked
        if f"{t.id}:*" not in avoid
    ]
    # Most relevant memory first: cards similar to the goal, then this world's history.
    cards = {card.id: card for card in reversed([*bundle.similar, *bundle.cards])}
    memory = [
        f"- [{c.id}] {c.title} (decision {c.decision}, effect {c.effect:+.2%})"
        for c in reversed(cards.values())
    ]
    system = [f"- features: {', '.join(bundle.system.features)}"] + [
        f"- config {key}" for key in sorted(bundle.system.config_keys)
    ]
    return ask(
        model,
        _SYSTEM,
        load_prompt("brainstorm", "generate"),
        IdeaBatch,
        settings,
        required={
            "objective": goal.objective,
            "direction": goal.direction,
            "guardrails": ", ".join(goal.guardrails),
            "batch_size": str(batch_size),
        },
        optional=[
            Context(name="catalog", pieces=catalog),
            Context(name="avoid", pieces=sorted(avoid), joiner=", "),
            Context(name="memory", pieces=memory, empty="- (no past experiments)"),
            Context(name="data", pieces=[f"- {f}" for f in bundle.data.findings]),
            Context(name="system", pieces=system),
        ],
        check=lambda batch: batch_problem(batch, bundle),
    )


def batch_problem(batch: IdeaBatch, bundle: EvidenceBundle) -> str | None:
    """Why a batch is unusable: not one idea is a catalog technique with listed values.

    Single bad ideas are dropped later with their reason (in the avoid set); a batch with
    no usable idea at all is asked again, with every reason.
    """
    reasons = []
    for draft in batch.ideas:
        params, reason = validate_draft(draft, bundle)
        if params is not None:
            return None
        reasons.append(reason)
    return "no idea is usable: " + "; ".join(reasons[:6])


def validate_draft(draft: IdeaDraft, bundle: EvidenceBundle) -> tuple[dict[str, Any] | None, str]:
    """Catalog-checked parameters for a draft, or None with the reason it was rejected."""
    technique = bundle.catalog.get(draft.technique)
    if technique is None:
        return None, f"unknown technique {draft.technique!r}"
    params = technique.default_params()
    allowed = {p.name: p.values for p in technique.params}
    for name, value in draft.params.items():
        if name not in allowed:
            return None, f"{technique.id} has no parameter {name!r}"
        if value not in allowed[name]:
            return None, f"{technique.id}.{name}={value!r} is not one of {allowed[name]}"
        params[name] = value
    return params, "ok"
