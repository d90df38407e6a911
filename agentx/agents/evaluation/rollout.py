"""One rollout stage: assign, run traffic, check traffic split and guardrails, decide."""

from __future__ import annotations

from agentx.agents.evaluation.analysis import check_guardrails, estimate_effects
from agentx.models import StageResult, stable_id
from agentx.settings import RolloutStage, Settings
from agentx.stats import StatsError, assign_arms, msprt_test, srm_check
from agentx.target.contract import Target
from agentx.target.models import ArmHandle


def stage_seed(seed: int, experiment_id: str, stage: str) -> int:
    """Seed of a stage's traffic: reproducible, different per experiment and stage."""
    return int(stable_id(seed, experiment_id, stage, length=8), 16)


def run_stage(
    target: Target,
    control: ArmHandle,
    treatment: ArmHandle,
    stage: RolloutStage,
    experiment_id: str,
    settings: Settings,
    final: bool,
) -> StageResult:
    """Run ``stage`` and decide: continue, halt (veto), stop early, or complete."""
    users = target.user_ids()
    assignment = assign_arms(users, salt=experiment_id, treatment_share=stage.treatment_share)
    readout = target.collect(
        control,
        treatment,
        assignment,
        stage.days,
        stage_seed(settings.seed, experiment_id, stage.name),
    )
    base = {"stage": stage.name, "treatment_share": stage.treatment_share, "days": stage.days}
    if readout.errors:
        reason = "; ".join(f"{arm}: {err}" for arm, err in readout.errors.items())
        return StageResult(
            **base, srm_p_value=1.0, srm_ok=True, decision="halt", reason=f"crashed arm: {reason}"
        )
    counts = [len(readout.users[arm]) for arm in readout.arms]
    try:
        srm = srm_check(counts, [0.5, 0.5])
    except StatsError as error:
        return StageResult(
            **base,
            srm_p_value=0.0,
            srm_ok=False,
            decision="halt",
            reason=f"traffic mismatch: {error}",
        )
    specs = target.describe().metrics
    effects, problems = estimate_effects(readout, specs, settings.alpha)
    guardrails = check_guardrails(effects, problems, settings.guardrails)
    result = StageResult(
        **base,
        srm_p_value=srm.p_value,
        srm_ok=srm.ok,
        effects=list(effects.values()),
        guardrails=guardrails,
    )
    if not srm.ok:
        result.decision, result.reason = "halt", f"sample ratio mismatch (p={srm.p_value:.2g})"
        return result
    severe = [g for g in guardrails if g.breached and g.tier == "severe"]
    moderate = [g for g in guardrails if g.breached and g.tier == "moderate"]
    if severe or (moderate and settings.autonomous):
        broken = severe + moderate
        result.decision = "halt"
        result.reason = "guardrail breached: " + ", ".join(f"{g.metric} {g.detail}" for g in broken)
        return result
    if moderate:
        result.reason = "moderate guardrail breach needs review: " + ", ".join(
            g.metric for g in moderate
        )
    north = settings.north_star
    if north not in effects:
        result.decision = "halt"
        result.reason = f"north-star {north} not measurable: {problems.get(north, 'missing')}"
        return result
    if final:
        result.decision = "complete"
        return result
    early = _early_stop(readout, north, settings.alpha)
    if early:
        result.decision, result.reason = "stop_early", early
    return result


def _early_stop(readout, north: str, alpha: float) -> str | None:
    control, treatment = readout.arms
    try:
        seq = msprt_test(readout.metrics[control][north], readout.metrics[treatment][north], alpha)
    except (StatsError, KeyError):
        return None
    c = readout.metrics[control][north].mean()
    t = readout.metrics[treatment][north].mean()
    if seq.reject and t > c:
        return f"always-valid test on {north} rejected (p={seq.p_value:.3g}): clear win"
    return None
