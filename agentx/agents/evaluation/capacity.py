"""Traffic capacity of concurrent experiments: how many fit side by side without any of
them running underpowered.

Experiments in flight together split the users (one traffic layer, disjoint bucket ranges),
so each has fewer users than it would alone. Traffic, not compute, is what they share: an
experiment is only worth running beside others if its final stage keeps enough power for
the effect it expects. The noise comes from the run's own measurements (the per-user
standard deviation implied by the last completed final stage's interval, after CUPED), so
the rule needs little knowledge of the target. Until one final stage has been measured, the
between-user noise the target's data report gives for the north star over its logged window
stands in (an overstatement: no CUPED, a window no longer than a final stage); a target
that reports none keeps the first wave to a single experiment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from agentx.agents.evaluation.extend import effect_sd
from agentx.models import ExperimentRecord, TrafficSlot, stable_id
from agentx.settings import RolloutStage
from agentx.stats import StatsError
from agentx.stats.power import power_two_sample
from agentx.target.models import MetricNoise

N_BUCKETS = 1000


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
        share = record.traffic.share if record.traffic is not None else 1.0
        users = (effect.n_control + effect.n_treatment) / 2.0 / share
        return NoiseEstimate(sd_relative=sd, users_per_arm=users, source=record.id)
    return None


def final_stage_power(
    estimate: NoiseEstimate, effect: float, traffic_share: float, alpha: float
) -> float:
    """Power of the final stage to detect a relative ``effect`` with ``traffic_share`` of
    the users (of those the estimate's experiment had with all of the traffic)."""
    n = int(estimate.users_per_arm * traffic_share)
    if n < 2 or effect == 0.0:
        return 0.0
    try:
        return power_two_sample(effect, estimate.sd_relative, n, alpha)
    except StatsError:
        return 0.0


def fits(
    effects: Sequence[float],
    estimate: NoiseEstimate | None,
    *,
    min_power: float,
    alpha: float,
    power_kept: float,
) -> bool:
    """Whether experiments expecting ``effects`` can run side by side, each on an equal
    slice of the traffic. One alone always fits; more need a noise estimate, and then each
    must keep ``min_power`` where the whole traffic would have reached it, else
    ``power_kept`` of the power it would have alone.

    The second rule is what keeps small effects from being split into coin flips: on the
    ``default`` world an expected +0.5% has about 20% power alone and 9% on a quarter of the
    users. An experiment with next to no power even alone (power near alpha) loses little by
    sharing and does not hold the others back.
    """
    if len(effects) <= 1:
        return True
    if estimate is None:
        return False
    share = 1.0 / len(effects)
    for effect in effects:
        alone = final_stage_power(estimate, effect, 1.0, alpha)
        needed = min_power if alone >= min_power else power_kept * alone
        if final_stage_power(estimate, effect, share, alpha) < needed:
            return False
    return True


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
