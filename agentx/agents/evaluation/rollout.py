"""One rollout stage: assign, run traffic, check traffic split and guardrails, decide.

Order of checks after a stage's traffic (each failure halts with a reason from ``reasons``):
crashed arm → malformed readout → empty arm / sample-ratio mismatch → effects, exchange score
and guardrails (severe breach halts; moderate halts when autonomous, unless the exchange score
trades it; otherwise it waits for review) → north-star measurable → complete, or an always-valid
early stop.
"""

from __future__ import annotations

import numpy as np

from agentx.agents.evaluation import reasons
from agentx.agents.evaluation.analysis import (
    check_guardrails,
    estimate_effects,
    is_measured,
    within_tolerance,
)
from agentx.agents.evaluation.exchange import estimate_exchange, trade_moderate, was_traded
from agentx.agents.evaluation.policy import EvaluationPolicy, load_policy
from agentx.agents.evaluation.readout import arm_sizes, metric_array, pre_array, readout_defect
from agentx.models import (
    GuardrailResult,
    Rollout,
    RootCause,
    StageResult,
    TrafficSlot,
    stable_id,
)
from agentx.settings import RolloutStage, Settings
from agentx.stats import StatsError, assign_arms, cuped_adjust, msprt_test, srm_check
from agentx.target.contract import StageTraffic, Target
from agentx.target.models import ArmHandle, MetricSpec, OnlineReadout

N_BUCKETS = 1000
WIN = "clear win"
LOSS = "clear loss"


def stage_seed(seed: int, experiment_id: str, stage: str) -> int:
    """Seed of a stage's traffic: reproducible, different per experiment and stage."""
    return int(stable_id(seed, experiment_id, stage, length=8), 16)


def stage_assignment(
    users: np.ndarray, experiment_id: str, share: float, slot: TrafficSlot | None = None
) -> np.ndarray:
    """Arms of ``users`` at a stage with ``share`` of traffic in each arm.

    Control takes the buckets just below the middle and treatment those just above it, so
    when a later stage widens the shares both ranges grow outward: every canary user keeps
    their arm in the ramp and at full traffic (no user switches arms between stages).

    Alone (``slot`` None) the experiment hashes users with its own salt over all buckets.
    Beside others it hashes with its wave's salt and stays inside its own bucket range:
    experiments of one wave never share a user. ``share`` stays a share of all users as
    long as both arms fit in the range (a canary keeps its size in any slice), and is
    capped at the range's halves beyond that (:meth:`TrafficSlot.arm_buckets`).
    """
    if slot is None:
        width = round(share * N_BUCKETS)
        return assign_arms(
            users,
            salt=experiment_id,
            treatment_share=share,
            control_share=share,
            bucket_offset=N_BUCKETS // 2 - width,
            n_buckets=N_BUCKETS,
        )
    half = slot.width // 2
    width = slot.arm_buckets(share)
    arm_share = width / slot.n_buckets
    return assign_arms(
        users,
        salt=slot.salt,
        treatment_share=arm_share,
        control_share=arm_share,
        bucket_offset=slot.offset + half - width,
        n_buckets=slot.n_buckets,
    )


def earlier_stages(
    users: np.ndarray,
    stage: RolloutStage,
    experiment_id: str,
    settings: Settings,
    slot: TrafficSlot | None = None,
) -> list[StageTraffic]:
    """The stages of this rollout that precede ``stage`` in time, as the target replays them."""
    names = [s.name for s in settings.stages]
    index = names.index(stage.name) if stage.name in names else 0
    return [
        StageTraffic(
            assignment=stage_assignment(users, experiment_id, before.treatment_share, slot),
            days=before.days,
            seed=stage_seed(settings.seed, experiment_id, before.name),
        )
        for before in settings.stages[:index]
    ]


def run_stage(
    target: Target,
    control: ArmHandle,
    treatment: ArmHandle,
    stage: RolloutStage,
    experiment_id: str,
    settings: Settings,
    final: bool,
    *,
    policy: EvaluationPolicy | None = None,
    slot: TrafficSlot | None = None,
) -> StageResult:
    """Run ``stage`` (inside ``slot``, the experiment's traffic range when it runs beside
    others) and decide: continue, halt (veto), stop early, or complete.

    Never raises for a failing target or a bad readout: every failure becomes a halt whose
    reason starts with one of the prefixes in :mod:`agentx.agents.evaluation.reasons`.
    """
    policy = policy or load_policy()
    base = {"stage": stage.name, "treatment_share": stage.treatment_share, "days": stage.days}
    try:
        users = target.user_ids()
        assignment = stage_assignment(users, experiment_id, stage.treatment_share, slot)
        readout = target.collect(
            control,
            treatment,
            assignment,
            days=stage.days,
            seed=stage_seed(settings.seed, experiment_id, stage.name),
            earlier=earlier_stages(users, stage, experiment_id, settings, slot),
        )
        specs = target.describe().metrics
    except Exception as error:  # any failure of a user's target is recorded, not raised
        return _halt(base, reasons.CRASHED, f"the stage could not run ({_describe(error)})")
    return evaluate_readout(readout, specs, base, settings, policy, final)


