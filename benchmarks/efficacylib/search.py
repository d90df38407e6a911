"""The strategies users would run instead of AgentX, over the same catalog and evaluation.

* ``random``: sequential random search, as the loop iterates. Each trial draws, uniformly
  with the seed's generator, an option (technique at one parameter setting) not tried
  before that applies to the running baseline, applies it as the loop's developer would
  (the recipe, or a retune of a technique a KEEP already merged), and runs a real staged A/B
  against the running baseline through the project's evaluation; a KEEP is merged into the
  running baseline, as the loop merges it.
* ``tpe`` / ``tpe_3x``: Optuna's TPE over whole configurations. The encoding is one
  categorical per conflict group of the catalog (``off`` or one technique at one parameter
  setting; a group holds techniques that cannot combine, most groups hold one technique),
  so a trial is a full configuration applied to the original baseline. Each trial is a real
  staged A/B against the original baseline; TPE maximises the measured north-star effect,
  with trials the rollout halted (guardrail breach, crash) given a value below every
  measurable one (TPE ranks values, so the penalty's size does not matter). What ships is
  the best trial that passed its guardrails with a positive measured effect; before any
  such trial, the original baseline.

Neither runs the loop's verification (tests, dry run, offline metrics): they are the A/B
searches a team would run directly. A change that crashes is halted by the rollout.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.models import stable_id
from agentx.research.catalog import Technique
from agentx.sandbox.target import SandboxTarget
from agentx.settings import Settings
from agentx.workspace.edits import EditError
from efficacylib.abtest import staged_ab
from efficacylib.space import (
    OFF,
    Option,
    all_options,
    applicable,
    conflict_groups,
    group_choices,
    option_edits,
    recipe,
)
from efficacylib.states import StateError, StateStore
from efficacylib.trace import RunTrace, Trial

HALTED_VALUE = -1.0  # below any measurable relative effect; TPE only ranks values
MAX_ASKS_PER_TRIAL = 10  # configurations whose recipes do not combine are re-drawn


def random_search(
    target: SandboxTarget,
    catalog: dict[str, Technique],
    original: Path,
    states: StateStore,
    settings: Settings,
    policy: EvaluationPolicy,
    budget: int,
    seed: int,
) -> RunTrace:
    """Sequential random search with KEEPs merged into the running baseline."""
    rng = np.random.default_rng([seed, 1009])
    options = all_options(catalog)
    trace = RunTrace("random", target.world_params.name, seed, budget, str(original))
    current, tried = original, set()
    started = time.perf_counter()
    for index in range(1, budget + 1):
        candidates = [o for o in options if o.key not in tried and applicable(catalog, o, current)]
        if not candidates:
            trace.notes.append(f"no untried applicable option left after {index - 1} trials")
            break
        option: Option = candidates[int(rng.integers(len(candidates)))]
        tried.add(option.key)
        try:
            treatment = states.with_edits(current, option_edits(catalog, option, current))
        except (EditError, StateError) as error:  # applicable() said yes: recorded, not hidden
            trace.notes.append(str(error))
            continue
        experiment = stable_id("efficacy-random", seed, index)
        ab = staged_ab(target, current, treatment, experiment, settings, policy)
        trial = Trial(
            index=index,
            label=option.label,
            control=str(current),
            treatment=str(treatment),
            accepted=ab.keep,
            launched=ab.keep,
            decision=ab.decision,
            measured=ab.measured,
            halted=ab.halted,
            option_key=option.key,
        )
        if ab.keep:
            current = treatment
        trace.trials.append(trial)
        trace.shipped.append(str(current))
    trace.wall_s = time.perf_counter() - started
    return trace


def tpe_search(
    target: SandboxTarget,
    catalog: dict[str, Technique],
    original: Path,
    states: StateStore,
    settings: Settings,
    policy: EvaluationPolicy,
    budget: int,
    seed: int,
    name: str = "tpe",
) -> RunTrace:
    """Optuna TPE over configurations; ships the best trial that passed its guardrails."""
    import optuna  # a benchmark extra: ``pip install -e '.[bench]'``

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    groups = [group_choices(catalog, group) for group in conflict_groups(catalog)]
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=min(10, max(2, budget // 4)), multivariate=True
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trace = RunTrace(name, target.world_params.name, seed, budget, str(original))
    best: tuple[float, int, str] | None = None  # measured, trial index, state
    started = time.perf_counter()
    asks = 0
    while len(trace.trials) < budget and asks < MAX_ASKS_PER_TRIAL * budget:
        asks += 1
        trial = study.ask()
        chosen: list[Option] = []
        for number, choices in enumerate(groups):
            label = trial.suggest_categorical(f"group{number}", list(choices))
            if label != OFF:
                chosen.append(choices[label])
        edits = [edit for option in chosen for edit in recipe(catalog, option)]
        try:
            treatment = states.with_edits(original, edits)
        except StateError:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        index = len(trace.trials) + 1
        experiment = stable_id(f"efficacy-{name}", seed, index)
        ab = staged_ab(target, original, treatment, experiment, settings, policy)
        eligible = ab.passed_guardrails and ab.measured is not None and ab.measured > 0
        value = ab.measured if ab.passed_guardrails and ab.measured is not None else HALTED_VALUE
        study.tell(trial, value)
        trace.trials.append(
            Trial(
                index=index,
                label=" + ".join(o.label for o in chosen) or "baseline",
                control=str(original),
                treatment=str(treatment),
                accepted=eligible,
                decision=ab.decision,
                measured=ab.measured,
                halted=ab.halted,
            )
        )
        if eligible and (best is None or ab.measured > best[0]):
            best = (ab.measured, index, str(treatment))
        trace.shipped.append(best[2] if best else str(original))
    if asks >= MAX_ASKS_PER_TRIAL * budget:
        trace.notes.append(f"stopped after {asks} configurations, most not combinable")
    if best is not None:
        trace.trials[best[1] - 1].launched = True  # the one launch: at the end
    trace.wall_s = time.perf_counter() - started
    return trace
