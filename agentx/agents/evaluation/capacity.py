"""Traffic capacity of concurrent experiments: how many fit side by side without any of
them running underpowered.

Experiments in flight together split the users (one traffic layer, disjoint bucket ranges),
so each has fewer users than it would alone. Traffic, not compute, is what they share: a
wave is only worth running if its experiments keep most of the detection power they would
have alone, for the effects this target's changes actually have.

Those effects are judged from the run's own measurements, not only from the proposals'
expected sizes (research beliefs, often far from the truth): every experiment's deepest
north-star estimate, shrunk toward zero by how noisy it was (empirical Bayes, with the
spread of true effects fitted by maximum likelihood). On a target whose changes mostly move
the north star by less than its noise, halving the traffic loses much of what could be
found, so experiments run one at a time; where the effects stand well clear of the noise,
a slice of the users keeps nearly all of it. Detection is weighted by effect size, as the
lift a run ships is: losing the chance to see a negligible effect costs nothing.

The noise comes from the run's own measurements too (the per-user standard deviation implied
by the last completed final stage's interval, after CUPED). Until one final stage has been
measured, the between-user noise the target's data report gives for the north star over its
logged window stands in (an overstatement: no CUPED, a window no longer than a final stage);
a target that reports none keeps the first wave to a single experiment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy import optimize

from agentx.agents.evaluation.extend import effect_sd, relative_se
from agentx.models import ExperimentRecord, TrafficSlot, stable_id
from agentx.settings import RolloutStage
from agentx.stats.power import normal_power
from agentx.target.models import MetricNoise

N_BUCKETS = 1000
#: Gauss-Hermite nodes per measured effect's posterior (exact for polynomials of degree 31).
QUADRATURE_NODES = 16


class NoiseEstimate(BaseModel):
    """What the run has measured about its north star at the final stage."""

    sd_relative: float = Field(gt=0.0, description="Per-user sd over the control mean.")
    users_per_arm: float = Field(gt=0.0, description="Users per arm with all the traffic.")
    source: str = Field(description="The experiment it was measured in, or 'logs'.")


def noise_estimate(
    records: Sequence[ExperimentRecord],
    north_star: str,
    final_stage: RolloutStage,
    alpha: float,
    logged: MetricNoise | None = None,
) -> NoiseEstimate | None:
    """The latest completed final stage's noise, scaled to the whole traffic; before any,
    the ``logged`` noise of the north star (its users split as the final stage splits them);
    None when neither exists."""
    measured = _measured(records, north_star, final_stage.name, alpha)
    if measured is not None or logged is None:
        return measured
    users = logged.users * final_stage.treatment_share  # users per arm (control is as big)
    if users <= 0.0:
        return None
    return NoiseEstimate(sd_relative=logged.sd_relative, users_per_arm=users, source="logs")


def _measured(
    records: Sequence[ExperimentRecord], north_star: str, final_stage: str, alpha: float
) -> NoiseEstimate | None:
    for record in reversed(records):
        rollout = record.rollout
        if rollout is None or not rollout.stages or rollout.stages[-1].stage != final_stage:
            continue
        effect = next((e for e in rollout.stages[-1].effects if e.metric == north_star), None)
        if effect is None or effect.n_control < 2 or effect.n_treatment < 2:
            continue
        if not effect.control_mean or not math.isfinite(effect.ci_high - effect.ci_low):
            continue
        sd = effect_sd(effect, alpha) / abs(effect.control_mean)
        if not math.isfinite(sd) or sd <= 0.0:
            continue
        stage = rollout.stages[-1]
        kept = record.traffic.kept(stage.treatment_share) if record.traffic else 1.0
        users = (effect.n_control + effect.n_treatment) / 2.0 / kept
        return NoiseEstimate(sd_relative=sd, users_per_arm=users, source=record.id)
    return None


class MeasuredEffect(BaseModel):
    """One experiment's north-star estimate at the deepest stage it reached."""

    relative: float = Field(description="Measured relative effect.")
    se: float = Field(gt=0.0, description="Its standard error (relative).")


def measured_effects(
    records: Sequence[ExperimentRecord], north_star: str, alpha: float
) -> list[MeasuredEffect]:
    """Every experiment's north-star estimate at its deepest stage (a canary-halted one too:
    leaving out what a guard stopped early would hide the large effects). ``alpha`` is the
    level of the recorded intervals (the run's)."""
    found: list[MeasuredEffect] = []
    for record in records:
        if record.rollout is None or not record.rollout.stages:
            continue
        stage = record.rollout.stages[-1]
        effect = next((e for e in stage.effects if e.metric == north_star), None)
        if effect is None or not math.isfinite(effect.relative):
            continue
        se = relative_se(effect, alpha)
        if math.isfinite(se) and se > 0.0:
            found.append(MeasuredEffect(relative=effect.relative, se=se))
    return found


