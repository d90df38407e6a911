"""From a rollout to a verdict (KEEP / EXTEND / DISCARD) and a knowledge card.

KEEP needs all of: the rollout was not halted; every stage passed its SRM check and has no
unresolved guardrail breach (severe, unmeasurable, or moderate without review or trade); the
north-star was measured; the exchange score (when configured) is not significantly negative;
and the north-star gain is significant — at the final stage against the alpha left after the
early-stop looks, or by the always-valid test that stopped the rollout early.
"""

from __future__ import annotations

from typing import Literal

from agentx.agents.evaluation.analysis import is_measured
from agentx.agents.evaluation.cards import make_card
from agentx.agents.evaluation.exchange import was_traded
from agentx.agents.evaluation.policy import EXCHANGE_METRIC, EvaluationPolicy, load_policy
from agentx.agents.evaluation.review import was_approved
from agentx.models import (
    Decision,
    ExperimentStatus,
    Rollout,
    RootCause,
    StageResult,
    Verdict,
)
from agentx.stats import StatsError, adjust_p_values

__all__ = ["decide", "make_card", "status_of"]


def decide(
    rollout: Rollout,
    north_star: str,
    alpha: float,
    *,
    policy: EvaluationPolicy | None = None,
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better",
) -> Verdict:
    """The verdict with its evidence; never KEEP on missing, broken or vetoed evidence."""
    policy = policy or load_policy()
    verdict = Verdict(experiment_id=rollout.experiment_id, decision=Decision.DISCARD)
    if not rollout.stages:
        verdict.root_cause = RootCause.CRASHED_ARM
        verdict.caveats.append("no rollout stage ran: there is no evidence at all")
        return verdict
    last = rollout.stages[-1]
    verdict.guardrails = last.guardrails
    effects = {e.metric: e for e in last.effects}
    verdict.north_star = effects.get(north_star)
    if rollout.halted_at or last.decision == "halt":
        reason = rollout.halt_reason or last.reason
        verdict.caveats.append(f"halted at {rollout.halted_at or last.stage}: {reason}")
        if last.halt_cause is None:  # halted outside this package, without a typed cause
            verdict.root_cause = RootCause.IMPLEMENTATION_DEFECT
            verdict.caveats.append("halt without a cause: recorded as an implementation defect")
        else:
            verdict.root_cause = last.halt_cause
        return verdict
    blocker = _broken_evidence(rollout.stages)
    if blocker:
        verdict.root_cause, caveat = blocker
        verdict.caveats.append(caveat)
        return verdict
    effect = verdict.north_star
    if effect is None:
        verdict.root_cause = RootCause.IMPLEMENTATION_DEFECT
        verdict.caveats.append(f"north-star {north_star} could not be estimated")
        return verdict
    verdict.caveats.extend(_notes(last, north_star, alpha, policy))
    exchange = effects.get(EXCHANGE_METRIC)
    sign = 1.0 if direction == "higher_is_better" else -1.0
    gain = sign * effect.relative > 0
    reach = effect.ci_high if sign > 0 else -effect.ci_low  # best plausible effect
    final_alpha = policy.final_alpha(alpha, len(rollout.stages))
    if last.decision == "stop_early":
        significant = True
        verdict.caveats.append(f"stopped early at {last.stage}: {last.reason}")
    else:
        significant = effect.p_value < final_alpha
        verdict.caveats.append(
            f"{north_star}: {effect.relative:+.2%} [{effect.ci_low:+.2%}, {effect.ci_high:+.2%}] "
            f"({effect.method}), p={effect.p_value:.3g} against final alpha {final_alpha:.3g}"
        )
    if exchange is not None and exchange.ci_high < 0:
        verdict.root_cause = RootCause.GUARDRAIL_HARM
        verdict.caveats.append(
            f"exchange score {exchange.relative:+.2%} [{exchange.ci_low:+.2%}, "
            f"{exchange.ci_high:+.2%}] is significantly negative: the gain costs more "
            "than it is worth"
        )
        return verdict
    if significant and gain:
        verdict.decision = Decision.KEEP
        verdict.root_cause = None
    elif significant:
        verdict.root_cause = RootCause.NEGATIVE_EFFECT
    elif gain and reach >= policy.min_interesting_effect:
        verdict.decision = Decision.EXTEND
        verdict.root_cause = RootCause.NO_SIGNIFICANCE
        verdict.caveats.append("inconclusive: more traffic could decide")
    else:
        verdict.root_cause = RootCause.NO_SIGNIFICANCE
    return verdict


def _broken_evidence(stages: list[StageResult]) -> tuple[RootCause, str] | None:
    """Evidence that should have halted the rollout (a hand-built or mis-wired rollout)."""
    for stage in stages:
        if not stage.srm_ok:
            return RootCause.TRAFFIC_MISMATCH, (
                f"sample ratio mismatch at {stage.stage} (p={stage.srm_p_value:.2g})"
            )
        for g in stage.guardrails:
            if not g.breached:
                continue
            if not is_measured(g):
                return RootCause.IMPLEMENTATION_DEFECT, (
                    f"guardrail {g.metric} was not measurable at {stage.stage}: {g.detail}"
                )
            if g.tier == "severe":
                return RootCause.GUARDRAIL_HARM, (
                    f"severe guardrail {g.metric} breached at {stage.stage}: {g.detail}"
                )
            return RootCause.GUARDRAIL_HARM, (
                f"moderate guardrail {g.metric} breached at {stage.stage} and never reviewed: "
                f"{g.detail}"
            )
    return None


def _notes(last: StageResult, north_star: str, alpha: float, policy: EvaluationPolicy) -> list[str]:
    """Caveats a reader needs: accepted breaches, exchange score, secondary metrics that moved."""
    notes = [
        f"{g.metric} breach accepted: {g.detail}"
        for g in last.guardrails
        if was_traded(g) or was_approved(g)
    ]
    effects = {e.metric: e for e in last.effects}
    exchange = effects.get(EXCHANGE_METRIC)
    if exchange is not None:
        notes.append(
            f"exchange score {exchange.relative:+.2%} "
            f"[{exchange.ci_low:+.2%}, {exchange.ci_high:+.2%}] ({exchange.method})"
        )
    secondary = [e for e in last.effects if e.metric not in (north_star, EXCHANGE_METRIC)]
    if secondary:
        try:
            adjusted = adjust_p_values(
                [e.p_value for e in secondary], method=policy.secondary_correction
            )
        except StatsError as error:
            return [*notes, f"secondary metrics not corrected: {error}"]
        moved = [
            f"{e.metric} {e.relative:+.2%} (adjusted p={p:.3g})"
            for e, p in zip(secondary, adjusted, strict=True)
            if p < alpha
        ]
        if moved:
            notes.append(
                f"secondary metrics that moved ({policy.secondary_correction}-adjusted): "
                + ", ".join(moved)
            )
    return notes


def status_of(verdict: Verdict) -> ExperimentStatus:
    """Ledger status of a verdict."""
    if verdict.decision == Decision.KEEP:
        return ExperimentStatus.KEPT
    if verdict.decision == Decision.EXTEND:
        return ExperimentStatus.EXTENDED
    if verdict.root_cause in (RootCause.GUARDRAIL_HARM, RootCause.CUMULATIVE_GUARDRAIL_HARM):
        return ExperimentStatus.VETOED
    return ExperimentStatus.DISCARDED
