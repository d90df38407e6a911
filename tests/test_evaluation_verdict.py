"""Verdicts from hand-built rollouts, knowledge cards, the truth tally and the policy file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentx.agents.evaluation import reasons
from agentx.agents.evaluation.cards import make_card
from agentx.agents.evaluation.policy import EvaluationPolicy, ExchangeSpec, load_policy
from agentx.agents.evaluation.truth import classify_truth, tally_verdicts, true_exchange
from agentx.agents.evaluation.verdict import decide, status_of
from agentx.harness import HarnessError
from agentx.models import (
    Decision,
    ExperimentStatus,
    GuardrailResult,
    MetricEffect,
    Proposal,
    Rollout,
    RootCause,
    StageResult,
    Verdict,
)
from agentx.settings import GuardrailSpec

POLICY = EvaluationPolicy(min_interesting_effect=0.005, early_stop_alpha_share=0.2)
STAGES = ("canary", "ramp", "full")


def effect(metric: str, relative: float, half: float, p: float) -> MetricEffect:
    return MetricEffect(
        metric=metric,
        control_mean=20.0,
        treatment_mean=20.0 * (1 + relative),
        absolute=20.0 * relative,
        relative=relative,
        ci_low=relative - half,
        ci_high=relative + half,
        p_value=p,
        method="cuped+welch",
        n_control=4000,
        n_treatment=4000,
    )


def held(metric: str = "active_days") -> GuardrailResult:
    return GuardrailResult(
        metric=metric, tier="severe", relative=0.0, ci_low=-0.01, ci_high=0.01, breached=False
    )


def rollout(*effects: MetricEffect, decision: str = "complete", **stage: object) -> Rollout:
    stages = [
        StageResult(stage=name, treatment_share=0.1, days=3, srm_p_value=0.5, srm_ok=True)
        for name in STAGES
    ]
    last = stages[-1]
    last.effects = list(effects)
    last.guardrails = [held()]
    last.decision = decision  # type: ignore[assignment]
    for key, value in stage.items():
        setattr(last, key, value)
    return Rollout(experiment_id="e1", stages=stages)


def verdict_of(r: Rollout, direction: str = "higher_is_better") -> Verdict:
    return decide(r, "watch_time", 0.05, policy=POLICY, direction=direction)  # type: ignore[arg-type]


def test_significant_gain_is_kept_with_its_evidence() -> None:
    v = verdict_of(rollout(effect("watch_time", 0.04, 0.02, 0.001)))
    assert v.decision == Decision.KEEP and v.root_cause is None
    assert v.north_star is not None and v.guardrails and status_of(v) == ExperimentStatus.KEPT
    assert any("final alpha 0.04" in c for c in v.caveats)


def test_final_alpha_accounts_for_early_looks() -> None:
    # p = 0.045 passes a single look at 0.05, not the 0.04 left after two early looks.
    v = verdict_of(rollout(effect("watch_time", 0.04, 0.039, 0.045)))
    assert v.decision == Decision.EXTEND and v.root_cause == RootCause.NO_SIGNIFICANCE
    single = Rollout(
        experiment_id="e", stages=rollout(effect("watch_time", 0.04, 0.039, 0.045)).stages[-1:]
    )
    assert verdict_of(single).decision == Decision.KEEP


@pytest.mark.parametrize(
    ("relative", "half", "p", "decision", "cause"),
    [
        (-0.05, 0.02, 0.001, Decision.DISCARD, RootCause.NEGATIVE_EFFECT),
        (0.01, 0.03, 0.5, Decision.EXTEND, RootCause.NO_SIGNIFICANCE),
        (0.001, 0.002, 0.4, Decision.DISCARD, RootCause.NO_SIGNIFICANCE),  # cannot reach 0.5 %
        (-0.01, 0.03, 0.5, Decision.DISCARD, RootCause.NO_SIGNIFICANCE),
    ],
)
def test_other_outcomes(relative: float, half: float, p: float, decision: Decision, cause) -> None:
    v = verdict_of(rollout(effect("watch_time", relative, half, p)))
    assert (v.decision, v.root_cause) == (decision, cause)


def test_lower_is_better_north_star() -> None:
    v = verdict_of(rollout(effect("watch_time", -0.05, 0.02, 0.001)), "lower_is_better")
    assert v.decision == Decision.KEEP


def test_early_stop_win_and_loss() -> None:
    win = rollout(effect("watch_time", 0.1, 0.04, 1e-6), decision="stop_early", reason="clear win")
    assert verdict_of(win).decision == Decision.KEEP
    loss = rollout(effect("watch_time", -0.1, 0.04, 1e-6), decision="stop_early")
    assert verdict_of(loss).root_cause == RootCause.NEGATIVE_EFFECT


def test_significantly_negative_exchange_blocks_keep() -> None:
    r = rollout(effect("watch_time", 0.04, 0.02, 0.001), effect("exchange", -0.03, 0.02, 0.003))
    v = verdict_of(r)
    assert v.decision == Decision.DISCARD and v.root_cause == RootCause.GUARDRAIL_HARM
    assert status_of(v) == ExperimentStatus.VETOED


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        (reasons.CRASHED, RootCause.CRASHED_ARM),
        (reasons.TRAFFIC_MISMATCH, RootCause.TRAFFIC_MISMATCH),
        (reasons.GUARDRAIL_BREACHED, RootCause.GUARDRAIL_HARM),
        (reasons.GUARDRAIL_UNMEASURABLE, RootCause.IMPLEMENTATION_DEFECT),
        (reasons.NORTH_STAR_UNMEASURABLE, RootCause.IMPLEMENTATION_DEFECT),
        (reasons.LAUNCH_REFUSED, RootCause.LAUNCH_REFUSED),
    ],
)
def test_halted_rollouts_are_discarded_with_a_cause(kind: str, cause: RootCause) -> None:
    reason, halt_cause = reasons.halted(kind, "details")
    r = rollout(
        effect("watch_time", 0.2, 0.02, 1e-9), decision="halt", reason=reason, halt_cause=halt_cause
    )
    r.halted_at, r.halt_reason = "full", reason
    v = verdict_of(r)
    assert (v.decision, v.root_cause) == (Decision.DISCARD, cause)
    assert any(reason in c for c in v.caveats)


def test_the_cause_is_the_typed_field_not_the_reason_text() -> None:
    # A reason that reads like a guardrail breach, on a stage halted by a reviewer's refusal,
    # and a halt with no typed cause at all (built outside the rollout code).
    text = "guardrail breached: a reviewer wrote this note"
    refused = rollout(decision="halt", reason=text, halt_cause=RootCause.LAUNCH_REFUSED)
    assert verdict_of(refused).root_cause == RootCause.LAUNCH_REFUSED
    untyped = rollout(decision="halt", reason=text)
    v = verdict_of(untyped)
    assert v.root_cause == RootCause.IMPLEMENTATION_DEFECT
    assert any("without a cause" in c for c in v.caveats)


def test_evidence_that_should_have_halted_is_never_kept() -> None:
    good = effect("watch_time", 0.2, 0.02, 1e-9)
    srm = rollout(good)
    srm.stages[0].srm_ok = False
    assert verdict_of(srm).root_cause == RootCause.TRAFFIC_MISMATCH
    breached = rollout(good)
    breached.stages[1].guardrails = [held().model_copy(update={"breached": True})]
    assert verdict_of(breached).root_cause == RootCause.GUARDRAIL_HARM
    missing = rollout(effect("clicks", 0.2, 0.02, 1e-9))
    assert verdict_of(missing).root_cause == RootCause.IMPLEMENTATION_DEFECT
    empty = decide(Rollout(experiment_id="e"), "watch_time", 0.05, policy=POLICY)
    assert empty.decision == Decision.DISCARD and empty.root_cause == RootCause.CRASHED_ARM


def test_holm_correction_across_secondary_metrics() -> None:
    secondary = [effect(f"m{i}", 0.01, 0.01, 0.02) for i in range(5)]
    v = verdict_of(rollout(effect("watch_time", 0.04, 0.02, 0.001), *secondary))
    assert not any("secondary metrics that moved" in c for c in v.caveats)  # 5 x 0.02 > 0.05
    strong = effect("m9", 0.05, 0.01, 1e-6)
    v = verdict_of(rollout(effect("watch_time", 0.04, 0.02, 0.001), *secondary, strong))
    moved = next(c for c in v.caveats if "secondary metrics that moved" in c)
    assert "m9" in moved and "m0" not in moved


PROPOSAL = Proposal(
    id="p1",
    technique="exploration",
    lever="rerank.exploration_slots",
    params={"exploration_slots": 2},
    hypothesis="Exploration finds long-tail items users like.",
    target_metric="watch_time",
)


def test_cards_carry_effect_interval_and_lesson() -> None:
    kept = verdict_of(rollout(effect("watch_time", 0.04, 0.02, 0.001)))
    card = make_card(PROPOSAL, "e1", "watch_time", "tiny", "run", kept, None, "full")
    assert card.kind == "playbook" and card.decision == "KEEP" and card.effect == 0.04
    assert "[+2.00%, +6.00%]" in card.text and "cuped+welch" in card.text
    assert card.metadata()["stage"] == "full"
    assert card == make_card(PROPOSAL, "e1", "watch_time", "tiny", "run", kept, None, "full")
    r = rollout(
        decision="halt",
        reason="guardrail breached: severe latency_ms +40%",
        halt_cause=RootCause.GUARDRAIL_HARM,
    )
    r.halted_at, r.halt_reason = "canary", r.stages[-1].reason
    vetoed = verdict_of(r)
    card = make_card(PROPOSAL, "e2", "watch_time", "tiny", "run", vetoed, None, "canary")
    assert card.kind == "counterexample" and card.root_cause == "guardrail_harm"
    assert "do not repeat unmitigated" in card.text and "latency_ms" in card.text
    abandoned = make_card(
        PROPOSAL, "e3", "watch_time", "tiny", "run", None, "implementation_defect", None
    )
    assert abandoned.decision == "ABANDONED" and "fix it before judging" in abandoned.text


GUARDS = [
    GuardrailSpec(metric="active_days", tier="severe", max_relative_harm=0.01),
    GuardrailSpec(metric="tail_share", tier="moderate", max_relative_harm=0.1),
    GuardrailSpec(metric="diversity", tier="observe", max_relative_harm=0.0),
]


def test_truth_classes() -> None:
    def cls(**truth: float) -> str:
        return classify_truth(truth, "watch_time", GUARDS, 0.005)[0]

    assert cls(watch_time=0.03, active_days=0.0) == "good"
    assert cls(watch_time=0.03, active_days=-0.02) == "harmful"
    assert cls(watch_time=0.03, tail_share=-0.2) == "harmful"
    assert cls(watch_time=0.03, diversity=-0.5) == "good"  # observe-only
    assert cls(watch_time=-0.01) == "harmful"
    assert cls(watch_time=0.001) == "neutral"
    assert cls(active_days=0.1) == "unknown"


def test_truth_respects_the_exchange_policy() -> None:
    spec = ExchangeSpec(weights={"watch_time": 1.0, "tail_share": 0.1}, max_trade_loss=0.2)

    def cls(**truth: float) -> str:
        return classify_truth(truth, "watch_time", GUARDS, 0.005, exchange=spec)[0]

    # A moderate loss the policy would trade for a net gain is not harm ...
    assert cls(watch_time=0.05, tail_share=-0.15, active_days=0.0) == "good"
    # ... unless it is beyond the trade limit, the net is not positive, or it is severe.
    assert cls(watch_time=0.05, tail_share=-0.25, active_days=0.0) == "harmful"
    assert cls(watch_time=0.01, tail_share=-0.15, active_days=0.0) == "harmful"
    assert cls(watch_time=0.05, tail_share=0.0, active_days=-0.02) == "harmful"
    assert true_exchange({"watch_time": 0.05, "tail_share": -0.1}, spec) == pytest.approx(0.04)
    assert true_exchange({"watch_time": 0.05}, spec) is None
    lower = true_exchange(
        {"watch_time": 0.05, "tail_share": 0.1}, spec, {"tail_share": "lower_is_better"}
    )
    assert lower == pytest.approx(0.04)


def test_tally_counts_every_outcome() -> None:
    def v(decision: Decision, **truth: float) -> Verdict:
        return Verdict(experiment_id="x", decision=decision, true_effects=truth)

    verdicts = [
        v(Decision.KEEP, watch_time=0.05),
        v(Decision.KEEP, watch_time=0.0),
        v(Decision.KEEP, watch_time=0.05, active_days=-0.1),
        v(Decision.EXTEND, watch_time=0.05),
        v(Decision.DISCARD, watch_time=-0.05),
        v(Decision.DISCARD, watch_time=0.0),
        v(Decision.DISCARD),
    ]
    tally = tally_verdicts(verdicts, "watch_time", GUARDS)
    assert tally.counts == {
        "true_keep": 1,
        "false_keep": 2,
        "missed_win": 1,
        "harmful_blocked": 1,
        "correct_discard": 1,
        "unknown": 1,
    }
    assert tally.harmful_launches == 1 and tally.judged == 6
    assert tally.rows[2].harmed == ["active_days"]
    assert tally.rate("true_keep") == pytest.approx(1 / 6)


def test_policy_file_loads_and_bad_values_name_the_field(tmp_path: Path) -> None:
    policy = load_policy()
    assert policy.exchange.active and policy.final_alpha(0.05, 3) < 0.05
    assert policy.early_alpha(0.05, 3) * 2 + policy.final_alpha(0.05, 3) == pytest.approx(0.05)
    assert policy.early_alpha(0.05, 1) == 0.0 and policy.final_alpha(0.05, 1) == 0.05
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "harness.yaml").write_text(
        "min_interesting_effect: lots\nexchange:\n  weights: {watch_time: -1}\n"
    )
    with pytest.raises(HarnessError, match="min_interesting_effect") as info:
        load_policy(tmp_path)
    assert "exchange.weights" in str(info.value)
