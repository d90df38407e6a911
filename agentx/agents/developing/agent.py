"""Turn a proposal into a verified change of the target repository.

Each attempt works in its own git worktree and branch; the baseline is never edited in
place. Offline, the change is the technique's code recipe rendered with the proposal's
parameters; with an LLM, the model writes strict search/replace edits from grounded
context (the files it will touch, the feature registry, the data schema, the note).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from agentx.agents.developing.checks import rules_check, scope_check, summarise, syntax_check
from agentx.harness import load_prompt
from agentx.llm.structured import invoke_structured
from agentx.models import CheckResult, Edit, Patch, Proposal, Verification
from agentx.research.catalog import CatalogError, Technique
from agentx.target.contract import Target, TargetError
from agentx.target.models import OfflineMetrics
from agentx.workspace import git
from agentx.workspace.edits import EditError, apply_edits


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
    ):
        self.target = target
        self.catalog = catalog
        self.worktrees = worktrees
        self.harness = harness
        self.llm = llm
        self.llm_settings = llm_settings or {}
        self._baseline_offline: dict[str, OfflineMetrics] = {}

    # ------------------------------------------------------------------ implement
    def worktree_for(self, proposal_id: str) -> tuple[Path, str]:
        """Path and branch of an experiment's worktree."""
        return self.worktrees / proposal_id, f"exp/{proposal_id}"

    def implement(
        self, proposal: Proposal, attempt: int, feedback: Verification | None = None
    ) -> tuple[Patch, CheckResult]:
        """Create a fresh worktree and write the change; return it with the apply result."""
        path, branch = self.worktree_for(proposal.id)
        tree = git.add_worktree(self.target.repo_path, path, branch)
        patch = Patch(proposal_id=proposal.id, attempt=attempt, branch=branch, worktree=str(path))
        try:
            edits = self._edits(proposal, path, feedback)
            apply_edits(path, edits)
        except (EditError, CatalogError, ValueError) as error:
            return patch, CheckResult(dimension="apply", passed=False, detail=str(error))
        patch.edits = edits
        patch.files_touched, patch.lines_changed = git.diff_stats(path, tree.base)
        patch.diff = git.diff(path, tree.base)
        git.commit_all(path, f"{proposal.technique}: {json.dumps(proposal.params, sort_keys=True)}")
        return patch, CheckResult(
            dimension="apply", passed=True, detail=f"{len(edits)} edit(s) applied"
        )

    def _edits(self, proposal: Proposal, path: Path, feedback: Verification | None) -> list[Edit]:
        technique = self.catalog.get(proposal.technique)
        if self.llm is None:
            if technique is None:
                raise EditError(f"unknown technique {proposal.technique!r}")
            return technique.render_recipe(proposal.params)
        return self._llm_edits(proposal, technique, path, feedback)

    def _llm_edits(
        self,
        proposal: Proposal,
        technique: Technique | None,
        path: Path,
        feedback: Verification | None,
    ) -> list[Edit]:
        files = {
            loc: (path / loc).read_text()
            for loc in proposal.implementation_location
            if (path / loc).is_file()
        }
        system = self.target.describe()
        context = {
            "proposal": proposal.model_dump_json(indent=1),
            "technique": technique.body if technique else "",
            "files": "\n\n".join(f"### {name}\n```\n{text}\n```" for name, text in files.items()),
            "features": ", ".join(system.features),
            "schema": json.dumps(system.data_fields),
            "feedback": _feedback(feedback),
        }
        prompt = load_prompt("developing", "implement").format(**context)
        result = invoke_structured(
            self.llm,
            [SystemMessage(load_prompt("developing", "system")), HumanMessage(prompt)],
            EditPlan,
            method=self.llm_settings.get("structured_method", "function_calling"),
            max_retries=int(self.llm_settings.get("max_retries", 2)),
        )
        if not result.ok or result.value is None:
            raise EditError(f"the model gave no usable edit plan: {result.error}")
        return result.value.edits

    # ------------------------------------------------------------------ verify
    def verify(self, patch: Patch, apply_check: CheckResult) -> Verification:
        """All verification dimensions of a patch, each reported."""
        if not apply_check.passed:
            return summarise([apply_check])
        root = Path(patch.worktree)
        system = self.target.describe()
        checks = [apply_check, syntax_check(root, patch.files_touched)]
        checks.append(rules_check(root, patch.diff, patch.files_touched, system.protected_paths))
        if not all(c.passed for c in checks):
            return summarise(checks + [scope_check(patch.files_touched, patch.lines_changed)])
        checks.extend(self.target.verify(root).checks)
        if all(c.passed or c.severity == "minor" for c in checks):
            checks.extend(self._offline_checks(root, system.latency_budget_ms))
        checks.append(scope_check(patch.files_touched, patch.lines_changed))
        return summarise(checks)

    def _offline_checks(self, root: Path, budget: float | None) -> list[CheckResult]:
        try:
            baseline = self.baseline_offline()
            metrics = self.target.evaluate_offline(root)
        except TargetError as error:
            return [CheckResult(dimension="offline_metrics", passed=False, detail=str(error))]
        limit = float(self.harness.get("max_offline_regression", 0.15))
        drop = 1.0 - metrics.ndcg_at_k / baseline.ndcg_at_k if baseline.ndcg_at_k > 0 else 0.0
        offline = CheckResult(
            dimension="offline_metrics",
            passed=drop <= limit,
            severity="moderate",
            detail=(
                f"NDCG@{metrics.k} {metrics.ndcg_at_k:.4f} vs baseline {baseline.ndcg_at_k:.4f} "
                f"({-drop:+.1%}); recall {metrics.recall_at_k:.4f}; coverage {metrics.coverage:.3f}"
            ),
            data=metrics.model_dump(),
        )
        over = budget is not None and metrics.latency_ms > budget
        latency = CheckResult(
            dimension="latency",
            passed=not over,
            detail=f"{metrics.latency_ms:.1f} ms per request against a {budget} ms budget",
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
    def offline_repair(self, proposal: Proposal, verification: Verification) -> Proposal | None:
        """A targeted repair without an LLM: step a parameter away from the failure.

        Only failures a parameter can cause (latency, offline regression) are repaired
        this way; code defects are not retried blindly.
        """
        technique = self.catalog.get(proposal.technique)
        failing = {c.dimension for c in verification.failed_checks()}
        if technique is None or not failing <= {"latency", "offline_metrics", "diff_scope"}:
            return None
        for param in technique.params:
            values = list(param.values)
            current = proposal.params.get(param.name)
            if current not in values:
                continue
            index = values.index(current)
            # Values are listed from mild to strong: step back towards the mild end.
            if index > 0:
                repaired = proposal.model_copy(deep=True)
                repaired.params = {**proposal.params, param.name: values[index - 1]}
                return repaired
        return None

    def discard(self, patch: Patch | None) -> None:
        """Remove an experiment's worktree and branch (no residue for later ones)."""
        if patch is not None:
            git.remove_worktree(self.target.repo_path, Path(patch.worktree), patch.branch)


def _feedback(verification: Verification | None) -> str:
    if verification is None:
        return "This is the first attempt."
    lines = [f"- {c.dimension}: {c.detail}" for c in verification.failed_checks()]
    return "The previous attempt failed these checks; fix exactly these:\n" + "\n".join(lines)
