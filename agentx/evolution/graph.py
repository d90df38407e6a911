"""The SGPO step as a LangGraph graph: diagnose → refine → safety check → replay → decide.

One agent is updated per step. The loop runs this graph as its ``evolve_harness`` node every
``evolution.every`` experiments; Studio runs it alone (``agentx_evolve``) on the trajectories
recorded in the workspace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from agentx.agents.evaluation.policy import EvaluationPolicy
from agentx.evolution.diagnose import attribute_regret, diagnose
from agentx.evolution.llm import llm_diagnose, llm_refine
from agentx.evolution.models import (
    EvolutionStep,
    HarnessEdit,
    Outcome,
    ReplayScore,
    SemanticGradient,
)
from agentx.evolution.refine import apply_edit, refine_offline
from agentx.evolution.replay import (
    ReplayContext,
    regret_attribution,
    replay_brainstorm,
    replay_evaluation,
)
from agentx.evolution.rubric import Rubric, load_rubric
from agentx.evolution.safety import unsafe_reasons
from agentx.evolution.store import HarnessStore, RunTrajectory
from agentx.harness import HarnessError
from agentx.models import stable_id
from agentx.research.catalog import Technique
from agentx.settings import Settings
from agentx.target.contract import Target
from agentx.target.models import DataReport

EVOLVABLE_AGENTS = ("brainstorm", "evaluation")
DIAGNOSE, REFINE, CHECK, REPLAY, DECIDE = "diagnose", "refine", "safety_check", "replay", "decide"


class EvolutionInput(TypedDict, total=False):
    """What a caller gives one SGPO step."""

    agent: str
    run_id: str
    iteration: int


class EvolutionState(EvolutionInput, total=False):
    """One step in progress."""

    step_id: str
    base_version: int
    gradient: SemanticGradient | None
    edit: HarnessEdit | None
    unsafe: list[str]
    old_score: ReplayScore | None
    new_score: ReplayScore | None
    outcome: Outcome | None
    reason: str
    notes: list[str]
    step: EvolutionStep | None


class EvolutionOutput(TypedDict, total=False):
    """The recorded step."""

    step: EvolutionStep


class Evolver:
    """The SGPO step's nodes, bound to a workspace's harness store and the target."""

    def __init__(
        self,
        settings: Settings,
        store: HarnessStore,
        target: Target,
        catalog: dict[str, Technique],
        data_report: Callable[[], DataReport],
        llm: BaseChatModel | None = None,
    ):
        self.settings = settings
        self.store = store
        self.target = target
        self.catalog = catalog
        self.data_report = data_report
        self.llm = llm

    # ------------------------------------------------------------------ helpers
    def _rubric(self, agent: str) -> Rubric:
        return load_rubric(agent, self.store.bundled)

    def _context(self) -> ReplayContext:
        return ReplayContext(self.catalog, self.target.describe(), self.data_report())

    def _runs(self) -> list[RunTrajectory]:
        return self.store.trajectories()

    def _tried(self, agent: str, base_version: int) -> set[str]:
        """Edit directions rolled back from this version: not tried again.

        Unsafe edits do not count: they were refused for their size or target, which says
        nothing about whether a bounded step in the same direction would help.
        """
        return {
            s.edit.key()
            for s in self.store.steps(agent)
            if s.edit is not None and s.base_version == base_version and s.outcome == "rolled_back"
        }

    def replay(self, agent: str, harness: dict[str, Any], runs: list[RunTrajectory]) -> ReplayScore:
        """Score ``harness`` of ``agent`` on the recorded tasks."""
        rubric = self._rubric(agent)
        if agent == "brainstorm":
            return replay_brainstorm(harness, runs, rubric, self._context(), self.settings.seed)
        policy = EvaluationPolicy.from_harness(harness)
        if not getattr(self.target, "supports_replay", False):
            return ReplayScore(score=0.0, tasks=0)
        return replay_evaluation(policy, runs, rubric, self.target, self.settings)

    # ------------------------------------------------------------------ nodes
    def diagnose(self, state: EvolutionState) -> dict[str, Any]:
        """Evaluator: rubric loss and semantic gradient (the model's, when one is set)."""
        agent = state.get("agent", "")
        if agent not in EVOLVABLE_AGENTS:
            known = ", ".join(EVOLVABLE_AGENTS)
            return _finish("failed", f"agent {agent!r} is not evolvable (choose {known})")
        version = self.store.version(agent)
        runs = self._runs()
        if state.get("run_id"):  # inside a run: one step per (run, iteration, agent)
            step_id = stable_id("sgpo", state["run_id"], state.get("iteration", 0), agent)
        else:  # standalone (CLI, Studio): a new step whenever the ledger or the data grew
            records = sum(len(run.records) for run in runs)
            step_id = stable_id("sgpo", agent, version, len(self.store.steps()), records)
        done = self.store.step(step_id)
        if done is not None:  # a resumed run: the step was taken before the interruption
            return {"step_id": step_id, "base_version": version, "step": done, "outcome": None}
        try:
            rubric = self._rubric(agent)
            harness = self.store.harness(agent)
            gradient = diagnose(agent, runs, rubric, self.settings)
            if agent == "brainstorm" and "regret" in rubric.criteria:
                tolerance = rubric.criteria["regret"].tolerance
                advantage = regret_attribution(harness, runs, rubric, self._context(), tolerance)
                gradient = attribute_regret(gradient, advantage, rubric)
        except (HarnessError, ValueError) as error:
            return _finish("failed", str(error), step_id=step_id, base_version=version)
        notes = []
        if self.llm is not None:
            drafted, problem, call_notes = llm_diagnose(
                self.llm, agent, harness, rubric, runs, gradient, self.settings.llm.model_dump()
            )
            notes.extend(call_notes)
            if drafted is not None and any(item.field for item in drafted.items):
                gradient = drafted
            else:  # junk never replaces the rubric's gradient
                notes.append(f"model gradient unusable ({problem or 'no items'}); rubric used")
        update: dict[str, Any] = {
            "step_id": step_id,
            "base_version": version,
            "gradient": gradient,
            "notes": notes,
        }
        if not gradient.items:
            update.update(_finish("no_gradient", gradient.loss_text))
        return update

    def refine(self, state: EvolutionState) -> dict[str, Any]:
        """Refiner: one edit from the gradient, not one already rolled back."""
        agent, gradient = state["agent"], state["gradient"]
        harness = self.store.harness(agent)
        rubric = self._rubric(agent)
        tried = self._tried(agent, state["base_version"])
        notes = list(state.get("notes", []))
        edit = None
        if self.llm is not None:
            edit, problem, call_notes = llm_refine(
                self.llm, agent, gradient, harness, rubric, tried, self.settings.llm.model_dump()
            )
            notes.extend(call_notes)
            if edit is not None and not (edit.edits or edit.add_rules):
                edit, problem = None, "the edit changes nothing"
            if edit is None:
                notes.append(f"model edit unusable ({problem}); rubric refiner used")
        if edit is None:
            edit = refine_offline(agent, gradient, harness, rubric, tried)
        if edit is None:
            reason = "every edit the gradient supports was tried from this version or is at a bound"
            return {"notes": notes, **_finish("no_gradient", reason)}
        return {"edit": edit, "notes": notes}

    def check(self, state: EvolutionState) -> dict[str, Any]:
        """Safety: evolvable fields within bounds, no rubric, verifier or protected path."""
        agent = state["agent"]
        problems = unsafe_reasons(state["edit"], self.store.harness(agent), self._rubric(agent))
        if problems:
            return {"unsafe": problems, **_finish("unsafe", "; ".join(problems))}
        return {"unsafe": []}

    def replay_both(self, state: EvolutionState) -> dict[str, Any]:
        """Replay the old and the edited harness on the same recorded tasks."""
        agent = state["agent"]
        runs = self._runs()
        old_harness = self.store.harness(agent)
        new_harness = apply_edit(old_harness, state["edit"])
        try:
            if agent == "evaluation":
                EvaluationPolicy.from_harness(new_harness)
        except HarnessError as error:
            return _finish("unsafe", str(error))
        old = self.replay(agent, old_harness, runs)
        if old.tasks < self.settings.evolution.min_tasks:
            why = f"{old.tasks} replayable tasks (need {self.settings.evolution.min_tasks})"
            return {"old_score": old, **_finish("not_enough_tasks", why)}
        new = self.replay(agent, new_harness, runs)
        return {"old_score": old, "new_score": new}

    def decide(self, state: EvolutionState) -> dict[str, Any]:
        """Keep the edit only if the replay score rose by more than epsilon; record the step."""
        if state.get("step") is not None and state.get("outcome") is None:
            return {}  # already recorded before a resume
        agent = state.get("agent", "")
        old, new = state.get("old_score"), state.get("new_score")
        outcome, reason = state.get("outcome"), state.get("reason", "")
        new_version = None
        if outcome is None and old is not None and new is not None:
            gain = new.score - old.score
            epsilon = self.settings.evolution.epsilon
            if gain > epsilon:
                edit = state["edit"]
                harness = apply_edit(self.store.harness(agent), edit)
                note = (
                    f"SGPO step {state['step_id']} from v{state['base_version']}: {edit.rationale}"
                    f"\nreplay {old.score:+.4f} -> {new.score:+.4f} on {new.tasks} tasks"
                )
                new_version = self.store.commit(agent, harness, edit.files, note)
                outcome, reason = "kept", f"replay gain {gain:+.4f} > epsilon {epsilon}"
            else:
                outcome = "rolled_back"
                reason = f"replay gain {gain:+.4f} <= epsilon {epsilon}; stored as experience"
        notes = state.get("notes") or []
        step = EvolutionStep(
            id=state.get("step_id") or stable_id("sgpo", agent, "failed"),
            agent=agent,
            base_version=state.get("base_version", 0),
            new_version=new_version,
            outcome=outcome or "failed",
            reason="; ".join([reason, *notes]) if notes else reason,
            gradient=state.get("gradient"),
            edit=state.get("edit"),
            old_score=old,
            new_score=new,
            run_id=state.get("run_id", ""),
            iteration=state.get("iteration", 0),
        )
        if agent in EVOLVABLE_AGENTS:
            self.store.record_step(step)
        return {"step": step, "outcome": step.outcome}


def _finish(outcome: Outcome, reason: str, **extra: Any) -> dict[str, Any]:
    return {"outcome": outcome, "reason": reason, **extra}


def _done(state: EvolutionState) -> bool:
    return bool(state.get("outcome") or state.get("step"))


def after_diagnose(state: EvolutionState) -> Literal["refine", "decide"]:
    """No gradient (or a step already recorded): straight to the record."""
    return DECIDE if _done(state) else REFINE


def after_refine(state: EvolutionState) -> Literal["safety_check", "decide"]:
    """No edit left to try: record that."""
    return DECIDE if _done(state) else CHECK


def after_check(state: EvolutionState) -> Literal["replay", "decide"]:
    """An unsafe edit is never replayed."""
    return DECIDE if _done(state) else REPLAY


def build_evolution_graph(evolver: Evolver) -> CompiledStateGraph:
    """Compile the SGPO step over ``evolver``."""
    graph = StateGraph(EvolutionState, input_schema=EvolutionInput, output_schema=EvolutionOutput)
    graph.add_node(DIAGNOSE, evolver.diagnose)
    graph.add_node(REFINE, evolver.refine)
    graph.add_node(CHECK, evolver.check)
    graph.add_node(REPLAY, evolver.replay_both)
    graph.add_node(DECIDE, evolver.decide)
    graph.add_edge(START, DIAGNOSE)
    graph.add_conditional_edges(DIAGNOSE, after_diagnose)
    graph.add_conditional_edges(REFINE, after_refine)
    graph.add_conditional_edges(CHECK, after_check)
    graph.add_edge(REPLAY, DECIDE)
    graph.add_edge(DECIDE, END)
    return graph.compile(name="agentx_evolve")
