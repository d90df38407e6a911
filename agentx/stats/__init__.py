"""Statistics for AgentX experiments: assignment, guards, effect estimates, sequential tests.

Plain functions over numpy arrays; results are frozen dataclasses. Every function raises
:class:`StatsError` (a ``ValueError``) with a readable message on input it cannot analyse.
See ``docs/statistics.md`` for the methods and the choices behind them.
"""

from agentx.stats.assignment import CONTROL, NOT_ENROLLED, TREATMENT, assign_arms, bucket_of
from agentx.stats.compare import compare_metric
from agentx.stats.corrections import CorrectionMethod, adjust_p_values
from agentx.stats.cuped import CupedResult, cuped_adjust
from agentx.stats.effects import EffectEstimate, ratio_effect, welch_effect
from agentx.stats.errors import StatsError
from agentx.stats.power import power_two_sample, required_n_per_arm
from agentx.stats.sequential import (
    DEFAULT_MIN_N,
    SequentialResult,
    default_tau2,
    msprt_p_values,
    msprt_test,
)
from agentx.stats.srm import SRMResult, srm_check

__all__ = [
    "CONTROL",
    "DEFAULT_MIN_N",
    "NOT_ENROLLED",
    "TREATMENT",
    "CorrectionMethod",
    "CupedResult",
    "EffectEstimate",
    "SRMResult",
    "SequentialResult",
    "StatsError",
    "adjust_p_values",
    "assign_arms",
    "bucket_of",
    "compare_metric",
    "cuped_adjust",
    "default_tau2",
    "msprt_p_values",
    "msprt_test",
    "power_two_sample",
    "ratio_effect",
    "required_n_per_arm",
    "srm_check",
    "welch_effect",
]