def evaluate_readout(
    readout: OnlineReadout,
    specs: list[MetricSpec],
    base: dict[str, object],
    settings: Settings,
    policy: EvaluationPolicy,
    final: bool,
) -> StageResult:
    """Judge one stage's readout (separate from traffic so bad readouts can be tested)."""
    if readout.errors:
        crashed = "; ".join(f"{arm}: {err}" for arm, err in readout.errors.items())
        return _halt(base, reasons.CRASHED, crashed)
    defect = readout_defect(readout)
    if defect:
        return _halt(base, reasons.INVALID_READOUT, defect)
    counts = arm_sizes(readout)
    empty = [arm for arm, n in zip(readout.arms, counts, strict=True) if n == 0]
    if empty:
        detail = f"arm {', '.join(empty)} has no users ({counts})"
        return _halt(base, reasons.TRAFFIC_MISMATCH, detail, srm_failed=True)
    try:
        srm = srm_check(counts, [0.5, 0.5])
    except StatsError as error:
        return _halt(base, reasons.TRAFFIC_MISMATCH, str(error), srm_failed=True)
    alpha = settings.alpha
    effects, problems = estimate_effects(readout, specs, alpha)
    exchange, exchange_problem = estimate_exchange(readout, specs, policy.exchange, alpha)
    guardrail_alpha = policy.guardrail_alpha or alpha
    guardrails = check_guardrails(effects, problems, settings.guardrails, guardrail_alpha)
    guardrails = trade_moderate(guardrails, exchange, policy.exchange)
    result = StageResult(
        **base,
        srm_p_value=srm.p_value,
        srm_ok=srm.ok,
        effects=[*effects.values(), *([exchange] if exchange else [])],
        guardrails=guardrails,
    )
    if not srm.ok:
        detail = f"sample ratio mismatch {counts} (p={srm.p_value:.2g})"
        return _stop(result, *reasons.halted(reasons.TRAFFIC_MISMATCH, detail))
    severe = [g for g in guardrails if g.breached and g.tier == "severe"]
    moderate = [g for g in guardrails if g.breached and g.tier == "moderate"]
    if severe or (moderate and settings.autonomous):
        return _stop(result, *_guardrail_reason(severe + moderate))
    north = settings.north_star
    if north not in effects:
        reason = problems.get(north, "the target does not report it")
        detail = f"{north}: {reason}"
        return _stop(result, *reasons.halted(reasons.NORTH_STAR_UNMEASURABLE, detail))
    result.review_pending = [g.metric for g in moderate]
    notes = [exchange_problem] if exchange_problem else []
    if final:
        return _set(result, "complete", notes)
    spec = next((s for s in specs if s.name == north), None)
    look_alpha = policy.early_alpha(alpha, len(settings.stages))
    early = _early_stop(readout, spec, look_alpha) if spec and look_alpha > 0 else None
    if early is not None and early[1]:
        uncleared = _not_cleared(guardrails, settings)
        if uncleared:
            notes.append(f"early win not taken: {', '.join(uncleared)} not yet within tolerance")
            early = None
    if early is not None:
        return _set(result, "stop_early", [early[0], *notes])
    return _set(result, "continue", notes)


def _not_cleared(guardrails: list[GuardrailResult], settings: Settings) -> list[str]:
    """Guardrails whose interval does not yet rule out harm beyond tolerance.

    Stopping early for a win skips the later, larger stages, where a guardrail harm too small
    to be significant at this stage would still be caught; so an early win is only taken when
    every non-observe guardrail is already shown to be within tolerance (non-inferiority).
    """
    specs = {g.metric: g for g in settings.guardrails}
    return [
        result.metric
        for result in guardrails
        if (spec := specs.get(result.metric)) is not None
        and spec.tier != "observe"
        and not was_traded(result)
        and not within_tolerance(result, spec)
    ]


