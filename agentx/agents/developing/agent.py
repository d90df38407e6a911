"""Turn a proposal into a verified change of the target repository.

Each attempt works on its own branch ``exp/<proposal>-a<attempt>`` checked out in the
proposal's worktree; the baseline is never edited in place. Where an attempt starts:

- the first attempt, and every offline attempt, starts from the baseline (offline, a
  repair is the recipe rendered again with other parameters);
- a retry after a *transient* failure starts from the failed attempt's commit and
  changes nothing: the same code is verified again, once per experiment (the retry is
  an empty commit, so a resumed run knows it happened);
- an LLM repair after a *deterministic* failure starts from the failed attempt's commit:
  the model sees the current files, the failing evidence and the diff so far, and
  returns a targeted fix, not a rewrite.

Branches and worktree depend only on the proposal id and the attempt number, so a
resumed run that repeats a node recreates exactly the same state. ``Patch.diff`` is
always the whole change against the baseline; :meth:`Developer.discard` removes the
worktree and every attempt's branch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from agentx.agents.developing.checks import (
    INFRASTRUCTURE,
    cap_detail,
    is_blocking,
    scope_check,
    summarise,
    syntax_check,
)
from agentx.agents.developing.classify import classify, safety_check
from agentx.agents.developing.context import (
    config_keys,
    relevant_files,
    repo_map,
    unmet_preconditions,
)
from agentx.agents.developing.feedback import evidence, render_feedback
from agentx.agents.developing.rules import rules_check
from agentx.agents.developing.spans import rank_spans, terms_of
from agentx.harness import load_prompt
from agentx.llm.ask import ask
from agentx.llm.budget import Context
from agentx.models import CheckResult, Edit, FailureKind, Patch, Proposal, Verification
from agentx.research.catalog import CatalogError, Technique
from agentx.research.recipes import edits_for
from agentx.target.contract import Target, TargetError
from agentx.target.models import OfflineMetrics, SystemDescription
from agentx.workspace import git
from agentx.workspace.edits import EditError, apply_edits, plan_edits

_REPAIRABLE_OFFLINE = {"latency", "offline_metrics", "diff_scope"}
_RETRY = "retry unchanged after a transient failure"
_BACKTICKED = re.compile(r"`([^`\n]+)`")


class _ModelProblem(EditError):
    """The model gave no edit plan; ``notes`` are the call's fallbacks, for the record."""

    def __init__(self, message: str, notes: list[str] | None = None):
        super().__init__(message)
        self.notes = notes or []


class ModelUnavailable(_ModelProblem):
    """The model call failed (server down, timeout, refused, prompt over the budget): no
    fault of the idea or the code."""


class PlanUnusable(_ModelProblem):
    """The model's replies stayed malformed or unusable for the worktree after re-asks."""


class _Grounding(EditError):
    """A recipe's precondition is not met (reported as the grounding dimension)."""


def plan_problem(plan: EditPlan, root: Path, protected: list[str]) -> str | None:
    """Why an edit plan cannot be applied to the worktree at ``root``, or None.

    Checked before the plan is accepted, so the model is asked again with the reason (a
    ``search`` text that is not in the file, a protected path, edits that change nothing)
    instead of the attempt failing on it.
    """
    for edit in plan.edits:
        clean = edit.path.strip().removeprefix("./")
        if any(clean == p.rstrip("/") or clean.startswith(p.rstrip("/") + "/") for p in protected):
            return f"{edit.path} is protected and may not be edited"
    try:
        pending = plan_edits(root, plan.edits)
    except EditError as error:
        return f"{error} (copy each `search` text verbatim from the code spans shown)"
    unchanged = all(
        target.exists() and target.read_text() == text for target, text in pending.items()
    )
    return "the edits change nothing" if unchanged else None


class EditPlan(BaseModel):
    """What the LLM returns: strict edits and why."""

    rationale: str = Field(description="One paragraph: what the change does and why.")
    edits: list[Edit] = Field(min_length=1, description="Search/replace edits, applied strictly.")