def effect_spread(measured: Sequence[MeasuredEffect]) -> float:
    """The standard deviation of true effects around no effect, by maximum likelihood: each
    estimate is its true effect plus its own noise, true effects ~ N(0, spread^2)."""
    if not measured:
        return 0.0
    values = [(m.relative**2, m.se**2) for m in measured]

    def negative_log_likelihood(spread2: float) -> float:
        return sum(math.log(spread2 + v) + y2 / (spread2 + v) for y2, v in values)

    upper = max(y2 for y2, _ in values) + max(v for _, v in values)
    best = optimize.minimize_scalar(negative_log_likelihood, bounds=(0.0, upper), method="bounded")
    spread2 = float(best.x)
    if negative_log_likelihood(0.0) <= negative_log_likelihood(spread2):
        spread2 = 0.0  # the bounded search may stop short of the boundary
    return math.sqrt(spread2)


class PlausibleEffects(BaseModel):
    """A discrete distribution of the effects a wave's experiments may have."""

    values: list[float] = Field(description="Relative effects.")
    weights: list[float] = Field(description="Their weights (not normalised).")


def plausible_effects(
    measured: Sequence[MeasuredEffect], expected: Sequence[float]
) -> PlausibleEffects:
    """The effects a wave should be judged on: each measured effect's posterior under the
    fitted spread (its estimate shrunk toward zero by its noise, with the uncertainty left;
    a posterior mean alone would understate how far true effects spread, the more so the
    noisier the measurement), by Gauss-Hermite quadrature; and the wave's own expected
    sizes, each a point (what the proposals believe, the only evidence before any
    measurement)."""
    spread2 = effect_spread(measured) ** 2
    nodes, node_weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    node_weights = node_weights / node_weights.sum()
    values: list[float] = []
    weights: list[float] = []
    for m in measured:
        shrink = spread2 / (spread2 + m.se**2)
        mean, sd = m.relative * shrink, math.sqrt(shrink) * m.se
        values.extend((mean + sd * nodes).tolist())
        weights.extend(node_weights.tolist())
    values.extend(expected)
    weights.extend([1.0] * len(expected))
    return PlausibleEffects(values=values, weights=weights)


def detection_kept(
    effects: PlausibleEffects, estimate: NoiseEstimate, traffic_share: float, alpha: float
) -> float:
    """Share of its detection that a final stage keeps on ``traffic_share`` of the users:
    detection is power beyond the ``alpha`` a test has by chance alone, weighted by effect
    size, averaged over ``effects`` (sum w |d| (power(d, share) - alpha), over the same with
    all of the users); 0.0 when there is nothing to detect even with all of the users.
    Power is the two-sided z test's: at a final stage's hundreds of users per arm and more,
    the t test's differs in the fourth digit."""
    values = np.abs(np.asarray(effects.values, dtype=float))
    weights = np.asarray(effects.weights, dtype=float)

    def detection(share: float) -> float:
        n = estimate.users_per_arm * share
        if n < 2.0 or values.size == 0:
            return 0.0
        power = normal_power(values / (estimate.sd_relative * math.sqrt(2.0 / n)), alpha)
        return float(np.sum(weights * values * np.maximum(power - alpha, 0.0)))

    whole = detection(1.0)
    return detection(traffic_share) / whole if whole > 0.0 else 0.0


def final_stage_kept(size: int, final_share: float, n_buckets: int = N_BUCKETS) -> float:
    """Fraction of its users alone that a final stage with ``final_share`` of the users per
    arm keeps in a wave of ``size`` (its slice of the layer; 1.0 when it fits whole)."""
    slot = layer_slots("", size, n_buckets)[0] if size > 1 else None
    return 1.0 if slot is None else slot.kept(final_share)


def fits(
    size: int,
    effects: PlausibleEffects,
    estimate: NoiseEstimate | None,
    *,
    final_share: float,
    alpha: float,
    power_kept: float,
) -> bool:
    """Whether ``size`` experiments can run side by side, each on an equal slice of the
    traffic, keeping ``power_kept`` of the size-weighted detection they would have alone for
    the ``effects`` this target plausibly has. One alone always fits, and so does a wave
    whose slices hold a final stage of ``final_share`` of the users per arm whole (stages
    that leave traffic spare lose nothing by sharing it); otherwise a noise estimate and
    some effect that is not zero are needed.

    Why not the power for each proposal's expected effect, as a ratio: an expected +0.5%
    may have 6% power alone and 5.5% on a quarter of the users, "little lost" (it is mostly
    the test's chance rejections), while the +15% change the beliefs undersold goes from a
    sure find to a coin flip.
    """
    kept = final_stage_kept(size, final_share)
    if kept >= 1.0:
        return True
    if estimate is None:
        return False
    return detection_kept(effects, estimate, kept, alpha) >= power_kept


def layer_slots(salt: str, n: int, n_buckets: int = N_BUCKETS) -> list[TrafficSlot | None]:
    """Equal, disjoint bucket ranges for a wave of ``n`` experiments, hashed with one salt
    (None for an experiment alone: it keeps all the traffic and its own salt)."""
    if n <= 1:
        return [None] * n
    width = n_buckets // n
    return [
        TrafficSlot(salt=salt, offset=i * width, width=width, n_buckets=n_buckets) for i in range(n)
    ]


def wave_salt(run_id: str, first_iteration: int) -> str:
    """The layer salt of the wave that starts at ``first_iteration``: new for every wave,
    so users do not stay in the same slice from one wave to the next."""
    return stable_id(run_id, "layer", first_iteration)