def _guardrail_reason(broken: list[GuardrailResult]) -> tuple[str, RootCause]:
    measured = [g for g in broken if is_measured(g)]
    kind = reasons.GUARDRAIL_BREACHED if measured else reasons.GUARDRAIL_UNMEASURABLE
    return reasons.halted(kind, "; ".join(f"{g.tier} {g.metric} {g.detail}" for g in broken))


def _early_stop(readout: OnlineReadout, spec: MetricSpec, alpha: float) -> tuple[str, bool] | None:
    """An always-valid (mSPRT) win or loss on the north-star at this stage, if any: the
    readable line and whether it is a win.

    The per-user values are CUPED-adjusted first (when the pre-period allows it): the same
    test on less noisy data stops sooner.
    """
    if spec.kind != "per_user":
        return None
    control, treatment = readout.arms
    try:
        c = metric_array(readout, control, spec.name)
        t = metric_array(readout, treatment, spec.name)
        pc, pt = pre_array(readout, control, spec.name), pre_array(readout, treatment, spec.name)
        if pc is not None and pt is not None:
            adjusted = cuped_adjust(c, pc, t, pt)
            c, t = adjusted.y_control_adj, adjusted.y_treatment_adj
        seq = msprt_test(c, t, alpha)
    except StatsError:
        return None
    if not seq.reject:
        return None
    good = (float(np.mean(t)) > float(np.mean(c))) == (spec.direction == "higher_is_better")
    verdict = WIN if good else LOSS
    line = (
        f"always-valid test on {spec.name} rejected at alpha {alpha:.3g} "
        f"(p={seq.p_value:.3g}, {seq.n_at_stop} users per arm): {verdict}"
    )
    return line, good


def _halt(base: dict[str, object], kind: str, detail: str, srm_failed: bool = False) -> StageResult:
    """A halted stage with no effects; the SRM fields say whether the split itself failed."""
    reason, cause = reasons.halted(kind, detail)
    return StageResult(
        **base,
        srm_p_value=0.0 if srm_failed else 1.0,
        srm_ok=not srm_failed,
        decision="halt",
        reason=reason,
        halt_cause=cause,
    )


def _stop(result: StageResult, reason: str, cause: RootCause) -> StageResult:
    """``result`` halted with a readable reason and its typed cause."""
    result.decision, result.reason, result.halt_cause = "halt", reason, cause
    return result


def _set(result: StageResult, decision: str, notes: list[str]) -> StageResult:
    """``result`` with a decision that goes on; the reason lists the notes and, last, any
    moderate breach that waits for review."""
    result.decision = decision  # type: ignore[assignment]
    result.notes = notes
    result.reason = compose_reason(result)
    return result


def compose_reason(result: StageResult) -> str:
    """The readable reason of a stage that was not halted, from its typed parts (a pending
    review first: it is what a reader must act on)."""
    pending = (
        [f"{reasons.REVIEW_PENDING}: " + ", ".join(result.review_pending)]
        if result.review_pending
        else []
    )
    return "; ".join([*pending, *result.notes])


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def run_rollout(
    target: Target,
    control: ArmHandle,
    treatment: ArmHandle,
    experiment_id: str,
    settings: Settings,
    *,
    policy: EvaluationPolicy | None = None,
    rollback: bool = True,
    slot: TrafficSlot | None = None,
) -> Rollout:
    """Every stage in order, as the loop runs them without human gates: stop at the first
    halt (rolling the treatment back unless ``rollback`` is False, as a replay of recorded
    traffic wants), early stop, or completion. ``slot`` is the traffic range of an
    experiment that ran beside others (its replay must assign the same users).

    For benchmarks, tests and reports; the graph runs the same stages one node at a time.
    """
    policy = policy or load_policy()
    rollout = Rollout(experiment_id=experiment_id)
    for index, stage in enumerate(settings.stages):
        final = index == len(settings.stages) - 1
        result = run_stage(
            target, control, treatment, stage, experiment_id, settings, final,
            policy=policy, slot=slot,
        )  # fmt: skip
        rollout.stages.append(result)
        if result.decision == "halt":
            rollout.halted_at, rollout.halt_reason = stage.name, result.reason
            if not rollback:
                break
            try:
                target.rollback(treatment)
                rollout.rolled_back = True
            except Exception as error:  # a failed rollback is recorded, not raised
                rollout.halt_reason = f"{result.reason}; rollback failed: {_describe(error)}"
            break
        if result.decision != "continue":
            break
    return rollout
