"""Brainstorm Agent: intake, evidence-grounded ranking, memory that compounds, LLM mode."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage

from agentx.agents.brainstorm.agent import propose_batch
from agentx.agents.brainstorm.evidence import EvidenceBundle
from agentx.agents.brainstorm.intake import GoalError, parse_goal
from agentx.agents.brainstorm.llm import GoalDraft, goal_from_draft, llm_goal, llm_ideas
from agentx.agents.brainstorm.policy import belief_for, combo_key, value_order
from agentx.harness import load_harness
from agentx.models import KnowledgeCard, stable_id
from agentx.research.catalog import load_catalog
from agentx.sandbox.target import SandboxTarget

METRICS = [
    "watch_time",
    "clicks",
    "active_days",
    "errors",
    "ctr",
    "diversity",
    "latency_ms",
    "tail_share",
    "coverage",
]


def test_goal_intake_offline() -> None:
    goal = parse_goal(
        "Raise watch time without hurting return visits or latency", METRICS, ["errors"]
    )
    assert goal.objective == "watch_time" and goal.direction == "increase"
    assert goal.guardrails[:2] == ["active_days", "latency_ms"] and "errors" in goal.guardrails
    lower = parse_goal("Reduce latency, do not touch ranker features.", METRICS, [])
    assert lower.objective == "latency_ms" and lower.direction == "decrease"
    assert lower.forbidden == ["ranker features"]


def test_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(GoalError, match="known metrics: watch_time"):
        parse_goal("increase revenue", METRICS, [])


@pytest.fixture(scope="module")
def bundle(tiny_target: SandboxTarget) -> EvidenceBundle:
    return EvidenceBundle(
        system=tiny_target.describe(), data=tiny_target.analyse_data(), catalog=load_catalog()
    )


def _goal():
    return parse_goal("raise watch time without hurting return visits", METRICS, [])


def _card(
    technique: str,
    params: dict,
    decision: str,
    effect: float,
    cause: str | None = None,
    world: str = "tiny",
) -> KnowledgeCard:
    return KnowledgeCard(
        id=stable_id(technique, params, decision, world),
        kind="playbook" if decision == "KEEP" else "counterexample",
        title=f"{technique} {decision}",
        text=f"{technique} {decision}",
        technique=technique,
        lever="x",
        params=params,
        objective="watch_time",
        world=world,
        decision=decision,
        effect=effect,
        root_cause=cause,
    )


def _top_choices(bundle, tiny_target, cards, seeds=range(30)) -> Counter:
    harness = load_harness("brainstorm")
    filled = EvidenceBundle(
        system=bundle.system, data=bundle.data, catalog=bundle.catalog, cards=cards
    )
    tops: Counter = Counter()
    for seed in seeds:
        batch, _ = propose_batch(
            _goal(), filled, tiny_target.repo_path, "tiny", harness, np.random.default_rng(seed)
        )
        admitted = [p for p in batch if p.admitted]
        tops[admitted[0].technique] += 1
    return tops


def test_proposals_are_complete_ranked_and_cite_evidence(bundle, tiny_target) -> None:
    batch, _ = propose_batch(
        _goal(),
        bundle,
        tiny_target.repo_path,
        "tiny",
        load_harness("brainstorm"),
        np.random.default_rng(0),
    )
    assert batch and all(p.admitted for p in batch)
    assert [p.score for p in batch] == sorted((p.score for p in batch), reverse=True)
    for proposal in batch:
        sources = {e.source for e in proposal.evidence}
        assert {"research", "system"} <= sources
        assert proposal.hypothesis and proposal.validation_plan and proposal.guardrails
        assert set(proposal.score_breakdown) == {
            "objective",
            "business",
            "feasibility",
            "handoff",
            "evidence",
            "risk",
        }


def test_memory_steers_towards_wins_and_away_from_failures(bundle, tiny_target) -> None:
    catalog = bundle.catalog
    winner, loser = "exploration_slots", "candidate_pool_size"
    default_loser = catalog[loser].default_params()
    cards = [
        _card(winner, {"slots": 1}, "KEEP", 0.06),
        _card(winner, {"slots": 2}, "KEEP", 0.05),
        _card(loser, default_loser, "DISCARD", -0.08, "guardrail_harm"),
    ]
    empty = _top_choices(bundle, tiny_target, [])
    filled = _top_choices(bundle, tiny_target, cards)
    assert filled[winner] > empty[winner]
    # The loser is rarely on top either way, so compare what the policy believes about it:
    # a guardrail harm must lower both its expected effect and its chance of a gain.
    policy = load_harness("brainstorm")["policy"]
    harmed = belief_for(catalog[loser], cards, "tiny", policy)
    prior = belief_for(catalog[loser], [], "tiny", policy)
    assert harmed.mean < prior.mean and harmed.prob_positive() < prior.prob_positive()
    assert harmed.harms == 1
    # A tested combination is never proposed again in the same world.
    harness = load_harness("brainstorm")
    with_memory = EvidenceBundle(
        system=bundle.system, data=bundle.data, catalog=catalog, cards=cards
    )
    for seed in range(10):
        batch, avoid = propose_batch(
            _goal(),
            with_memory,
            tiny_target.repo_path,
            "tiny",
            harness,
            np.random.default_rng(seed),
        )
        keys = {combo_key(p.technique, p.params) for p in batch}
        assert combo_key(loser, default_loser) not in keys
        assert combo_key(loser, default_loser) in avoid


def test_cards_from_another_world_count_less(bundle, tiny_target) -> None:
    other = [_card("exploration_slots", {"slots": 1}, "KEEP", 0.08, world="niche")]
    same = [_card("exploration_slots", {"slots": 1}, "KEEP", 0.08)]
    policy = load_harness("brainstorm")["policy"]
    technique = bundle.catalog["exploration_slots"]
    prior = belief_for(technique, [], "tiny", policy)
    here = belief_for(technique, same, "tiny", policy)
    there = belief_for(technique, other, "tiny", policy)
    # The same win moves the belief less when it was measured in another world, but it
    # still moves it (the discount is a weight, not a filter).
    assert prior.mean < there.mean < here.mean
    assert here.sd < there.sd < prior.sd
    assert (here.n_same_world, there.n_other_world) == (1, 1)


def _reply(payload: object) -> AIMessage:
    return AIMessage(content=json.dumps(payload))


def test_llm_ideas_malformed_then_valid(bundle) -> None:
    valid = {
        "ideas": [
            {
                "technique": "exploration_slots",
                "params": {"slots": 2},
                "hypothesis": "Exploration reduces repetition and lifts watch time.",
                "expected_effect": 0.03,
                "maturity": "ready",
            }
        ]
    }
    model = FakeMessagesListChatModel(
        responses=[
            AIMessage(content="not json {"),
            _reply({"ideas": [{"technique": 3}]}),
            _reply(valid),
        ]
    )
    result = llm_ideas(model, _goal(), bundle, {}, 4, {"reasks": 2})
    assert result.ok and result.attempts == 3
    assert result.value.ideas[0].params == {"slots": 2}


def test_llm_drafts_are_checked_against_the_catalog(bundle, tiny_target) -> None:
    from agentx.agents.brainstorm.llm import IdeaDraft

    drafts = [
        IdeaDraft(
            technique="quantum_ranker",
            hypothesis="Made-up mechanism that cannot exist.",
            expected_effect=0.5,
        ),
        IdeaDraft(
            technique="exploration_slots",
            params={"slots": 99},
            hypothesis="Parameter outside the catalog's values.",
            expected_effect=0.1,
        ),
        IdeaDraft(
            technique="exploration_slots",
            params={"slots": 2},
            hypothesis="Two exploration slots reduce fatigue.",
            expected_effect=0.02,
        ),
    ]
    batch, avoid = propose_batch(
        _goal(),
        bundle,
        tiny_target.repo_path,
        "tiny",
        load_harness("brainstorm"),
        np.random.default_rng(0),
        drafts=drafts,
    )
    assert [(p.technique, p.params) for p in batch] == [("exploration_slots", {"slots": 2})]
    assert batch[0].hypothesis == "Two exploration slots reduce fatigue."
    assert any("unknown technique" in reason for reason in avoid.values())
    assert any("not one of" in reason for reason in avoid.values())


def test_llm_goal_with_unknown_metric_is_rejected() -> None:
    model = FakeMessagesListChatModel(responses=[_reply({"objective": "revenue"})])
    result = llm_goal(model, "raise revenue", METRICS, ["exploration"], {"reasks": 0})
    assert not result.ok and result.failure == "malformed"
    assert "objective 'revenue' is not a metric name" in (result.error or "")
    assert goal_from_draft("raise revenue", GoalDraft(objective="revenue"), METRICS) is None
    # the whole goal sentence as objective (seen from a small model) is asked again
    model = FakeMessagesListChatModel(
        responses=[
            _reply({"objective": "Raise watch time per user without hurting return visits"}),
            _reply({"objective": "watch_time"}),
        ]
    )
    result = llm_goal(model, "more watch time", METRICS, [], {"reasks": 1})
    assert result.ok and result.attempts == 2 and result.value.objective == "watch_time"
    assert result.notes()[0].startswith("malformed: reask")
    model = FakeMessagesListChatModel(
        responses=[_reply({"objective": "watch_time", "guardrails": ["active_days", "nps"]})]
    )
    result = llm_goal(model, "more watch time", METRICS, [], {"reasks": 0})
    goal = goal_from_draft("more watch time", result.value, METRICS)
    assert goal.objective == "watch_time" and goal.guardrails == ["active_days"]


def test_the_next_value_follows_the_last_outcome(bundle) -> None:
    """Values go mild -> strong: a win or a promising null steps stronger, a harm caps the
    parameter below the value that harmed, a loss steps milder."""
    rotation = bundle.catalog["daily_rotation"]  # temperature 0.1, 0.2, 0.4; default 0.2
    assert value_order(rotation, "temperature", []) == [0.2, 0.1, 0.4]
    kept = [_card("daily_rotation", {"temperature": 0.2}, "KEEP", 0.03)]
    assert value_order(rotation, "temperature", kept)[0] == 0.4
    regressed = [
        _card("daily_rotation", {"temperature": 0.2}, "ABANDONED", 0.0, "metric_regression")
    ]
    assert value_order(rotation, "temperature", regressed) == [0.1]
    lost = [_card("daily_rotation", {"temperature": 0.2}, "DISCARD", -0.02, "negative_effect")]
    assert value_order(rotation, "temperature", lost) == [0.1, 0.4]
    # An outage or a broken implementation says nothing about the value.
    for cause in ("infrastructure", "implementation_defect"):
        silent = [_card("daily_rotation", {"temperature": 0.2}, "ABANDONED", 0.0, cause)]
        assert value_order(rotation, "temperature", silent) == [0.2, 0.1, 0.4]


def test_no_value_beyond_one_that_did_worse_than_the_best(bundle) -> None:
    """A strength's effect rises and falls once: after a gain at one value and a loss at the
    next stronger one, the strongest is not tried (the `default` run of 2026-11-28 spent
    three of twenty experiments that way); the same holds on the mild side."""
    dims = bundle.catalog["mf_embedding_dim"]  # dim 12, 8, 6 (mild -> strong)
    assert value_order(dims, "dim", []) == [12, 8, 6]
    gain = _card("mf_embedding_dim", {"dim": 12}, "EXTEND", 0.0058, "no_significance")
    loss = _card("mf_embedding_dim", {"dim": 8}, "DISCARD", -0.0116, "negative_effect")
    assert value_order(dims, "dim", [gain]) == [8, 6]
    assert value_order(dims, "dim", [gain, loss]) == [8]  # 6 lies beyond the worse 8
    weights = bundle.catalog["ips_debiasing"]  # max_weight 5, 10, 20; default 10
    flat = _card("ips_debiasing", {"max_weight": 10.0}, "DISCARD", -0.0004, "negative_effect")
    kept = _card("ips_debiasing", {"max_weight": 5.0}, "KEEP", 0.0118)
    assert value_order(weights, "max_weight", [flat]) == [5.0, 20.0]
    assert value_order(weights, "max_weight", [flat, kept]) == [10.0]
    # the mild side: the default lost, the stronger value gained; the mildest is not tried
    stronger = _card("ips_debiasing", {"max_weight": 20.0}, "EXTEND", 0.004, "no_significance")
    assert value_order(weights, "max_weight", [flat, stronger]) == [10.0]


def test_memory_of_another_workspace_is_evidence_not_an_avoid_list(bundle, tiny_target) -> None:
    """A pre-filled or shared memory holds other repositories' outcomes.

    Their KEEP is not in this repository (and their DISCARD was measured against other
    code), so neither may block an idea here; a setting another workspace shipped is
    proposed first. The same cards written by this workspace are skipped as before.
    """
    harness = load_harness("brainstorm")

    def cards_of(workspace: str) -> list[KnowledgeCard]:
        kept = _card("exploration_slots", {"slots": 5}, "KEEP", 0.012)
        dropped = _card("seen_item_filter", {}, "DISCARD", -0.004)
        return [c.model_copy(update={"workspace_id": workspace}) for c in (kept, dropped)]

    def propose(cards: list[KnowledgeCard]):
        evidence = EvidenceBundle(
            system=bundle.system, data=bundle.data, catalog=bundle.catalog, cards=cards
        )
        return propose_batch(
            _goal(),
            evidence,
            tiny_target.repo_path,
            "tiny",
            harness,
            np.random.default_rng(0),
            workspace_id="ours",
        )

    shipped, dropped = (
        combo_key("exploration_slots", {"slots": 5}),
        combo_key("seen_item_filter", {}),
    )
    batch, avoid = propose(cards_of("theirs"))
    assert shipped not in avoid and dropped not in avoid
    slots = [p.params for p in batch if p.technique == "exploration_slots"]
    assert slots == [{"slots": 5}], "another workspace's shipped setting comes first"
    _, avoid = propose(cards_of("ours"))
    assert shipped in avoid and dropped in avoid


def test_a_retune_outcome_is_not_evidence_about_adding_the_technique(bundle) -> None:
    """Retunes measure one value against the kept one. A shipped freshness channel whose
    retunes lost must still look like a win to a repository without it, and a retune's
    belief starts from no gain and learns only from retunes."""
    policy = load_harness("brainstorm")["policy"]
    technique = bundle.catalog["freshness_channel"]
    kept = _card("freshness_channel", {"size": 20}, "KEEP", 0.08)
    retunes = [
        _card("freshness_channel", {"size": 40}, "DISCARD", -0.016).model_copy(
            update={"retune": True}
        ),
        _card("freshness_channel", {"size": 10}, "DISCARD", -0.075).model_copy(
            update={"retune": True}
        ),
    ]
    prior = belief_for(technique, [], "tiny", policy)
    added = belief_for(technique, [kept, *retunes], "tiny", policy)
    assert added.mean > prior.mean and added.n_same_world == 1
    retuned = belief_for(technique, [kept, *retunes], "tiny", policy, retune=True)
    assert retuned.mean < 0 and retuned.n_same_world == 2
    assert belief_for(technique, [kept], "tiny", policy, retune=True).mean == 0.0
