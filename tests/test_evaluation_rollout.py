"""Rollout stages on a small fake target: bad input becomes a recorded outcome, never a crash
and never a KEEP; guardrail tiers, the exchange trade and the review gate act at the stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from agentx.agents.evaluation import reasons
from agentx.agents.evaluation.policy import EvaluationPolicy, ExchangeSpec
from agentx.agents.evaluation.review import apply_review, review_request
from agentx.agents.evaluation.rollout import run_rollout, run_stage, stage_assignment
from agentx.agents.evaluation.verdict import decide, status_of
from agentx.models import Decision, ExperimentStatus, Rollout, RootCause, StageResult, Verdict
from agentx.sandbox.online import METRIC_DEFINITIONS
from agentx.sandbox.target import METRICS
from agentx.settings import Settings, load_settings
from agentx.target.contract import StageTraffic, Target
from agentx.target.models import (
    ArmHandle,
    GroundTruth,
    OnlineReadout,
    SystemDescription,
)
from agentx.target.shipping import ShipResult

N_USERS = 6000
Corruption = Callable[[OnlineReadout], None]


class FakeTarget:
    """A target whose users have known per-user metrics and optional injected lifts.

    ``lift[name]`` multiplies a per-user metric (or a ratio's numerator) of treated users;
    ``corrupt`` edits the readout before it is returned; ``fail`` is raised by ``collect``.
    """

    name = "fake"

    def __init__(
        self,
        lift: dict[str, float] | None = None,
        corrupt: Corruption | None = None,
        fail: Exception | None = None,
    ) -> None:
        self.lift = lift or {}
        self.corrupt = corrupt
        self.fail = fail
        self.earlier_days: list[int] = []  # days of earlier stages each collect replayed
        self.rolled_back: list[str] = []

    @property
    def repo_path(self) -> Path:
        return Path("/nonexistent/fake-repo")

    def describe(self) -> SystemDescription:
        return SystemDescription(name="fake", architecture="", metrics=METRICS)

    def analyse_data(self):  # pragma: no cover - not used by the Evaluation Agent
        raise NotImplementedError

    def verify(self, workdir: Path, timeout_s: float = 300.0):  # pragma: no cover
        raise NotImplementedError

    def evaluate_offline(self, workdir: Path):  # pragma: no cover
        raise NotImplementedError

    def launch(self, name: str, workdir: Path) -> ArmHandle:
        return ArmHandle(name=name, workdir=str(workdir), artefact=f"fake:{name}")

    def rollback(self, arm: ArmHandle) -> None:
        self.rolled_back.append(arm.name)

    def ship(self, workdir: Path, message: str) -> ShipResult:
        return ShipResult(revision=f"fake:{workdir.name}", shipped=True)

    def ground_truth(self, workdir: Path) -> GroundTruth | None:
        return None

    def user_ids(self) -> np.ndarray:
        return np.arange(N_USERS)

    def collect(
        self,
        control: ArmHandle,
        treatment: ArmHandle,
        assignment: np.ndarray,
        days: int,
        seed: int,
        earlier: Sequence[StageTraffic] = (),
    ) -> OnlineReadout:
        self.earlier_days.append(sum(stage.days for stage in earlier))
        if self.fail is not None:
            raise self.fail
        errors = {arm.name: arm.error or "down" for arm in (control, treatment) if not arm.ok}
        if errors:
            empty: dict[str, dict[str, np.ndarray]] = {control.name: {}, treatment.name: {}}
            return OnlineReadout(
                arms=[control.name, treatment.name],
                users={},
                metrics=empty,
                pre=empty,
                days=days,
                errors=errors,
            )
        window, pre = _population(seed, days), _population(seed + 1, 3)
        users, metrics, pres = {}, {}, {}
        for index, arm in enumerate((control, treatment)):
            members = np.flatnonzero(assignment == index)
            users[arm.name] = members
            metrics[arm.name] = {k: v[members].copy() for k, v in window.items()}
            pres[arm.name] = {k: v[members].copy() for k, v in pre.items()}
            if index == 1:
                for name, factor in self.lift.items():
                    key = name if name in metrics[arm.name] else f"{name}.num"
                    metrics[arm.name][key] *= factor
        readout = OnlineReadout(
            arms=[control.name, treatment.name], users=users, metrics=metrics, pre=pres, days=days
        )
        if self.corrupt is not None:
            self.corrupt(readout)
        return readout


def _population(seed: int, days: int) -> dict[str, np.ndarray]:
    """Per-user totals of every sandbox metric for all users (a persistent user effect plus
    daily noise, so the pre-period predicts the window and CUPED has something to remove)."""
    persistent = np.random.default_rng(12345).lognormal(0.0, 0.6, N_USERS)
    rng = np.random.default_rng(seed)
    active = rng.binomial(days, np.clip(0.3 * persistent, 0.05, 0.95)).astype(float)
    impressions = 10.0 * active
    clicks = rng.binomial(impressions.astype(int), 0.06).astype(float)
    values = {
        "watch_time": (clicks + days * persistent) * 30.0 * rng.lognormal(0.0, 0.3, N_USERS),
        "clicks": clicks,
        "active_days": active,
        "errors": np.zeros(N_USERS),
        "impressions": impressions,
        "distinct_categories": active * rng.uniform(3.0, 6.0, N_USERS),
        "latency_ms": active * rng.normal(35.0, 1.0, N_USERS),
        "tail_impressions": rng.binomial(impressions.astype(int), 0.3).astype(float),
    }
    out: dict[str, np.ndarray] = {}
    for name, (numerator, denominator) in METRIC_DEFINITIONS.items():
        if denominator is None:
            out[name] = values[numerator]
        else:
            out[f"{name}.num"] = values[numerator]
            out[f"{name}.den"] = values[denominator]
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The settings' own stages (5% / 20% / 50% per arm): the fake target is no world, and
    `tiny` declares no rollout shares of its own (the shipped `default` does)."""
    return load_settings(workspace=tmp_path, world="tiny", seed=1)


POLICY = EvaluationPolicy()
NO_EXCHANGE = EvaluationPolicy(exchange=ExchangeSpec(enabled=False))


def _rollout(
    target: Target,
    settings: Settings,
    policy: EvaluationPolicy = POLICY,
    experiment_id: str = "exp-1",
    treatment_ok: bool = True,
) -> tuple[Rollout, Verdict]:
    """What the graph does in autonomous mode: the stages, then the verdict."""
    control = target.launch("control", Path("."))
    treatment = target.launch("treatment", Path("."))
    treatment.ok = treatment_ok
    rollout = run_rollout(target, control, treatment, experiment_id, settings, policy=policy)
    return rollout, decide(rollout, settings.north_star, settings.alpha, policy=policy)


def test_fake_target_satisfies_the_contract() -> None:
    assert isinstance(FakeTarget(), Target)


def test_clear_win_is_kept_and_aa_is_not(settings: Settings) -> None:
    rollout, verdict = _rollout(FakeTarget(lift={"watch_time": 1.3}), settings)
    assert verdict.decision == Decision.KEEP, verdict.caveats
    assert verdict.north_star is not None and verdict.north_star.method == "cuped+welch"
    assert verdict.north_star.variance_reduction > 0.1
    assert all(not g.breached for g in verdict.guardrails)
    _, aa = _rollout(FakeTarget(), settings)
    assert aa.decision != Decision.KEEP


def _drop(metric: str, arms: tuple[str, ...] = ("control", "treatment")) -> Corruption:
    def corrupt(readout: OnlineReadout) -> None:
        for arm in arms:
            for key in [k for k in readout.metrics[arm] if k.split(".")[0] == metric]:
                del readout.metrics[arm][key]

    return corrupt


def _nan(metric: str) -> Corruption:
    def corrupt(readout: OnlineReadout) -> None:
        readout.metrics["treatment"][metric][::7] = np.nan

    return corrupt


def _constant(metric: str) -> Corruption:
    def corrupt(readout: OnlineReadout) -> None:
        for arm in readout.arms:
            readout.metrics[arm][metric] = np.full(len(readout.users[arm]), 5.0)

    return corrupt


def _short(metric: str) -> Corruption:
    def corrupt(readout: OnlineReadout) -> None:
        readout.metrics["treatment"][metric] = readout.metrics["treatment"][metric][:-1]

    return corrupt


def _empty_treatment(readout: OnlineReadout) -> None:
    readout.users["treatment"] = np.array([], dtype=np.int64)
    readout.metrics["treatment"] = {k: np.array([]) for k in readout.metrics["treatment"]}
    readout.pre["treatment"] = {k: np.array([]) for k in readout.pre["treatment"]}


def _lose_treatment_users(readout: OnlineReadout) -> None:
    keep = slice(0, int(0.6 * len(readout.users["treatment"])))
    readout.users["treatment"] = readout.users["treatment"][keep]
    for table in (readout.metrics, readout.pre):
        table["treatment"] = {k: v[keep] for k, v in table["treatment"].items()}


def _one_arm(readout: OnlineReadout) -> None:
    readout.arms = ["control"]


BAD_INPUTS = {
    "missing north-star": (_drop("watch_time"), reasons.NORTH_STAR_UNMEASURABLE, "missing"),
    "missing severe guardrail": (
        _drop("active_days", ("treatment",)),
        reasons.GUARDRAIL_UNMEASURABLE,
        "active_days",
    ),
    "NaN values": (_nan("watch_time"), reasons.NORTH_STAR_UNMEASURABLE, "NaN"),
    "zero variance": (_constant("watch_time"), reasons.NORTH_STAR_UNMEASURABLE, "zero variance"),
    "length mismatch": (_short("watch_time"), reasons.NORTH_STAR_UNMEASURABLE, "values for"),
    "empty arm": (_empty_treatment, reasons.TRAFFIC_MISMATCH, "no users"),
    "lost users (SRM)": (_lose_treatment_users, reasons.TRAFFIC_MISMATCH, "sample ratio"),
    "one arm": (_one_arm, reasons.INVALID_READOUT, "two distinct arms"),
}
EXPECTED_CAUSE = {
    reasons.NORTH_STAR_UNMEASURABLE: RootCause.IMPLEMENTATION_DEFECT,
    reasons.GUARDRAIL_UNMEASURABLE: RootCause.IMPLEMENTATION_DEFECT,
    reasons.TRAFFIC_MISMATCH: RootCause.TRAFFIC_MISMATCH,
    reasons.INVALID_READOUT: RootCause.IMPLEMENTATION_DEFECT,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_readout_halts_with_a_clear_reason_and_never_keeps(
    case: str, settings: Settings
) -> None:
    corrupt, prefix, words = BAD_INPUTS[case]
    # A treatment that truly wins big: only the bad input may stop it from being kept.
    target = FakeTarget(lift={"watch_time": 1.5}, corrupt=corrupt)
    rollout, verdict = _rollout(target, settings)
    assert rollout.halted_at == "canary"
    assert rollout.halt_reason.startswith(prefix)
    assert words in rollout.halt_reason
    assert verdict.decision == Decision.DISCARD
    assert verdict.root_cause == EXPECTED_CAUSE[prefix]
    assert any(words in caveat for caveat in verdict.caveats)


def test_crashed_arm_is_recorded(settings: Settings) -> None:
    target = FakeTarget(lift={"watch_time": 1.5})
    rollout, verdict = _rollout(target, settings, treatment_ok=False)
    assert rollout.halt_reason.startswith(reasons.CRASHED)
    assert rollout.rolled_back and target.rolled_back == ["treatment"]
    assert verdict.decision == Decision.DISCARD
    assert verdict.root_cause == RootCause.CRASHED_ARM
    assert status_of(verdict) == ExperimentStatus.DISCARDED


def test_target_that_raises_is_recorded_not_raised(settings: Settings) -> None:
    target = FakeTarget(fail=RuntimeError("platform unreachable"))
    rollout, verdict = _rollout(target, settings)
    assert rollout.halt_reason.startswith(reasons.CRASHED)
    assert "RuntimeError: platform unreachable" in rollout.halt_reason
    assert verdict.root_cause == RootCause.CRASHED_ARM


def test_unmeasurable_observe_guardrail_is_only_reported(settings: Settings) -> None:
    target = FakeTarget(lift={"watch_time": 1.3}, corrupt=_drop("diversity"))
    rollout, verdict = _rollout(target, settings)
    assert rollout.halted_at is None
    diversity = next(g for g in verdict.guardrails if g.metric == "diversity")
    assert not diversity.breached and diversity.detail.startswith("not measurable")
    assert verdict.decision == Decision.KEEP


def test_errors_rising_from_zero_vetoes(settings: Settings) -> None:
    def add_errors(readout: OnlineReadout) -> None:
        readout.metrics["treatment"]["errors"][::3] = 1.0

    rollout, verdict = _rollout(FakeTarget(lift={"watch_time": 1.3}, corrupt=add_errors), settings)
    assert rollout.halt_reason.startswith(reasons.GUARDRAIL_BREACHED)
    assert "errors" in rollout.halt_reason
    assert verdict.root_cause == RootCause.GUARDRAIL_HARM
    assert status_of(verdict) == ExperimentStatus.VETOED


def test_severe_breach_vetoes_even_with_a_great_exchange_score(settings: Settings) -> None:
    target = FakeTarget(lift={"watch_time": 1.6, "active_days": 0.9})
    rollout, verdict = _rollout(target, settings)
    exchange = next(e for e in rollout.stages[-1].effects if e.metric == "exchange")
    assert exchange.ci_low > 0  # the net score is clearly positive ...
    assert rollout.halt_reason.startswith(reasons.GUARDRAIL_BREACHED)  # ... and still vetoed
    assert "severe active_days" in rollout.halt_reason
    assert verdict.decision == Decision.DISCARD


def test_exchange_trades_a_small_moderate_loss(settings: Settings) -> None:
    target = FakeTarget(lift={"watch_time": 1.6, "tail_share": 0.88})
    rollout, verdict = _rollout(target, settings)
    tail = next(g for g in rollout.stages[0].guardrails if g.metric == "tail_share")
    assert not tail.breached and "traded" in tail.detail
    assert verdict.decision == Decision.KEEP
    assert any("tail_share breach accepted" in c for c in verdict.caveats)
    # Without the exchange score the same moderate breach vetoes in autonomous mode.
    rollout, verdict = _rollout(target, settings, policy=NO_EXCHANGE)
    assert rollout.halt_reason.startswith(reasons.GUARDRAIL_BREACHED)
    assert "moderate tail_share" in rollout.halt_reason
    assert verdict.decision == Decision.DISCARD


def test_exchange_does_not_trade_a_large_loss(settings: Settings) -> None:
    target = FakeTarget(lift={"watch_time": 1.5, "tail_share": 0.6})
    rollout, _ = _rollout(target, settings)
    assert "moderate tail_share" in rollout.halt_reason


def test_moderate_breach_waits_for_review_when_not_autonomous(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path, seed=1, autonomous=False)
    target = FakeTarget(lift={"watch_time": 1.3, "tail_share": 0.8})
    control, treatment = target.launch("control", tmp_path), target.launch("treatment", tmp_path)
    stage = settings.stages[-1]
    result = run_stage(
        target, control, treatment, stage, "exp-r", settings, True, policy=NO_EXCHANGE
    )
    assert result.decision == "complete"
    assert result.reason.startswith(reasons.REVIEW_PENDING)
    # Unreviewed, it can never be kept.
    unreviewed = decide(Rollout(experiment_id="exp-r", stages=[result]), "watch_time", 0.05)
    assert unreviewed.decision == Decision.DISCARD
    assert unreviewed.root_cause == RootCause.GUARDRAIL_HARM
    request = review_request(result, settings, "exp-r")
    assert request is not None
    assert [g.metric for g in request.guardrails] == ["tail_share"]
    assert "tail_share" in request.question and "exp-r" in request.question
    request.model_dump_json()  # the interrupt payload must serialise
    approved = apply_review(result, {"approve": True, "reviewer": "ana", "note": "niche ok"})
    kept = decide(Rollout(experiment_id="exp-r", stages=[approved]), "watch_time", 0.05)
    assert kept.decision == Decision.KEEP
    assert any("approved in review by ana: niche ok" in c for c in kept.caveats)
    vetoed = apply_review(result, "veto")
    assert vetoed.decision == "halt" and vetoed.reason.startswith(reasons.GUARDRAIL_BREACHED)
    assert result.decision == "complete"  # the original is not modified
    assert review_request(result, load_settings(workspace=tmp_path), "exp-r") is None


def test_assignment_is_nested_across_stages(settings: Settings) -> None:
    users = np.arange(N_USERS)
    arms = [stage_assignment(users, "exp-n", s.treatment_share) for s in settings.stages]
    for small, large in zip(arms, arms[1:], strict=False):
        for arm in (0, 1):
            assert np.all(large[small == arm] == arm)  # nobody switches arm when traffic grows
    full = arms[-1]
    assert abs((full == 0).mean() - 0.5) < 0.03 and abs((full == 1).mean() - 0.5) < 0.03


def test_halted_stage_result_is_a_valid_model(settings: Settings) -> None:
    target = FakeTarget(fail=TimeoutError("took too long"))
    control, treatment = target.launch("c", Path(".")), target.launch("t", Path("."))
    result = run_stage(target, control, treatment, settings.stages[0], "e", settings, False)
    assert isinstance(result, StageResult)
    assert StageResult.model_validate_json(result.model_dump_json()) == result


def test_later_stages_replay_the_earlier_ones_in_time(settings: Settings) -> None:
    """Stages follow each other in simulated time: each collect is told what came before."""
    target = FakeTarget()
    rollout, _ = _rollout(target, settings, experiment_id="exp-time")
    ran = [stage.days for stage in settings.stages][: len(rollout.stages)]
    assert len(ran) >= 2
    assert target.earlier_days == [sum(ran[:i]) for i in range(len(ran))]
