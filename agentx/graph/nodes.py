"""The loop's nodes. Each takes the state and returns an update; side effects are
idempotent (worktrees are recreated, cards are upserted by id, merges are skipped when
already done) so a run resumed from its last checkpoint loses and duplicates nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.graph.state import CompiledStateGraph

from agentx.agents.brainstorm.agent import propose_batch
from agentx.agents.brainstorm.evidence import EvidenceBundle
from agentx.agents.brainstorm.intake import parse_goal
from agentx.agents.brainstorm.llm import IdeaDraft, goal_from_draft, llm_goal, llm_ideas
from agentx.agents.brainstorm.policy import combo_key
from agentx.agents.evaluation.capacity import (
    final_stage_kept,
    fits,
    measured_effects,
    noise_estimate,
    plausible_effects,
)
from agentx.agents.evaluation.cumulative import breaches, check_against_origin, origin_commit
from agentx.agents.evaluation.extend import plan_follow_up
from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.agents.evaluation.review import apply_launch_answer, apply_review, review_request
from agentx.agents.evaluation.rollout import run_stage
from agentx.agents.evaluation.verdict import decide, make_card, status_of
from agentx.evolution.graph import build_evolution_graph
from agentx.evolution.store import RunTrajectory
from agentx.graph import gates
from agentx.graph.context import CONTEXT_KEY, ResourcePool, RunContext, current_resources
from agentx.graph.resources import Resources
from agentx.graph.state import (
    FUNNEL_KEYS,
    SIDE_COUNTS,
    BrainstormState,
    DevelopState,
    EvaluateState,
    ExperimentOutcome,
    ExperimentState,
    Finished,
    LoopState,
    Queued,
    QueueReason,
    RepairStep,
    Scheduled,
    add_counts,
    fresh_experiment,
    parent_if,
    union,
)
from agentx.graph.tracelog import emit
from agentx.harness import load_harness
from agentx.models import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    KnowledgeCard,
    Proposal,
    Rollout,
    RootCause,
    TraceEvent,
    TrafficSlot,
    stable_id,
)
from agentx.research.catalog import Technique
from agentx.settings import RolloutStage, Settings
from agentx.target.contract import PrefetchesGroundTruth, TargetError
from agentx.workspace import git

INTAKE = "intake"
BRAINSTORM = "brainstorm"
GATE = "admission_gate"
DEVELOP = "develop"
VERIFY = "verify"
REPAIR = "repair"
ABANDON = "abandon"
LAUNCH = "launch"
STAGE = "rollout_stage"
LAUNCH_GATE = "launch_gate"
VETO = "veto"
REVIEW = "guardrail_review"
VERDICT = "verdict"
CONCLUDE = "conclude"
SCHEDULE = "schedule"
LEARN = "learn"
EVOLVE = "evolve_harness"
# the subgraphs, as nodes of the graph above them
BRAINSTORM_AGENT = "brainstorm_agent"
DEVELOP_AGENT = "developing_agent"
EVALUATE_AGENT = "evaluation_agent"
EXPERIMENT = "experiment"
SUBGRAPH_NODES = frozenset({BRAINSTORM_AGENT, DEVELOP_AGENT, EVALUATE_AGENT, EXPERIMENT})


def _event(node: str, message: str, state: Any = None, **data: Any) -> TraceEvent:
    current = (state or {}).get("current")
    return TraceEvent(
        node=node, experiment_id=current.id if current else None, message=message, data=data
    )


def _model_notes(node: str, fallbacks: list[str]) -> list[TraceEvent]:
    """One trace event per model-call fallback (retry, method switch, re-ask, give-up)."""
    return [_event(node, f"model call: {line}") for line in fallbacks]


def run_id_of(state: Any) -> str:
    """The run's id (a subgraph invoked on its own, in Studio, runs under its thread's id)."""
    if state.get("run_id"):
        return str(state["run_id"])
    try:
        return str(get_config().get("configurable", {}).get("thread_id") or "run")
    except RuntimeError:
        return "run"


def _experiment_id(state: Any) -> str:
    return stable_id(run_id_of(state), state.get("iteration", 0))


def stages_of(resources: Resources, state: Any) -> list[RolloutStage]:
    """The current experiment's rollout stages: its follow-up plan, else the run's stages."""
    return state.get("plan") or resources.settings.stages


def _owe(state: Any, reason: QueueReason, parent: str, retests: int = 0) -> Queued:
    """The current change owed again (a retry, a re-test) with the same stages."""
    return Queued(
        proposal=state["current"],
        reason=reason,
        parent=parent,
        stages=state.get("plan"),
        retests=retests,
    )


def _owed(state: Any) -> Queued | None:
    """The queue entry the current experiment was owed as (None: a new idea)."""
    return state.get("owed")


def evaluation_policy_of(resources: Resources) -> EvaluationPolicy:
    """The Evaluation Agent's policy from the run's active harness (it may evolve mid-run)."""
    harness = resources.harness.get("evaluation") or load_harness("evaluation")
    return EvaluationPolicy.from_harness(harness)


def max_in_flight(settings: Settings) -> int:
    """Experiments a wave may hold: K when autonomous; one when a human answers the gates
    (they are asked, and answered, one experiment at a time)."""
    return settings.concurrency.max_in_flight if settings.autonomous else 1


def wave_capacity(
    resources: Resources, state: Any, wave: list[Scheduled], newcomers: int = 0
) -> str | None:
    """Why ``wave`` (plus ``newcomers`` not yet known) cannot run side by side, or None:
    too many, a follow-up sized for the whole traffic among others, no noise measured yet,
    or slices too small to keep ``concurrency.power_kept`` of the detection the experiments
    would have alone, for the effects this target plausibly has (see
    :mod:`agentx.agents.evaluation.capacity`)."""
    settings = resources.settings
    size = len(wave) + newcomers
    if size <= 1:
        return None
    if size > max_in_flight(settings):
        return f"at most {max_in_flight(settings)} experiments in flight"
    if any(w.needs_all_traffic for w in wave):
        return "a follow-up sized for the whole traffic runs alone"
    stages = settings.stages
    final_share = stages[-1].treatment_share
    if final_stage_kept(size, final_share) >= 1.0:
        return None  # every slice holds the final stage whole: sharing costs no users
    policy = evaluation_policy_of(resources)
    records = state.get("experiments") or []
    estimate = noise_estimate(
        records,
        settings.north_star,
        stages[-1],
        settings.alpha,
        logged=resources.data_report().metric_noise.get(settings.north_star),
    )
    if estimate is None:
        return "no final stage measured yet, nor a logged noise, to size traffic from"
    floor = policy.min_interesting_effect
    expected = [max(abs(w.proposal.expected_size), floor) for w in wave]
    effects = plausible_effects(
        measured_effects(records, settings.north_star, settings.alpha), expected
    )
    alpha = policy.final_alpha(settings.alpha, len(stages))
    kept = settings.concurrency.power_kept
    if not fits(size, effects, estimate, final_share=final_share, alpha=alpha, power_kept=kept):
        return (
            f"{size} experiments side by side would keep less than {kept:.0%} of the "
            "detection they would have alone, for the effects this target's changes have"
        )
    return None


def room_for_another(resources: Resources, state: Any) -> bool:
    """Whether one more experiment could join the wave: checked before brainstorming one (a
    model call in LLM mode); the newcomer's own needs are checked once it is known."""
    wave = list(state.get("wave") or [])
    return wave_capacity(resources, state, wave, newcomers=1) is None