class Developer:
    """Implements and verifies proposals against one target."""

    def __init__(
        self,
        target: Target,
        catalog: dict[str, Technique],
        worktrees: Path,
        harness: dict[str, Any],
        llm: BaseChatModel | None = None,
        llm_settings: dict[str, Any] | None = None,
        max_detail_chars: int = 4000,
    ):
        self.target = target
        self.catalog = catalog
        self.worktrees = Path(worktrees)
        self.harness = harness
        self.llm = llm
        self.llm_settings = llm_settings or {}
        self.max_detail_chars = max_detail_chars
        self.verify_timeout_s = float(harness.get("verify_timeout_s", 300.0))
        self.import_timeout_s = float(harness.get("import_timeout_s", 60.0))
        self._baseline_offline: dict[str, OfflineMetrics] = {}
        self._edits_by_branch: dict[str, list[Edit]] = {}

    # ------------------------------------------------------------------ workspace
    def worktree_for(self, proposal_id: str, attempt: int = 1) -> tuple[Path, str]:
        """Path of a proposal's worktree and the branch of one of its attempts."""
        return self.worktrees / proposal_id, f"exp/{proposal_id}-a{attempt}"

    def _start(
        self, proposal: Proposal, attempt: int, feedback: Verification | None
    ) -> tuple[str, str]:
        """Where an attempt starts (a ref) and how it is written: fresh, retry or repair."""
        repo = self.target.repo_path
        if attempt <= 1 or feedback is None or feedback.passed:
            return "HEAD", "fresh"
        _, previous = self.worktree_for(proposal.id, attempt - 1)
        if not git.branches(repo, previous):
            return "HEAD", "fresh"
        retried = any(s.startswith(_RETRY) for s in git.subjects(repo, "HEAD", previous))
        if feedback.failure_kind == FailureKind.TRANSIENT and not retried:
            return previous, "retry"  # once; after that the router asks for a repair
        if self.llm is None:
            return "HEAD", "fresh"
        return previous, "repair"

    # ------------------------------------------------------------------ implement
    def implement(
        self, proposal: Proposal, attempt: int, feedback: Verification | None = None
    ) -> tuple[Patch, CheckResult]:
        """Write attempt ``attempt`` of ``proposal``; return it with the apply result.

        A failed apply (an edit that does not match, a path outside the worktree, a
        model without a usable plan, an unmet precondition) is returned as a failed
        check, never raised, so it is verified and fed back like any other failure.
        """
        repo = self.target.repo_path
        path, branch = self.worktree_for(proposal.id, attempt)
        start, mode = self._start(proposal, attempt, feedback)
        if mode == "fresh":
            git.remove_worktree(repo, path)
            git.delete_branches(repo, f"exp/{proposal.id}-a*")
        baseline = git.head(repo)
        git.add_worktree(repo, path, branch, base=start)
        patch = Patch(proposal_id=proposal.id, attempt=attempt, branch=branch, worktree=str(path))
        if mode == "retry":
            _, previous = self.worktree_for(proposal.id, attempt - 1)
            patch.edits = self._edits_by_branch.get(previous, [])
            git.commit_empty(path, f"{_RETRY} (attempt {attempt - 1})")
            check = CheckResult(
                dimension="apply",
                passed=True,
                detail=f"retrying attempt {attempt - 1} unchanged after a transient failure",
            )
        else:
            check = self._write(proposal, patch, path, feedback, baseline)
        self._edits_by_branch[branch] = patch.edits
        patch.files_touched, patch.lines_changed = git.diff_stats(path, baseline)
        patch.diff = git.diff(path, baseline)
        if check.passed and not patch.files_touched:
            check = CheckResult(
                dimension="apply",
                passed=False,
                detail="the change is empty: the repository is identical to the baseline",
            )
        return patch, check

    def _write(
        self,
        proposal: Proposal,
        patch: Patch,
        path: Path,
        feedback: Verification | None,
        baseline: str,
    ) -> CheckResult:
        technique = self.catalog.get(proposal.technique)
        system = self.target.describe()
        model_notes: list[str] = []
        try:
            if self.llm is None:
                edits = self._recipe_edits(proposal, technique, system, path)
            else:
                try:
                    edits, model_notes = self._llm_edits(
                        proposal, technique, system, path, feedback, baseline, patch.attempt
                    )
                except ModelUnavailable:
                    raise
                except PlanUnusable as error:
                    # Junk from the model is not the idea's defect: on a fresh attempt the
                    # technique's recipe (the offline policy) writes the change instead.
                    if technique is None or git.diff(path, baseline):
                        raise
                    edits = self._recipe_edits(proposal, technique, system, path)
                    model_notes = [
                        *error.notes,
                        f"{error}; the technique's recipe (offline policy) was used",
                    ]
            patch.edits = edits
            changed = apply_edits(path, edits)
        except ModelUnavailable as error:
            return CheckResult(
                dimension="apply",
                passed=False,
                detail=_with_notes(str(error), error.notes),
                data={INFRASTRUCTURE: True, "model_notes": error.notes},
            )
        except _Grounding as error:
            return CheckResult(dimension="grounding", passed=False, detail=str(error))
        except _ModelProblem as error:
            return CheckResult(
                dimension="apply", passed=False, detail=_with_notes(str(error), error.notes)
            )
        except (EditError, CatalogError, OSError) as error:
            return CheckResult(dimension="apply", passed=False, detail=str(error))
        message = f"{proposal.technique} attempt {patch.attempt}: {json.dumps(proposal.params)}"
        if git.commit_all(path, message) is None:
            return CheckResult(
                dimension="apply",
                passed=False,
                detail=f"the edits leave {', '.join(changed) or 'every file'} unchanged",
            )
        return CheckResult(
            dimension="apply",
            passed=True,
            detail=_with_notes(
                f"{len(edits)} edit(s) applied to {', '.join(changed)}", model_notes
            ),
            data={"model_notes": model_notes} if model_notes else {},
        )

    def _recipe_edits(
        self, proposal: Proposal, technique: Technique | None, system: SystemDescription, path: Path
    ) -> list[Edit]:
        """The offline policy's edits: the technique's recipe at the proposal's parameters.

        Raises:
            _Grounding: a precondition of the recipe is not met.
            EditError: the technique is unknown or its recipe does not apply.
        """
        if technique is None:
            raise EditError(f"unknown technique {proposal.technique!r}")
        # Preconditions are the recipe's: a retune edits code that already met them
        # when it merged (and changed what they test, e.g. ranker.debias).
        failure: EditError | None = None
        try:
            edits, how = edits_for(technique, proposal.params, path)
        except EditError as error:
            edits, how, failure = [], "recipe", error
        unmet = unmet_preconditions(technique, system) if how == "recipe" else []
        if unmet:
            raise _Grounding(f"{technique.id}: precondition not met: " + "; ".join(unmet))
        if failure is not None:
            raise failure  # reported as the apply check
        return edits

    def _llm_edits(
        self,
        proposal: Proposal,
        technique: Technique | None,
        system: SystemDescription,
        path: Path,
        feedback: Verification | None,
        baseline: str,
        attempt: int,
    ) -> tuple[list[Edit], list[str]]:
        """The model's edits (checked against the worktree) and the call's fallback notes.

        Raises:
            ModelUnavailable: the call failed for the infrastructure (server, network,
                configuration, a required prompt item over the token budget).
            PlanUnusable: the model gave no usable plan after its re-asks.
        """
        assert self.llm is not None
        current_diff = git.diff(path, baseline)
        changed, _ = git.diff_stats(path, baseline)
        named = [*proposal.implementation_location, *(technique.locations if technique else [])]
        failing = evidence(feedback) if feedback is not None else ""
        unmet = unmet_preconditions(technique, system) if technique else []
        note = technique.body if technique else "(no note: a new technique)"
        files = relevant_files(path, named, changed, failing)
        terms = terms_of(
            proposal.technique,
            json.dumps(proposal.params),
            " ".join(_BACKTICKED.findall(note)),
            " ".join(technique.preconditions if technique else []),
            failing,
            current_diff,
        )
        spans = rank_spans(path, files, terms, set(named), set(changed), failing)
        located = repo_map(system, limit=10_000).splitlines()
        located.sort(key=lambda line: not any(f"- {name}:" in line for name in files))
        required = {
            "attempt": str(attempt),
            "proposal": proposal.model_dump_json(indent=1),
            "technique": note,
            "unmet": "; ".join(unmet) or "none",
            "feedback": render_feedback(feedback, attempt, current_diff, self.max_detail_chars),
        }
        # Most needed first: the schema and features are short and decide what code may
        # use; then the code itself; the full config and the repository map last.
        optional = [
            Context(
                name="schema",
                pieces=[f"- {t}: {', '.join(f)}" for t, f in system.data_fields.items()],
            ),
            Context(name="features", pieces=list(system.features), joiner=", "),
            Context(name="files", pieces=[s.render() for s in spans], joiner="\n\n"),
            Context(name="config_keys", pieces=config_keys(system).splitlines()),
            Context(name="repo_map", pieces=located),
        ]
        protected = list(system.protected_paths)
        result = ask(
            self.llm,
            load_prompt("developing", "system"),
            load_prompt("developing", "implement"),
            EditPlan,
            self.llm_settings,
            required=required,
            optional=optional,
            check=lambda plan: plan_problem(plan, path, protected),
        )
        notes = result.notes()
        if result.budget is not None and result.budget.cut():
            cut = ", ".join(f"{k} -{v}" for k, v in result.budget.cut().items())
            used = f"{result.budget.tokens:,} of {result.budget.budget:,}"
            notes.append(f"prompt fitted to {used} tokens (left out: {cut})")
        if result.call_failed:
            raise ModelUnavailable(
                f"the model call failed ({result.failure}): {result.error}", notes
            )
        if not result.ok or result.value is None:
            raise PlanUnusable(f"the model gave no usable edit plan: {result.error}", notes)
        return result.value.edits, notes

    # ------------------------------------------------------------------ verify
    def verify(
        self, patch: Patch, apply_check: CheckResult, technique: str | None = None
    ) -> Verification:
        """All verification dimensions of a patch, each reported.

        ``technique`` (a catalog id) says which offline metrics judge a regression: a
        stochastic technique is judged on the metrics its randomisation should not hurt.

        Order: apply → parse + static rules → import (runs code) → the target's checks
        (grounding, unit tests, dry run) → offline metrics and latency against the
        baseline; the diff scope is always reported. A stage runs only when every
        earlier blocking check passed; dimensions that did not run are recorded as
        skipped. Everything that ran code feeds the ``safety`` dimension.
        """
        if not apply_check.passed:
            return summarise([apply_check])
        root = Path(patch.worktree)
        system = self.target.describe()
        scope = scope_check(patch.files_touched, patch.lines_changed)
        checks = [
            apply_check,
            syntax_check(root, patch.files_touched, import_timeout_s=None),
            rules_check(root, patch.diff, patch.files_touched, system.protected_paths),
        ]
        if _clear(checks):
            checks[1] = syntax_check(root, patch.files_touched, self.import_timeout_s)
            # What the import check's code left in the worktree (a conftest.py that skips
            # every test, a symlink out of the worktree) must not reach the tests.
            git.restore_clean(root)
            if _clear(checks):
                checks.extend(self._target_checks(root))
            if _clear(checks):
                judged = self._judged_metrics(technique)
                checks.extend(self._offline_checks(root, system.latency_budget_ms, judged))
            checks = [classify(check) for check in checks]
            checks.append(safety_check(checks))
        stray = git.restore_clean(root)
        if stray:
            note = f"; removed {len(stray)} file(s) the run left in the worktree"
            scope = scope.model_copy(update={"detail": scope.detail + note})
        return summarise([cap_detail(c, self.max_detail_chars) for c in [*checks, scope]])

    def _target_checks(self, root: Path) -> list[CheckResult]:
        try:
            return list(self.target.verify(root, timeout_s=self.verify_timeout_s).checks)
        except (TargetError, OSError) as error:
            return [
                CheckResult(
                    dimension="unit_tests",
                    passed=False,
                    transient=True,
                    detail=f"the target's verification could not run: {error}",
                    data={INFRASTRUCTURE: True},
                )
            ]

    def _judged_metrics(self, technique: str | None) -> list[str]:
        """The offline metrics a regression is judged on (NDCG unless the catalog says)."""
        known = self.catalog.get(technique) if technique else None
        return list(known.offline_metrics) if known is not None else ["ndcg_at_k"]

    def _offline_checks(
        self, root: Path, budget: float | None, judged: list[str] | None = None
    ) -> list[CheckResult]:
        try:
            baseline = self.baseline_offline()
        except TargetError as error:
            detail = f"the baseline's offline evaluation failed (not the change's fault): {error}"
            check = CheckResult(
                dimension="offline_metrics",
                passed=False,
                transient=True,
                detail=detail,
                data={INFRASTRUCTURE: True},
            )
            return [check]
        try:
            metrics = self.target.evaluate_offline(root)
        except TargetError as error:
            return [CheckResult(dimension="offline_metrics", passed=False, detail=str(error))]
        limit = float(self.harness.get("max_offline_regression", 0.15))
        values = (metrics.ndcg_at_k, metrics.recall_at_k, metrics.latency_ms)
        if not all(math.isfinite(v) for v in values):
            return [
                CheckResult(
                    dimension="offline_metrics",
                    passed=False,
                    detail=f"offline metrics are not finite (NDCG {metrics.ndcg_at_k}, "
                    f"recall {metrics.recall_at_k}, latency {metrics.latency_ms}): "
                    "the model produced NaN or infinite scores",
                    data=metrics.model_dump(),
                )
            ]
        judged = judged or ["ndcg_at_k"]
        changes = {
            name: _relative(getattr(metrics, name), getattr(baseline, name)) for name in judged
        }
        worst = min(changes, key=lambda name: changes[name])
        change = changes[worst]
        base = baseline.ndcg_at_k
        ndcg_change = _relative(metrics.ndcg_at_k, base)
        if judged == ["ndcg_at_k"]:
            rule = f"NDCG@{metrics.k} {change:+.1%}; a regression beyond -{limit:.0%} fails"
        else:
            rule = (
                f"judged on {', '.join(judged)} (stochastic by design): {worst} {change:+.1%}, "
                f"a regression beyond -{limit:.0%} fails"
            )
        offline = CheckResult(
            dimension="offline_metrics",
            passed=-change <= limit,
            severity="moderate",
            detail=(
                f"{rule}; NDCG@{metrics.k} {metrics.ndcg_at_k:.4f} vs baseline {base:.4f} "
                f"({ndcg_change:+.1%}); recall {metrics.recall_at_k:.4f} vs "
                f"{baseline.recall_at_k:.4f}; coverage {metrics.coverage:.3f} vs "
                f"{baseline.coverage:.3f}"
            ),
            data={
                **metrics.model_dump(),
                "baseline_ndcg_at_k": base,
                "relative_change": change,
                "judged_on": judged,
                "max_regression": limit,
            },
        )
        over = budget is not None and metrics.latency_ms > budget
        latency = CheckResult(
            dimension="latency",
            passed=not over,
            detail=(
                f"{metrics.latency_ms:.1f} ms per request against a {budget:g} ms budget"
                if budget is not None
                else f"{metrics.latency_ms:.1f} ms per request (the target sets no budget)"
            ),
            data={"latency_ms": metrics.latency_ms, "budget_ms": budget},
        )
        return [offline, latency]

    def baseline_offline(self) -> OfflineMetrics:
        """Offline metrics of the current baseline (cached per baseline commit)."""
        head = git.head(self.target.repo_path)
        if head not in self._baseline_offline:
            self._baseline_offline[head] = self.target.evaluate_offline(self.target.repo_path)
        return self._baseline_offline[head]

    # ------------------------------------------------------------------ repair / clean-up
    def offline_repair(
        self,
        proposal: Proposal,
        verification: Verification,
        tested: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Proposal | None:
        """A targeted repair without an LLM: step a parameter away from the failure.

        Only failures a parameter can cause (a measured offline regression, latency over
        budget) are repaired this way; code defects and sandbox stops are not retried
        blindly. ``tested`` says which parameter sets were already tried (or merged): those
        are stepped over, since repeating them teaches nothing.
        """
        technique = self.catalog.get(proposal.technique)
        failing = [c for c in verification.checks if is_blocking(c)]
        if technique is None or not failing:
            return None
        if any(c.dimension not in _REPAIRABLE_OFFLINE or c.transient for c in failing):
            return None
        measured = all(
            "relative_change" in c.data for c in failing if c.dimension == "offline_metrics"
        )
        if not measured:
            return None  # the evaluation failed to run: no regression to step away from
        for param in technique.params:
            values = list(param.values)
            current = proposal.params.get(param.name, technique.default_params()[param.name])
            if current not in values:
                continue
            # Values are listed from mild to strong: step back towards the mild end.
            for milder in reversed(values[: values.index(current)]):
                params = {**proposal.params, param.name: milder}
                if tested is not None and tested(params):
                    continue
                repaired = proposal.model_copy(deep=True)
                repaired.params = params
                return repaired
        return None

    def discard(self, patch: Patch | None) -> None:
        """Remove an experiment's worktree and every attempt's branch (no residue)."""
        if patch is None:
            return
        repo = self.target.repo_path
        git.remove_worktree(repo, Path(patch.worktree), patch.branch)
        git.delete_branches(repo, f"exp/{patch.proposal_id}-a*")
        self._edits_by_branch = {
            b: e
            for b, e in self._edits_by_branch.items()
            if not b.startswith(f"exp/{patch.proposal_id}-a")
        }


def _relative(value: float, base: float) -> float:
    """Relative change of ``value`` against ``base`` (0 when the base is 0: nothing to lose)."""
    return value / base - 1.0 if base > 0 else 0.0


def _with_notes(detail: str, notes: list[str]) -> str:
    """A check's detail with the model call's fallbacks (they reach the trace with it)."""
    return detail + "".join(f"; model call: {note}" for note in notes)


def _clear(checks: list[CheckResult]) -> bool:
    """No blocking failure so far: the next stage may run."""
    return not any(is_blocking(check) for check in checks)
