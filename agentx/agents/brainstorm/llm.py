"""LLM mode of the Brainstorm Agent: goal intake and idea generation with a chat model.

The model only drafts; every draft is validated against the catalog (known technique,
parameter values it lists) and then scored and admitted by the same rules as the
offline policy, so a model cannot smuggle in an unknown mechanism or skip admission.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from agentx.agents.brainstorm.evidence import EvidenceBundle
from agentx.harness import load_prompt
from agentx.llm.structured import StructuredResult, invoke_structured, structured_options
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


def _system() -> SystemMessage:
    return SystemMessage(
        "You are the Brainstorm Agent of a recommender-system team. Answer only with the "
        "requested structured output."
    )


def llm_goal(
    model: BaseChatModel,
    text: str,
    metrics: list[str],
    levers: list[str],
    settings: dict[str, Any],
) -> StructuredResult[GoalDraft]:
    """Ask the model to normalise the goal (validated by the caller against the metrics)."""
    prompt = load_prompt("brainstorm", "intake").format(
        goal=text, metrics=", ".join(metrics), levers=", ".join(levers)
    )
    return invoke_structured(
        model,
        [_system(), HumanMessage(prompt)],
        GoalDraft,
        **structured_options(settings),
    )


def goal_from_draft(text: str, draft: GoalDraft, metrics: list[str]) -> Goal | None:
    """A :class:`Goal` if the draft names known metrics only, else None."""
    if draft.objective not in metrics:
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
    catalog = "\n".join(
        f"- {t.id}: {t.summary} params: " + json.dumps({p.name: p.values for p in t.params})
        for t in bundle.catalog.values()
    )
    memory = (
        "\n".join(
            f"- [{c.id}] {c.title} (decision {c.decision}, effect {c.effect:+.2%})"
            for c in bundle.cards[:20]
        )
        or "- (no past experiments)"
    )
    system = f"features: {', '.join(bundle.system.features)}; config keys: " + ", ".join(
        sorted(bundle.system.config_keys)
    )
    prompt = load_prompt("brainstorm", "generate").format(
        objective=goal.objective,
        direction=goal.direction,
        guardrails=", ".join(goal.guardrails),
        memory=memory,
        system=system,
        data="\n".join(f"- {finding}" for finding in bundle.data.findings),
        catalog=catalog,
        avoid=", ".join(sorted(avoid)) or "(none)",
        batch_size=batch_size,
    )
    return invoke_structured(
        model,
        [_system(), HumanMessage(prompt)],
        IdeaBatch,
        **structured_options(settings),
    )


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