def in_flight_keys(state: Any, catalog: dict[str, Technique]) -> dict[str, str]:
    """Every parameter setting of the techniques the wave is testing, as avoid entries: a
    technique's next value is chosen from its last outcome, which is not known while one of
    its values is in flight, so a wave tests one value per technique."""
    keys: dict[str, str] = {}
    for item in state.get("wave") or []:
        technique, why = item.proposal.technique, f"in flight ({item.iteration})"
        keys[combo_key(technique, item.proposal.params)] = why
        settings = catalog[technique].parameter_settings() if technique in catalog else []
        keys.update({combo_key(technique, setting): why for setting in settings})
    return keys


def offline_repair(resources: Resources, state: DevelopState) -> Proposal | None:
    """The offline repair of the current proposal, stepping over parameter sets already
    tested or merged in this world (the run's avoid set)."""
    proposal, avoid = state["current"], state.get("avoid", {})
    return resources.developer.offline_repair(
        proposal,
        state["verifications"][-1],
        tested=lambda params: combo_key(proposal.technique, params) in avoid,
    )


class Nodes:
    """Node functions bound to a run's resources."""

    def __init__(self, resources: Resources | ResourcePool):
        self.pool = ResourcePool.of(resources)
        self._evolution_graphs: dict[tuple[str, int], CompiledStateGraph] = {}

    @property
    def r(self) -> Resources:
        """The running node's resources: those of its run's context (see
        :mod:`agentx.graph.context`); the base ones for a node called by hand."""
        return current_resources() or self.pool.get(None)

    def _log(self, state: Any, *events: TraceEvent) -> None:
        """Write ``events`` to the run's trace log (and the live ``custom`` stream)."""
        emit(self.r.settings.workspace, run_id_of(state), list(events))

    @property
    def evaluation_policy(self) -> EvaluationPolicy:
        """The Evaluation Agent's policy from its active harness (it may evolve mid-run)."""
        return evaluation_policy_of(self.r)

    # ------------------------------------------------------------------ brainstorm
    def intake(self, state: BrainstormState, config: RunnableConfig) -> dict[str, Any]:
        """Normalise the goal against the target's metrics."""
        settings = self.r.settings
        text = state.get("goal_text") or settings.goal
        metrics = [m.name for m in self.r.target.describe().metrics]
        guardrails = [g.metric for g in settings.guardrails if g.tier != "observe"]
        notes: list[TraceEvent] = []
        goal = None
        if self.r.llm is not None:
            levers = sorted({t.lever for t in self.r.catalog.values()})
            result = llm_goal(self.r.llm, text, metrics, levers, settings.llm.model_dump())
            if result.ok and result.value is not None:
                goal = goal_from_draft(text, result.value, metrics)
            notes.extend(_model_notes(INTAKE, result.notes()))
            if goal is None:
                why = result.error or f"unknown objective {result.value and result.value.objective}"
                notes.append(_event(INTAKE, f"model intake unusable ({why}); parsed offline"))
        if goal is None:
            goal = parse_goal(text, metrics, guardrails)
        for metric in guardrails:
            if metric not in goal.guardrails and metric != goal.objective:
                goal.guardrails.append(metric)
        run_id = str(config.get("configurable", {}).get("thread_id", "run"))
        guarded = ", ".join(goal.guardrails)
        objective = _event(
            INTAKE, f"objective {goal.objective} ({goal.direction}); guardrails {guarded}"
        )
        self._log({"run_id": run_id}, *notes, objective)
        return {
            **fresh_experiment(),
            "goal": goal,
            "goal_text": text,
            "run_id": run_id,
            "iteration": 0,
            "iterations": state.get("iterations") or settings.iterations,
            "funnel": dict.fromkeys((*FUNNEL_KEYS, *SIDE_COUNTS), 0),
            "queue": [],
            "follow_ups": 0,
            "infra_streak": 0,
            "stopped": None,
            "origin": origin_commit(self.r.target.repo_path),
            "harness_versions": self._harness_versions(),
            CONTEXT_KEY: RunContext.of(settings),
        }

    def brainstorm(self, state: BrainstormState) -> dict[str, Any]:
        """The next experiment: one the loop owes itself (an EXTEND follow-up, a retry after
        an infrastructure failure), else the best admitted proposal of a ranked batch."""
        fresh = fresh_experiment()
        queue = list(state.get("queue") or [])
        if queue:
            owed = queue.pop(0)
            follow_up = owed.reason == QueueReason.FOLLOW_UP
            message = (
                f"{owed.reason.value} of {owed.parent}: {owed.proposal.technique} "
                f"{owed.proposal.params}"
            )
            self._log(state, _event(BRAINSTORM, message, data={"queue": owed.reason.value}))
            return {
                **fresh,
                "queue": queue,
                "current": owed.proposal,
                "exhausted": False,
                "owed": owed,
                "funnel": add_counts(state.get("funnel"), {"follow_ups": int(follow_up)}),
            }
        r, goal = self.r, state["goal"]
        cards = r.store.list(where={"world": r.world_name})
        similar = [hit.card for hit in r.store.search(goal.text, k=5)] if r.store.count() else []
        bundle = EvidenceBundle(
            system=r.target.describe(),
            data=r.data_report(),
            catalog=r.catalog,
            cards=cards,
            similar=similar,
        )
        rng = np.random.default_rng([r.settings.seed, state.get("iteration", 0), 17])
        harness = r.harness["brainstorm"]
        drafts, notes = None, []
        if r.llm is not None:
            batch_size = int(harness["policy"]["batch_size"])
            llm_settings = r.settings.llm.model_dump()
            result = llm_ideas(
                r.llm, goal, bundle, state.get("avoid", {}), batch_size, llm_settings
            )
            notes.extend(_model_notes(BRAINSTORM, result.notes()))
            if result.ok and result.value is not None:
                drafts = result.value.ideas
            else:
                message = f"model ideas unusable ({result.error}); offline policy used"
                notes.append(_event(BRAINSTORM, message))

        def propose(avoid: dict[str, str] | None, drafts: list[IdeaDraft] | None):
            return propose_batch(
                goal,
                bundle,
                r.target.repo_path,
                r.world_name,
                harness,
                rng,
                extra_avoid=avoid,
                drafts=drafts,
                workspace_id=r.workspace_id,
            )

        # experiments in flight (or waiting for traffic) are not proposed a second time;
        # the run's avoid set does not keep them (an infrastructure failure leaves none)
        in_flight = in_flight_keys(state, r.catalog)
        run_avoid = dict(state.get("avoid") or {})
        batch, avoid = propose({**run_avoid, **in_flight}, drafts)
        if drafts is not None and not any(p.admitted for p in batch):
            notes.append(_event(BRAINSTORM, "no model idea was admissible; offline policy used"))
            batch, avoid = propose(avoid, None)
        avoid = {k: v for k, v in avoid.items() if k not in in_flight or k in run_avoid}
        admitted = [p for p in batch if p.admitted]
        new_ideas = [p.id for p in batch if p.id not in set(state.get("ideas", []))]
        admitted_new = sum(p.admitted for p in batch if p.id in new_ideas)
        update: dict[str, Any] = {
            **fresh,
            "avoid": avoid,
            "ideas": union(state.get("ideas"), [p.id for p in batch]),
            "funnel": add_counts(
                state.get("funnel"),
                {
                    "ideas": len(new_ideas),
                    "admitted": admitted_new,
                    "rejected": len(new_ideas) - admitted_new,
                },
            ),
        }
        if not admitted:
            update.update(current=None, exhausted=True)
            self._log(state, *notes, _event(BRAINSTORM, "no admissible proposal left"))
            return update
        best = admitted[0]
        update.update(current=best, exhausted=False)
        chosen = _event(
            BRAINSTORM,
            f"proposal {best.technique} {best.params} score {best.score:.2f}",
            data={"batch": [p.technique for p in batch]},
        )
        self._log(state, *notes, chosen)
        return update

    def admission_gate(self, state: BrainstormState) -> dict[str, Any]:
        """Optional human gate: approve, revise, defer or reject the chosen proposal.

        Skipped in autonomous mode. Otherwise the run pauses with a ``HumanInterrupt``
        whose evidence is the proposal; answers (``HumanResponse``, see
        :mod:`agentx.graph.gates`): accept = approve, edit = revise the params, ignore =
        defer, response = reject with a reason. A misunderstood answer asks again.
        """
        if self.r.settings.autonomous:
            return {}
        proposal = state["current"]
        evidence = {
            "proposal": proposal.model_dump(mode="json"),
            "choices": ["approve", "revise", "defer", "reject"],
        }
        describe = f"Admit proposal {proposal.technique} {proposal.params}? {proposal.hypothesis}"
        answer = gates.admission_action(gates.ask(gates.ADMISSION, evidence, describe))
        action = str(answer.get("action", "reject")).lower()
        key = combo_key(proposal.technique, proposal.params)
        if action == "approve":
            return self._logged(state, _event(GATE, "approved by reviewer", state))
        if action == "revise":
            technique = self.r.catalog.get(proposal.technique)
            params = {**proposal.params, **dict(answer.get("params") or {})}
            allowed = {p.name: p.values for p in technique.params} if technique else {}
            if technique and all(params.get(n) in v for n, v in allowed.items()):
                revised = proposal.model_copy(update={"params": params})
                self._log(state, _event(GATE, f"revised by reviewer to {params}", state))
                return {"current": revised}
            action, answer = "reject", {"reason": f"revision {params} is not in the catalog"}
        reason = str(answer.get("reason") or f"{action}ed by reviewer")
        self._log(state, _event(GATE, f"{action}: {reason}", state))
        return {"current": None, "avoid": {**state.get("avoid", {}), key: reason}}

    # ------------------------------------------------------------------ develop
    def develop(self, state: DevelopState) -> dict[str, Any]:
        """Write the change in a fresh worktree."""
        proposal = state["current"]
        attempt = len(state.get("verifications") or []) + 1
        feedback = state["verifications"][-1] if state.get("verifications") else None
        patch, apply_check = self.r.developer.implement(proposal, attempt, feedback)
        self._log(state, _event(DEVELOP, f"attempt {attempt}: {apply_check.detail}", state))
        return {"patch": patch, "apply_check": apply_check}

    def verify(self, state: DevelopState) -> dict[str, Any]:
        """Run every verification dimension."""
        verification = self.r.developer.verify(
            state["patch"], state["apply_check"], technique=state["current"].technique
        )
        outcome = "passed" if verification.passed else f"failed: {verification.root_cause}"
        message = f"{outcome} (Q_code {verification.q_code:.2f})"
        self._log(state, _event(VERIFY, message, state))
        return {"verifications": [*state.get("verifications", []), verification]}

    def repair(self, state: DevelopState) -> dict[str, Any]:
        """Targeted repair: new parameters offline, or feedback to the model."""
        last = state["verifications"][-1]
        repaired = None if self.r.llm is not None else offline_repair(self.r, state)
        step = RepairStep(
            params=state["current"].params,
            root_cause=last.root_cause,
            cause=(last.cause or RootCause.IMPLEMENTATION_DEFECT).value,
            new_params=repaired.params if repaired is not None else None,
        )
        update: dict[str, Any] = {"repairs": [*state.get("repairs", []), step]}
        if repaired is not None:
            failed = combo_key(state["current"].technique, state["current"].params)
            update["avoid"] = {**state.get("avoid", {}), failed: f"failed {last.root_cause}"}
            update["current"] = repaired
            message = f"repair: parameters {state['current'].params} -> {repaired.params}"
        else:
            message = f"repair: feedback to the model about {last.root_cause}"
        self._log(state, _event(REPAIR, message, state))
        return update

    def abandon(self, state: DevelopState) -> dict[str, Any]:
        """Give up on a change that cannot be verified; record why."""
        last = state["verifications"][-1] if state.get("verifications") else None
        cause = last.root_cause if last else "no verification"
        self._log(state, _event(ABANDON, f"abandoned: {cause}", state))
        return {}

    # ------------------------------------------------------------------ evaluate
    def launch(self, state: EvaluateState) -> dict[str, Any]:
        """Bring up the control (baseline) and treatment arms."""
        target = self.r.target
        control = target.launch("control", target.repo_path)
        treatment = target.launch("treatment", Path(state["patch"].worktree))
        rollout = Rollout(experiment_id=_experiment_id(state))
        if (
            treatment.ok
            and self.r.settings.ground_truth
            and isinstance(target, PrefetchesGroundTruth)
        ):
            target.prefetch_ground_truth(Path(state["patch"].worktree))  # read by the verdict
        message = "arms up" if treatment.ok else f"treatment failed to start: {treatment.error}"
        self._log(state, _event(LAUNCH, message, state))
        return {"control_arm": control, "treatment_arm": treatment, "rollout": rollout}

    def rollout_stage(self, state: EvaluateState) -> dict[str, Any]:
        """Run the next rollout stage."""
        stages = stages_of(self.r, state)
        index = len(state["rollout"].stages)
        stage = stages[index]
        rollout = state["rollout"].model_copy(deep=True)
        result = run_stage(
            self.r.target,
            state["control_arm"],
            state["treatment_arm"],
            stage,
            rollout.experiment_id,
            self.r.settings,
            final=index == len(stages) - 1,
            policy=self.evaluation_policy,
            slot=state.get("slot"),
        )
        rollout.stages.append(result)
        north = next((e for e in result.effects if e.metric == self.r.settings.north_star), None)
        effect = f"{north.relative:+.2%} (p={north.p_value:.3f})" if north else "n/a"
        message = f"{stage.name}: {result.decision} {self.r.settings.north_star} {effect}"
        self._log(state, _event(STAGE, f"{message} {result.reason}", state))
        return {"rollout": rollout}

    def launch_gate(self, state: EvaluateState) -> dict[str, Any]:
        """Human gate after the canary: approve launching past it, or halt the rollout.

        Reached only when not autonomous, after the first stage continued (or stopped early
        with a win, which would ship). The interrupt's evidence is the canary readout;
        accept goes on; response (with a reason) or ignore halts the stage with a ``launch
        refused by reviewer`` reason, so the graph vetoes, rolls the treatment back and
        records the ``launch_refused`` root cause. A misunderstood answer asks again.
        """
        settings = self.r.settings
        if settings.autonomous:
            return {}
        rollout = state["rollout"].model_copy(deep=True)
        last = rollout.stages[-1]
        index = len(rollout.stages)
        stages = stages_of(self.r, state)
        next_stage = stages[index].name if last.decision == "continue" else None
        north = next((e for e in last.effects if e.metric == settings.north_star), None)
        evidence = {
            "experiment_id": rollout.experiment_id,
            "stage": last.stage,
            "decision": last.decision,
            "next_stage": next_stage,
            "north_star": north.model_dump(mode="json") if north else None,
            "guardrails": [g.model_dump(mode="json") for g in last.guardrails],
            "reason": last.reason,
            "choices": ["approve", "halt"],
        }
        describe = f"Launch {rollout.experiment_id} past {last.stage}? {last.reason}"
        answer = gates.launch_decision(gates.ask(gates.LAUNCH, evidence, describe))
        decided = apply_launch_answer(last, answer)
        rollout.stages[-1] = decided.stage
        event = _event(
            LAUNCH_GATE,
            decided.message,
            state,
            action=decided.action,
            reviewer=decided.reviewer,
            note=decided.note,
        )
        self._log(state, event)
        return {"rollout": rollout}

    def review(self, state: EvaluateState) -> dict[str, Any]:
        """Pause for a human decision on a moderate guardrail breach (never when autonomous).

        Accept approves the breach; response (with a reason) or ignore vetoes. A
        misunderstood answer asks again (see :mod:`agentx.graph.gates`).
        """
        rollout = state["rollout"].model_copy(deep=True)
        request = review_request(rollout.stages[-1], self.r.settings, rollout.experiment_id)
        if request is None:
            return {}
        evidence = request.model_dump(mode="json")
        answer = gates.review_decision(gates.ask(gates.REVIEW, evidence, request.question))
        rollout.stages[-1] = apply_review(rollout.stages[-1], answer)
        last = rollout.stages[-1]
        message = f"review at {last.stage}: {last.decision} {last.reason}"
        self._log(state, _event(REVIEW, message, state))
        return {"rollout": rollout}

    def veto(self, state: EvaluateState) -> dict[str, Any]:
        """Halt the rollout where a guardrail broke and roll the treatment back."""
        rollout = state["rollout"].model_copy(deep=True)
        last = rollout.stages[-1]
        rollout.halted_at, rollout.halt_reason, rollout.rolled_back = last.stage, last.reason, True
        try:
            self.r.target.rollback(state["treatment_arm"])
        except TargetError as error:  # recorded: the verdict stands either way
            rollout.halt_reason = f"{rollout.halt_reason}; rollback failed: {error}"
        self._log(state, _event(VETO, f"vetoed at {last.stage}: {last.reason}", state))
        return {"rollout": rollout}

    def verdict(self, state: EvaluateState) -> dict[str, Any]:
        """Decide KEEP / EXTEND / DISCARD and attach the ground truth when known."""
        settings = self.r.settings
        direction = next(
            (
                m.direction
                for m in self.r.target.describe().metrics
                if m.name == settings.north_star
            ),
            "higher_is_better",
        )
        verdict = decide(
            state["rollout"],
            settings.north_star,
            settings.alpha,
            policy=self.evaluation_policy,
            direction=direction,
        )
        truth = None
        if settings.ground_truth:
            try:
                truth = self.r.target.ground_truth(Path(state["patch"].worktree))
            except TargetError:
                pass
        try:  # the experiment is over: its arms stop serving and free what they hold
            self.r.target.rollback(state["treatment_arm"].model_copy())
        except TargetError:
            pass
        if truth is not None:
            verdict.true_effects = {k: round(v, 6) for k, v in truth.relative.items()}
        if verdict.decision == Decision.KEEP and settings.cumulative.enabled:
            self._check_cumulative(state, verdict)
        message = verdict.decision.value
        if verdict.root_cause == RootCause.CUMULATIVE_GUARDRAIL_HARM:
            message += f" (not merged: {verdict.caveats[-1]})"
        self._log(state, _event(VERDICT, message, state))
        return {"verdict": verdict}

    def conclude(self, state: ExperimentState) -> dict[str, Any]:
        """Hand the experiment's outcome to the run (what learn records and ships)."""
        outcome = ExperimentOutcome(
            patch=state.get("patch"),
            verifications=state.get("verifications") or [],
            repairs=state.get("repairs") or [],
            control_arm=state.get("control_arm"),
            treatment_arm=state.get("treatment_arm"),
            rollout=state.get("rollout"),
            verdict=state.get("verdict"),
        )
        scheduled = state.get("scheduled") or Scheduled(
            iteration=state.get("iteration", 0),
            proposal=state["current"],
            owed=None,  # the subgraph run on its own (Studio): nothing was owed
            slot=state.get("slot"),
        )
        finished = Finished(
            scheduled=scheduled,
            proposal=state["current"],
            avoid=state.get("avoid") or {},
            outcome=outcome,
        )
        return {"finished": [finished]}

    def _check_cumulative(self, state: EvaluateState, verdict: Any) -> None:
        """Check a KEEP with every change kept so far against the origin; a breach blocks it.

        When the baseline still is the origin, the rollout already made this comparison and
        its final stage's guardrails are the cumulative state.
        """
        settings, repo = self.r.settings, self.r.target.repo_path
        origin = state.get("origin") or origin_commit(repo)
        verdict.origin = origin
        if git.head(repo) == origin:
            verdict.cumulative = list(verdict.guardrails)
            return
        results, problem = check_against_origin(
            self.r.target,
            state["treatment_arm"],
            origin,
            verdict.experiment_id,
            stages_of(self.r, state)[-1],
            settings,
            settings.workspace / "worktrees",
        )
        verdict.cumulative = results
        broken = breaches(results)
        if broken:
            verdict.decision = Decision.DISCARD
            verdict.root_cause = RootCause.CUMULATIVE_GUARDRAIL_HARM
            verdict.caveats.append(
                "with the changes kept so far it breaks guardrails against the origin "
                f"{origin[:12]}: "
                + "; ".join(f"{g.tier} {g.metric} {g.detail}" for g in broken)
                + (f" ({problem})" if problem else "")
            )

    # ------------------------------------------------------------------ schedule
    def schedule(self, state: LoopState) -> dict[str, Any]:
        """Put the proposal brainstorm picked into the wave of experiments that will run side
        by side, or close the wave without it when its traffic would be too small.

        A wave holds at most ``concurrency.max_in_flight`` experiments (one when a human
        answers gates: they are asked one at a time). A new experiment must leave every
        experiment of the wave the power it would have had alone (see
        :mod:`agentx.agents.evaluation.capacity`); a follow-up sized for the whole traffic
        runs alone. One that does not fit is not run on stale knowledge later: an owed one
        goes back to the head of the queue, a new idea back to the pool (brainstorm proposes
        it again after the wave if it is still the best).
        """
        wave = list(state.get("wave") or [])
        current = state.get("current")
        update: dict[str, Any] = {**fresh_experiment(), "wave": wave}
        if current is None or state.get("exhausted"):
            return update
        iteration = state.get("iteration", 0)
        item = Scheduled(iteration=iteration, proposal=current, owed=_owed(state))
        why = wave_capacity(self.r, state, [*wave, item])
        if why is None:
            wave.append(item)
            update["iteration"] = iteration + 1
            return update
        update["wave_closed"] = True
        owed = state.get("owed")
        if owed is not None:
            update["queue"] = [owed, *(state.get("queue") or [])]
            if owed.reason == QueueReason.FOLLOW_UP:
                update["funnel"] = add_counts(state.get("funnel"), {"follow_ups": -1})
            later = "back to the head of the queue"
        else:
            later = "proposed again after this wave if still the best"
        message = f"{current.technique} {current.params} waits: {why}; {later}"
        self._log(state, _event(SCHEDULE, message))
        return update

    # ------------------------------------------------------------------ learn
    def learn(self, state: LoopState) -> dict[str, Any]:
        """Record the wave's experiments in the order they were scheduled, ship what they
        kept, and learn what each outcome teaches (see :meth:`_learn_one`).

        Merging is serialised here: the first KEEP of a wave ships; a later KEEP of the same
        wave was measured against a baseline that no longer is the baseline, so it does not
        ship on stale evidence: it is re-tested on the new baseline (verified again in a
        fresh worktree, then A/B tested) up to ``concurrency.max_retests`` times.
        """
        finished = sorted(state.get("finished") or [], key=lambda f: f.scheduled.iteration)
        run: dict[str, Any] = dict(state)
        records: list[ExperimentRecord] = []
        shipped_in_wave = False
        for item in finished:
            scheduled = item.scheduled
            view = {
                **run,
                "current": item.proposal,
                "iteration": scheduled.iteration,
                "owed": scheduled.owed,
                "plan": scheduled.plan,
                "avoid": {**(run.get("avoid") or {}), **item.avoid},
            }
            update, shipped = self._learn_one(
                view, item.outcome, scheduled.slot, stale=shipped_in_wave
            )
            shipped_in_wave = shipped_in_wave or shipped
            recorded = update.pop("experiments")
            records.extend(recorded)
            run.update(update)
            run["avoid"] = view["avoid"]
            run["experiments"] = [*(run.get("experiments") or []), *recorded]
        keys = ("queue", "funnel", "infra_streak", "follow_ups", "stopped")
        out: dict[str, Any] = {key: run.get(key) for key in keys if key in run}
        out.update(
            experiments=records,
            avoid=run.get("avoid") or {},
            wave=[],
            wave_closed=False,
            finished=None,
        )
        return out

    def _learn_one(
        self,
        state: dict[str, Any],
        outcome: ExperimentOutcome,
        slot: TrafficSlot | None,
        *,
        stale: bool,
    ) -> tuple[dict[str, Any], bool]:
        """Ship a kept change, record the experiment, and learn what its outcome teaches;
        the run's update and whether it shipped.

        - a measured outcome or a change wrong at its value: a knowledge card (the avoid set
          and the beliefs read it);
        - an infrastructure failure (model server down, sandbox crash): no card and no avoid
          entry; the experiment is queued to be retried once, does not count in the budget,
          and ``max_infra_failures`` of them in a row stop the run with one clear line;
        - an EXTEND verdict: a follow-up with a final stage sized by power is queued;
        - a KEEP on ``stale`` evidence (another KEEP of its wave shipped first): recorded
          stale, not shipped, and re-tested on the new baseline.
        """
        r = self.r
        proposal, patch, verdict = state["current"], outcome.patch, outcome.verdict
        experiment_id = _experiment_id(state)
        verifications = outcome.verifications
        rollout = outcome.rollout
        last = verifications[-1] if verifications else None
        if verdict is None:
            cause = (last.cause if last else None) or RootCause.IMPLEMENTATION_DEFECT
            infra = cause == RootCause.INFRASTRUCTURE
            status = ExperimentStatus.DEFERRED if infra else ExperimentStatus.ABANDONED
        else:
            status, cause = status_of(verdict), verdict.root_cause
        shipped = None
        kept = verdict is not None and verdict.decision == Decision.KEEP and patch is not None
        if kept and stale:
            status = ExperimentStatus.STALE
            verdict.caveats.append(
                "not shipped: another KEEP of its wave changed the baseline first; "
                "its evidence is re-tested on the new baseline"
            )
        elif kept:
            message = f"Keep {proposal.technique} ({experiment_id})"
            shipped = r.target.ship(Path(patch.worktree), message)  # through the contract
        cards = self._repaired_away_cards(state, outcome, experiment_id)
        card = None
        if status != ExperimentStatus.DEFERRED:
            card = make_card(
                proposal,
                experiment_id,
                state["goal"].objective,
                r.world_name,
                state["run_id"],
                verdict,
                cause.value if verdict is None and cause else None,
                rollout.last_stage if rollout else None,
                workspace_id=r.workspace_id,
            )
            cards.insert(0, card)
        if cards:
            r.store.upsert(cards)
        r.developer.discard(patch)
        recorded_cause = cause.value if cause else None
        if verdict is None and last is not None:
            recorded_cause = f"{recorded_cause}: {last.root_cause}"
        record = ExperimentRecord(
            id=experiment_id,
            iteration=state.get("iteration", 0),
            proposal=proposal,
            patch=patch.model_copy(update={"diff": patch.diff[:20000]}) if patch else None,
            verifications=verifications,
            rollout=rollout,
            verdict=verdict,
            status=status,
            card_id=card.id if card else None,
            root_cause=recorded_cause,
            cause=cause,
            follow_up_of=parent_if(_owed(state), QueueReason.FOLLOW_UP),
            retest_of=parent_if(_owed(state), QueueReason.RETEST),
            traffic=slot,
            arms={
                name: arm.model_dump(mode="json")
                for name, arm in (
                    ("control", outcome.control_arm),
                    ("treatment", outcome.treatment_arm),
                )
                if rollout is not None and arm is not None
            },
        )
        self._save_trajectory(state, record)
        line = f"{status.value}; card {card.id}" if card else f"{status.value}; no card"
        data: dict[str, Any] = {"status": status.value}
        if shipped is not None:
            data["shipped"] = shipped.revision
        events = [_event(LEARN, line, state, **data)]
        counts = {
            "implemented": int(outcome.implemented),
            "launched": int(rollout is not None),
            "kept": int(status == ExperimentStatus.KEPT),
        }
        update: dict[str, Any] = {"experiments": [record]}
        queue = list(state.get("queue") or [])
        if status == ExperimentStatus.DEFERRED:
            streak = state.get("infra_streak", 0) + 1
            update["infra_streak"] = streak
            counts["deferred"] = 1
            if parent_if(_owed(state), QueueReason.RETRY) is None:
                queue.append(_owe(state, QueueReason.RETRY, experiment_id))
            if streak >= r.settings.max_infra_failures:
                line = (
                    f"circuit breaker: {streak} infrastructure failures in a row "
                    f"(last: {last.root_cause if last else 'unknown'}); the run stops instead "
                    "of burning ideas: fix the model server or sandbox and start a new run"
                )
                update["stopped"] = line
                events.append(_event(LEARN, line, state, stopped=True))
        else:
            update["infra_streak"] = 0
        if status == ExperimentStatus.STALE:
            owed = _owed(state)
            retests = owed.retests if owed is not None else 0
            if retests < r.settings.concurrency.max_retests:
                queue.insert(0, _owe(state, QueueReason.RETEST, experiment_id, retests + 1))
                counts["retests"] = 1
                events.append(_event(LEARN, "re-test queued on the new baseline", state))
            else:
                message = f"stale after {retests} re-test(s): not shipped"
                events.append(_event(LEARN, message, state))
        follow_up = self._follow_up(state, verdict, experiment_id, slot)
        if follow_up is not None:
            queued, message = follow_up
            if queued is not None:
                queue.append(queued)
                update["follow_ups"] = state.get("follow_ups", 0) + 1
            events.append(_event(LEARN, message, state))
        update["queue"] = queue
        update["funnel"] = add_counts(state.get("funnel"), counts)
        self._log(state, *events)
        return update, shipped is not None

    def _follow_up(
        self, state: LoopState, verdict: Any, experiment_id: str, slot: TrafficSlot | None
    ) -> tuple[Queued | None, str] | None:
        """The follow-up of an EXTEND verdict and a line saying why (None: not an EXTEND).

        One follow-up per idea (a follow-up is not followed up again), at most
        ``extend.max_follow_ups`` per run. The follow-up runs alone, on all the traffic,
        so an experiment measured on its ``slot`` of a wave is sized up by the share of
        its final stage's users the slot kept.
        """
        settings = self.r.settings
        if verdict is None or verdict.decision != Decision.EXTEND or not settings.extend.enabled:
            return None
        if parent_if(_owed(state), QueueReason.FOLLOW_UP):
            return None, "inconclusive again after a follow-up: no further follow-up"
        if state.get("follow_ups", 0) >= settings.extend.max_follow_ups:
            return None, f"no follow-up: the budget of {settings.extend.max_follow_ups} is spent"
        policy = self.evaluation_policy
        stages = stages_of(self.r, state)
        plan, why = plan_follow_up(
            verdict,
            stages,
            settings.extend,
            alpha=policy.final_alpha(settings.alpha, len(stages)),
            ci_alpha=settings.alpha,
            min_effect=policy.min_interesting_effect,
            horizon_days=self.r.horizon_days,
            traffic_share=slot.kept(stages[-1].treatment_share) if slot is not None else 1.0,
        )
        if plan is None:
            return None, f"no follow-up: {why}"
        queued = Queued(
            proposal=state["current"],
            reason=QueueReason.FOLLOW_UP,
            parent=experiment_id,
            stages=plan.stages,
        )
        return queued, plan.line()

    def _repaired_away_cards(
        self, state: LoopState, outcome: ExperimentOutcome, experiment_id: str
    ) -> list[KnowledgeCard]:
        """A card for each parameter set a repair stepped away from, so later runs (whose
        avoid set comes from memory) do not propose it again. Each carries the failure's typed
        cause: an offline regression or latency over budget caps the parameter there.
        """
        cards = []
        for failed in outcome.abandoned_params:
            proposal = state["current"].model_copy(update={"params": failed.params})
            card = make_card(
                proposal,
                stable_id(experiment_id, failed.params),
                state["goal"].objective,
                self.r.world_name,
                state["run_id"],
                None,
                failed.cause,
                None,
                workspace_id=self.r.workspace_id,
            )
            card.text = f"{card.text} Repaired away: {failed.root_cause}."
            cards.append(card)
        return cards

    def _save_trajectory(self, state: LoopState, record: ExperimentRecord) -> None:
        """Keep the run's experiments where harness evolution reads them (idempotent)."""
        store = self.r.harness_store
        if store is None:
            return
        goal = state["goal"]
        store.save_trajectory(
            RunTrajectory(
                run_id=state["run_id"],
                world=self.r.world_name,
                objective=goal.objective,
                direction=goal.direction,
                north_star=self.r.settings.north_star,
                seed=self.r.settings.seed,
                records=[*state.get("experiments", []), record],
            )
        )

    def _logged(self, state: Any, *events: TraceEvent) -> dict[str, Any]:
        """Log ``events``; an empty update (for nodes that only report)."""
        self._log(state, *events)
        return {}

    # ------------------------------------------------------------------ evolve
    def _harness_versions(self) -> dict[str, int]:
        return {agent: int(h.get("version", 1)) for agent, h in sorted(self.r.harness.items())}

    def evolve_harness(self, state: LoopState) -> dict[str, Any]:
        """One SGPO step on one agent (in turn), over every run recorded in the workspace.

        A kept edit becomes the agent's active harness from the next node on; a rolled-back
        one is stored as refinement experience so it is not tried again from this version.
        """
        agents = self.r.settings.evolution.agents
        agent = agents[len(state.get("evolutions", [])) % len(agents)]
        key = (self.r.world_name, self.r.settings.seed)
        if key not in self._evolution_graphs:
            self._evolution_graphs[key] = build_evolution_graph(self.r.evolver())
        request = {"agent": agent, "run_id": state["run_id"], "iteration": state["iteration"]}
        step = self._evolution_graphs[key].invoke(request)["step"]
        if step.outcome == "kept":
            self.r.reload_harness(agent)
        self._log(state, _event(EVOLVE, step.line(), data={"outcome": step.outcome}))
        return {"evolutions": [step], "harness_versions": self._harness_versions()}
