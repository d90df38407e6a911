"""The guardrail rule (harm beyond tolerance AND significant; unmeasurable = broken unless
observe), the exchange trade, non-inferiority before early stops, and review answers."""

from __future__ import annotations

import pytest

from agentx.agents.evaluation.analysis import check_guardrails, within_tolerance
from agentx.agents.evaluation.exchange import trade_moderate
from agentx.agents.evaluation.policy import ExchangeSpec
from agentx.agents.evaluation.review import parse_answer
from agentx.models import GuardrailResult, MetricEffect
from agentx.settings import GuardrailSpec


def effect(
    metric: str,
    relative: float,
    half_width: float,
    p: float,
    control_mean: float = 10.0,
    method: str = "cuped+welch",
) -> MetricEffect:
    return MetricEffect(
        metric=metric,
        control_mean=control_mean,
        treatment_mean=control_mean * (1 + relative),
        absolute=control_mean * relative,
        relative=relative,
        ci_low=relative - half_width,
        ci_high=relative + half_width,
        p_value=p,
        method=method,
        n_control=1000,
        n_treatment=1000,
    )


SEVERE = GuardrailSpec(metric="active_days", tier="severe", max_relative_harm=0.01)
LATENCY = GuardrailSpec(
    metric="latency_ms", tier="severe", direction="lower_is_better", max_relative_harm=0.25
)


def one(spec: GuardrailSpec, eff: MetricEffect | None, problem: str = "gone") -> GuardrailResult:
    effects = {eff.metric: eff} if eff else {}
    return check_guardrails(effects, {spec.metric: problem}, [spec], alpha=0.05)[0]


@pytest.mark.parametrize(
    ("relative", "half", "p", "breached"),
    [
        (-0.03, 0.01, 0.001, True),  # beyond tolerance and significant
        (-0.03, 0.05, 0.20, False),  # beyond tolerance, not significant
        (-0.005, 0.002, 0.001, False),  # significant, within tolerance
        (+0.03, 0.01, 0.001, False),  # significant, but an improvement
    ],
)
def test_breach_needs_harm_beyond_tolerance_and_significance(
    relative: float, half: float, p: float, breached: bool
) -> None:
    assert one(SEVERE, effect("active_days", relative, half, p)).breached is breached


def test_direction_lower_is_better() -> None:
    assert one(LATENCY, effect("latency_ms", +0.40, 0.05, 1e-6)).breached
    assert not one(LATENCY, effect("latency_ms", -0.40, 0.05, 1e-6)).breached


def test_unmeasurable_guardrail_is_broken_unless_observe() -> None:
    for tier, broken in (("severe", True), ("moderate", True), ("observe", False)):
        spec = GuardrailSpec(metric="tail_share", tier=tier)
        result = one(spec, None, problem="'tail_share.num' has 3 NaN/inf value(s)")
        assert result.breached is broken
        assert result.detail.startswith("not measurable") and "NaN" in result.detail
        assert not within_tolerance(result, spec)


def test_observe_tier_never_breaches() -> None:
    spec = GuardrailSpec(metric="diversity", tier="observe", max_relative_harm=0.0)
    assert not one(spec, effect("diversity", -0.5, 0.01, 1e-9)).breached


def test_errors_from_a_zero_baseline() -> None:
    errors = GuardrailSpec(
        metric="errors", tier="severe", direction="lower_is_better", max_relative_harm=0.0
    )
    rose = MetricEffect(
        metric="errors",
        control_mean=0.0,
        treatment_mean=0.3,
        absolute=0.3,
        relative=0.0,
        ci_low=0.0,
        ci_high=0.0,
        p_value=1e-8,
        method="welch; zero baseline",
        n_control=500,
        n_treatment=500,
    )
    result = one(errors, rose)
    assert result.breached and "rose from 0" in result.detail
    assert not within_tolerance(result, errors)
    flat = rose.model_copy(update={"treatment_mean": 0.0, "absolute": 0.0, "p_value": 1.0})
    held = one(errors, flat)
    assert not held.breached and within_tolerance(held, errors)


def test_within_tolerance_is_non_inferiority() -> None:
    # Not a breach (not significant), but the interval still allows 4% harm: not cleared.
    wide = one(SEVERE, effect("active_days", -0.005, 0.035, 0.7))
    assert not wide.breached and not within_tolerance(wide, SEVERE)
    narrow = one(SEVERE, effect("active_days", 0.002, 0.005, 0.5))
    assert within_tolerance(narrow, SEVERE)


TAIL = GuardrailSpec(metric="tail_share", tier="moderate", max_relative_harm=0.1)
SPEC = ExchangeSpec(weights={"watch_time": 1.0}, max_trade_loss=0.2)


def test_exchange_trades_only_small_measured_moderate_breaches() -> None:
    good = effect("exchange", 0.08, 0.03, 1e-4)
    moderate = one(TAIL, effect("tail_share", -0.15, 0.03, 1e-5))
    large = one(TAIL, effect("tail_share", -0.35, 0.03, 1e-9))
    severe = one(SEVERE, effect("active_days", -0.05, 0.01, 1e-9))
    lost = one(TAIL, None)
    assert all(g.breached for g in (moderate, large, severe, lost))
    traded = trade_moderate([moderate, large, severe, lost], good, SPEC)
    assert [g.breached for g in traded] == [False, True, True, True]
    assert "traded" in traded[0].detail
    # The point estimate is within the trade limit but the interval reaches past it.
    uncertain_loss = one(TAIL, effect("tail_share", -0.17, 0.05, 1e-5))
    assert trade_moderate([uncertain_loss], good, SPEC)[0].breached
    unsure = effect("exchange", 0.08, 0.10, 0.2)  # interval includes 0: no trade
    assert trade_moderate([moderate], unsure, SPEC)[0].breached
    assert trade_moderate([moderate], None, SPEC)[0].breached
    disabled = ExchangeSpec(enabled=False)
    assert trade_moderate([moderate], good, disabled)[0].breached


@pytest.mark.parametrize(
    ("answer", "approve"),
    [
        ({"approve": True, "reviewer": "kim"}, True),
        (True, True),
        ("Approve", True),
        ("veto", False),
        ({"approve": False}, False),
        ({"approve": "maybe?"}, None),
        ({"reviewer": "kim"}, None),
        (None, None),
        (42, None),
    ],
)
def test_review_answers(answer: object, approve: bool | None) -> None:
    parsed, problem = parse_answer(answer)
    if approve is None:
        assert parsed is None and problem
    else:
        assert parsed is not None and parsed.approve is approve
