"""The Developing Agent on real worktrees of the tiny sandbox, through the graph's own
develop/verify/repair nodes and router. Only the chat model is scripted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langgraph.graph import END
from pydantic import Field

from agentx.agents.developing.agent import Developer
from agentx.graph.builder import make_after_verify
from agentx.graph.nodes import ABANDON, DEVELOP, REPAIR, Nodes
from agentx.graph.resources import Resources
from agentx.graph.state import ExperimentOutcome, Finished, RepairStep, Scheduled
from agentx.graph.tracelog import read_trace
from agentx.harness import load_harness
from agentx.models import CheckResult, Edit, FailureKind, Patch, Proposal, Verification
from agentx.research.catalog import Technique, load_catalog
from agentx.sandbox.target import SandboxTarget
from agentx.settings import load_settings
from agentx.workspace import git

EXTENSION = "# <extension:rerank>"
RERANK_DOC = (
    '    """Apply every enabled rule greedily, then exploration; int64 [n, k] item ids."""\n'
)
CONNECT = '    importlib.import_module("socket").create_connection(("192.0.2.1", 80), 1)\n'


class RecordingFake(FakeMessagesListChatModel):
    """Replies from a script and records every request it gets."""

    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def prompt(self, index: int) -> str:
        return "\n".join(str(m.content) for m in self.requests[index])


def _plan(*edits: dict[str, str]) -> AIMessage:
    return AIMessage(content=json.dumps({"rationale": "scripted", "edits": list(edits)}))


def _technique(tid: str, *edits: Edit, preconditions: list[str] | None = None) -> Technique:
    """A catalog entry whose recipe is ``edits`` (how a broken change is injected offline)."""
    return Technique(
        id=tid,
        name=tid,
        lever="test",
        summary=f"test technique {tid}",
        recipe=list(edits),
        preconditions=preconditions or [],
    )


def _proposal(pid: str, technique: str, **params: Any) -> Proposal:
    return Proposal(
        id=pid,
        technique=technique,
        lever="test",
        params=params,
        hypothesis="test",
        target_metric="watch_time",
        implementation_location=["config.toml", "recsys/rerank.py"],
    )


def _at_extension(code: str) -> Edit:
    return Edit(path="recsys/rerank.py", search=EXTENSION, replace=f"{code}\n\n\n{EXTENSION}")


@pytest.fixture(scope="module")
def catalog() -> dict[str, Technique]:
    broken = {
        "t_syntax": _technique("t_syntax", _at_extension("def broken(:\n    return 1")),
        "t_unseeded": _technique(
            "t_unseeded",
            Edit(
                path="recsys/rerank.py",
                search="u = keyed_uniform(seed, state.day,",
                replace="u = keyed_uniform(0, state.day,",
            ),
        ),
        "t_hallucinated": _technique(
            "t_hallucinated",
            Edit(path="config.toml", search="features = [", replace='features = ["watch_v2", '),
        ),
        "t_precondition": _technique(
            "t_precondition",
            Edit(path="config.toml", search="x", replace="y"),
            preconditions=["rerank.mystery_knob exists in config.toml"],
        ),
        "t_loop": _technique("t_loop", _at_extension("while True:\n    pass")),
        "t_hoard": _technique(
            "t_hoard", _at_extension("_HOARD = [bytes(10**8) for _ in range(10**6)]")
        ),
        "t_escape": _technique(
            "t_escape",
            Edit(
                path="recsys/rerank.py",
                search="import numpy as np",
                replace=("import numpy as np\n\nfrom pathlib import Path"),
            ),
            _at_extension(
                'Path(__file__).resolve().parents[2].joinpath("escaped.txt").write_text("x")'
            ),
        ),
        "t_socket": _technique(
            "t_socket",
            Edit(
                path="recsys/rerank.py",
                search="import numpy as np",
                replace=("import importlib\n\nimport numpy as np"),
            ),
            Edit(
                path="recsys/rerank.py",
                search=RERANK_DOC,
                replace=RERANK_DOC + CONNECT,
            ),
        ),
    }
    return {**load_catalog(), **broken}


@pytest.fixture(scope="module")
def worktrees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worktrees")


@pytest.fixture(scope="module")
def developer(
    tiny_target: SandboxTarget, catalog: dict[str, Technique], worktrees: Path
) -> Iterator[Developer]:
    yield Developer(tiny_target, catalog, worktrees, load_harness("developing"))
    git.delete_branches(tiny_target.repo_path, "exp/t-*")


def _no_residue(developer: Developer, proposal_id: str) -> None:
    repo = developer.target.repo_path
    assert git.branches(repo, f"exp/{proposal_id}-a*") == []
    assert not (developer.worktrees / proposal_id).exists()
    assert all(proposal_id not in str(p) for p in git.worktree_paths(repo))


def _resources(developer: Developer, llm: Any = None, max_repairs: int = 3) -> Resources:
    workspace = developer.worktrees.parent / "ws"  # the nodes' trace log goes there
    settings = load_settings(world="tiny", max_repair_attempts=max_repairs, workspace=workspace)
    return Resources(
        settings=settings,
        target=developer.target,
        store=None,  # type: ignore[arg-type]  # develop/verify/repair never touch memory
        catalog=developer.catalog,
        developer=developer,
        world_name="tiny",
        llm=llm,
    )


def _drive(resources: Resources, proposal: Proposal) -> tuple[dict[str, Any], list[str]]:
    """Run the developing agent's develop → verify → (retry | repair | abandon | end) edges."""
    nodes, router = Nodes(resources), make_after_verify(resources)
    state: dict[str, Any] = {"run_id": "dev", "current": proposal, "verifications": []}
    routes: list[str] = []

    def merge(update: dict[str, Any]) -> None:
        state.update(update)

    while True:
        merge(nodes.develop(state))  # type: ignore[arg-type]
        merge(nodes.verify(state))  # type: ignore[arg-type]
        route = router(state)  # type: ignore[arg-type]
        routes.append(route)
        if route == REPAIR:
            merge(nodes.repair(state))  # type: ignore[arg-type]
        elif route != DEVELOP:
            return state, routes


def _dims(verification: Verification) -> dict[str, bool]:
    return {c.dimension: c.passed for c in verification.checks}


# --------------------------------------------------------------------------- offline


def test_correct_change_passes_every_dimension_and_leaves_no_residue(
    developer: Developer,
) -> None:
    repo = developer.target.repo_path
    baseline = git.head(repo)
    proposal = _proposal("t-correct", "exploration_slots", slots=2)
    patch, apply_check = developer.implement(proposal, 1)
    verification = developer.verify(patch, apply_check)
    assert verification.passed, verification.root_cause
    assert all(_dims(verification).values()), _dims(verification)
    assert {c.dimension for c in verification.checks} >= {
        "apply", "syntax", "rules", "safety", "grounding", "unit_tests", "dry_run",
        "offline_metrics", "latency", "diff_scope",
    }  # fmt: skip
    assert verification.q_code == 1.0
    assert patch.files_touched == ["config.toml"] and patch.lines_changed == 2
    assert "+exploration_slots = 2" in patch.diff  # the final diff is kept with the patch
    assert (
        git.head(repo) == baseline and "exploration_slots = 1" in (repo / "config.toml").read_text()
    )
    developer.discard(patch)
    _no_residue(developer, "t-correct")


def test_syntax_error_fails_syntax_and_is_abandoned_offline(developer: Developer) -> None:
    state, routes = _drive(_resources(developer), _proposal("t-syntax", "t_syntax"))
    verification: Verification = state["verifications"][-1]
    assert routes == [ABANDON]  # deterministic, and offline no parameter can fix code
    assert _dims(verification)["syntax"] is False
    assert verification.root_cause is not None and verification.root_cause.startswith(
        "syntax: recsys/rerank.py:"
    )
    assert verification.failure_kind == FailureKind.DETERMINISTIC
    assert next(c for c in verification.checks if c.dimension == "unit_tests").data["skipped"]
    developer.discard(state["patch"])
    _no_residue(developer, "t-syntax")


def test_change_that_breaks_the_templates_tests_fails_unit_tests(developer: Developer) -> None:
    patch, apply_check = developer.implement(_proposal("t-unseeded", "t_unseeded"), 1)
    verification = developer.verify(patch, apply_check)
    dims = _dims(verification)
    assert dims["syntax"] and dims["rules"] and dims["safety"] and dims["grounding"]
    assert dims["unit_tests"] is False
    assert verification.root_cause is not None
    assert verification.root_cause.startswith("unit_tests: FAILED tests/test_rerank.py::")
    assert verification.failure_kind == FailureKind.DETERMINISTIC
    assert developer.offline_repair(_proposal("t-unseeded", "t_unseeded"), verification) is None
    developer.discard(patch)


def test_hallucinated_feature_is_caught_by_grounding(developer: Developer) -> None:
    patch, apply_check = developer.implement(_proposal("t-halluc", "t_hallucinated"), 1)
    verification = developer.verify(patch, apply_check)
    grounding = next(c for c in verification.checks if c.dimension == "grounding")
    assert not grounding.passed and "'watch_v2'" in grounding.detail
    assert verification.root_cause is not None and verification.root_cause.startswith("grounding:")
    assert verification.failure_kind == FailureKind.DETERMINISTIC
    developer.discard(patch)


def test_unmet_precondition_fails_grounding_before_anything_runs(developer: Developer) -> None:
    patch, check = developer.implement(_proposal("t-precond", "t_precondition"), 1)
    assert check.dimension == "grounding" and not check.passed
    assert "config key rerank.mystery_knob does not exist" in check.detail
    verification = developer.verify(patch, check)
    assert verification.root_cause is not None and verification.root_cause.startswith("grounding:")
    assert patch.diff == ""
    developer.discard(patch)
    _no_residue(developer, "t-precond")


# --------------------------------------------------------------------------- LLM mode


def test_llm_repairs_a_broken_change_within_the_budget(developer: Developer) -> None:
    model = RecordingFake(
        responses=[
            # 1: a search text that is not in the file: caught against the worktree before
            # it is applied, and the model is asked again within the same attempt.
            _plan({"path": "config.toml", "search": "exploration_slots = 5", "replace": "x"}),
            # 2: applies, but the new code does not parse.
            _plan(
                {
                    "path": "config.toml",
                    "search": "exploration_slots = 1 ",
                    "replace": "exploration_slots = 2 ",
                },
                {
                    "path": "recsys/rerank.py",
                    "search": EXTENSION,
                    "replace": f"def slot_bonus(x:\n    return x\n\n\n{EXTENSION}",
                },
            ),
            # 3: a targeted fix of attempt 1's text, which only exists in attempt 1's files.
            _plan(
                {"path": "recsys/rerank.py", "search": "slot_bonus(x:", "replace": "slot_bonus(x):"}
            ),
        ]
    )
    llm_developer = Developer(
        developer.target, developer.catalog, developer.worktrees, developer.harness, llm=model
    )
    llm_developer._baseline_offline = developer._baseline_offline  # same baseline, computed once
    proposal = _proposal("t-llm-fix", "exploration_slots", slots=2)
    state, routes = _drive(_resources(llm_developer, llm=model), proposal)
    assert routes == [REPAIR, END]
    first, final = state["verifications"]
    assert first.root_cause is not None and first.root_cause.startswith("syntax:")
    assert final.passed and final.q_code == 1.0
    # The re-ask is recorded with the attempt (it reaches the trace with the apply detail).
    apply = next(c for c in first.checks if c.dimension == "apply")
    assert "model call: malformed: reask" in apply.detail
    assert "'exploration_slots = 5' not found" in apply.detail
    # The first prompt is grounded: repository map, config, features, schema, code spans.
    first_prompt = model.prompt(0)
    assert "- recsys/features.py: " in first_prompt and "item_popularity()" in first_prompt
    assert "- rerank.exploration_slots = 1" in first_prompt
    assert "Registered ranking features: mf_score" in first_prompt
    assert "release_day" in first_prompt and EXTENSION in first_prompt
    assert "### recsys/rerank.py lines " in first_prompt  # spans, not whole files
    # The re-ask carries the repository's complaint; the repair the syntax error, the diff
    # so far and the broken code as it now is.
    assert "'exploration_slots = 5' not found" in str(model.requests[1][-1].content)
    repair = model.prompt(2)
    assert "recsys/rerank.py:" in repair and "was never closed" in repair
    assert "+def slot_bonus(x:" in repair and "Root cause: syntax:" in repair
    assert "def slot_bonus(x:" in repair.split("Relevant code")[1]
    patch: Patch = state["patch"]
    assert "+def slot_bonus(x):" in patch.diff and "+exploration_slots = 2" in patch.diff
    assert patch.attempt == 2 and len(state["repairs"]) == 1
    assert [step.new_params for step in state["repairs"]] == [None]  # a model repair
    llm_developer.discard(patch)
    _no_residue(developer, "t-llm-fix")


def test_unrepairable_change_is_abandoned_with_its_root_cause(developer: Developer) -> None:
    replies = [
        _plan(
            {"path": "recsys/rerank.py", "search": EXTENSION, "replace": f"def f{i}(:\n{EXTENSION}"}
        )
        for i in range(3)
    ]
    model = RecordingFake(responses=replies)
    llm_developer = Developer(
        developer.target, developer.catalog, developer.worktrees, developer.harness, llm=model
    )
    resources = _resources(llm_developer, llm=model, max_repairs=2)
    state, routes = _drive(resources, _proposal("t-llm-bad", "exploration_slots"))
    assert routes == [REPAIR, REPAIR, ABANDON]
    assert len(model.requests) == 3
    assert all(v.failure_kind == FailureKind.DETERMINISTIC for v in state["verifications"])
    assert Nodes(resources).abandon(state) == {}  # type: ignore[arg-type]
    [event] = read_trace(resources.settings.workspace, "dev")[-1:]
    assert event.node == "abandon" and "abandoned: syntax: recsys/rerank.py:" in event.message
    llm_developer.discard(state["patch"])
    _no_residue(developer, "t-llm-bad")


def test_llm_is_asked_to_repair_only_after_the_one_unchanged_retry(developer: Developer) -> None:
    # A crash by a signal is transient (an external kill, flaky native code): one retry.
    crash = {
        "path": "recsys/rerank.py",
        "search": EXTENSION,
        "replace": f"os.abort()\n{EXTENSION}",
    }
    importing = {
        "path": "recsys/rerank.py",
        "search": "import numpy as np",
        "replace": "import os\n\nimport numpy as np",
    }
    still_broken = {"path": "recsys/rerank.py", "search": "os.abort()", "replace": "os.abort("}
    model = RecordingFake(responses=[_plan(importing, crash), _plan(still_broken)])
    llm_developer = Developer(
        developer.target, developer.catalog, developer.worktrees, developer.harness, llm=model
    )
    state, routes = _drive(
        _resources(llm_developer, llm=model, max_repairs=1), _proposal("t-llm-crash", "x")
    )
    assert routes == [DEVELOP, REPAIR, ABANDON]
    assert [v.failure_kind for v in state["verifications"]] == [
        FailureKind.TRANSIENT,
        FailureKind.TRANSIENT,
        FailureKind.DETERMINISTIC,
    ]
    assert len(model.requests) == 2  # the retry did not ask the model
    assert "killed by signal SIGABRT" in model.prompt(1) and "+os.abort()" in model.prompt(1)
    llm_developer.discard(state["patch"])
    _no_residue(developer, "t-llm-crash")


# --------------------------------------------------------------------------- safety


def test_endless_loop_is_deterministic_and_abandoned_without_a_blind_retry(
    developer: Developer,
) -> None:
    quick = Developer(
        developer.target,
        developer.catalog,
        developer.worktrees,
        {**developer.harness, "import_timeout_s": 2},
    )
    state, routes = _drive(_resources(quick), _proposal("t-loop", "t_loop"))
    assert routes == [ABANDON]  # the same code loops again: retrying it costs a timeout
    (verification,) = state["verifications"]
    assert verification.failure_kind == FailureKind.DETERMINISTIC
    assert verification.root_cause is not None
    assert verification.root_cause.startswith("safety: timed out after 2 s")
    assert "+while True:" in state["patch"].diff
    quick.discard(state["patch"])
    _no_residue(developer, "t-loop")


@pytest.mark.parametrize(
    ("technique", "stopped", "during"),
    [
        ("t_hoard", "out of memory", "syntax"),
        ("t_escape", "write outside the workspace", "syntax"),
        ("t_socket", "network access is not allowed", "unit_tests"),
    ],
)
def test_sandbox_stops_are_recorded_as_deterministic_safety_failures(
    developer: Developer, technique: str, stopped: str, during: str
) -> None:
    pid = f"t-{technique}"
    patch, apply_check = developer.implement(_proposal(pid, technique), 1)
    verification = developer.verify(patch, apply_check)
    safety = next(c for c in verification.checks if c.dimension == "safety")
    assert not safety.passed and stopped in safety.detail and f"(during {during})" in safety.detail
    assert verification.failure_kind == FailureKind.DETERMINISTIC
    assert verification.root_cause is not None and verification.root_cause.startswith("safety:")
    assert not (developer.worktrees / "escaped.txt").exists()
    developer.discard(patch)
    _no_residue(developer, pid)


def test_offline_repair_steps_over_parameters_already_tested(
    tiny_target: SandboxTarget, worktrees: Path
) -> None:
    developer = Developer(tiny_target, load_catalog(), worktrees, load_harness("developing"))
    regression = Verification(
        passed=False,
        checks=[
            CheckResult(
                dimension="offline_metrics",
                passed=False,
                detail="NDCG@10 fell 20%",
                data={"relative_change": -0.2},
            )
        ],
    )
    strong = Proposal(
        id="p-dim",
        technique="mf_embedding_dim",
        lever="model",
        params={"dim": 6},
        hypothesis="smaller embeddings generalise",
        target_metric="watch_time",
    )
    assert developer.offline_repair(strong, regression).params == {"dim": 8}
    # dim 8 was already tested (here: merged by an earlier experiment): step over it.
    milder = developer.offline_repair(strong, regression, tested=lambda p: p["dim"] == 8)
    assert milder is not None and milder.params == {"dim": 12}
    assert developer.offline_repair(strong, regression, tested=lambda p: True) is None


def test_parameters_repaired_away_reach_memory_and_the_next_avoid_set(
    developer: Developer, tmp_path: Path
) -> None:
    from agentx.agents.brainstorm.agent import avoid_set
    from agentx.agents.brainstorm.evidence import EvidenceBundle
    from agentx.agents.brainstorm.intake import parse_goal
    from agentx.agents.brainstorm.policy import combo_key
    from agentx.memory.store import open_store

    settings = load_settings(world="tiny", workspace=tmp_path / "ws")
    resources = _resources(developer)
    resources.store = open_store(settings.workspace, settings.memory, settings.embeddings)
    goal = parse_goal("raise watch time", ["watch_time"], ["active_days"])
    proposal = _proposal("p-rep", "mf_embedding_dim", dim=12)
    outcome = ExperimentOutcome(
        repairs=[
            RepairStep(
                params={"dim": 6},
                root_cause="offline_metrics: -20%",
                cause="implementation_defect",
                new_params={"dim": 12},
            )
        ]
    )
    scheduled = Scheduled(iteration=0, proposal=proposal)
    state = {
        "run_id": "run-1",
        "goal": goal,
        "finished": [Finished(scheduled=scheduled, proposal=proposal, outcome=outcome)],
    }
    Nodes(resources).learn(state)  # type: ignore[arg-type]
    cards = resources.store.list(where={"world": "tiny"})
    by_params = {json.dumps(c.params, sort_keys=True): c for c in cards}
    assert set(by_params) == {'{"dim": 12}', '{"dim": 6}'}
    repaired_away = by_params['{"dim": 6}']
    assert repaired_away.root_cause == "implementation_defect"
    assert "offline_metrics: -20%" in repaired_away.text
    bundle = EvidenceBundle(
        system=developer.target.describe(),
        data=developer.target.analyse_data(),
        catalog=developer.catalog,
        cards=cards,
    )
    avoid = avoid_set(goal, bundle, "tiny")
    assert combo_key("mf_embedding_dim", {"dim": 6}) in avoid


def _with_model(developer: Developer, model: Any, llm_settings: dict[str, Any]) -> Developer:
    """The same developer in LLM mode with ``model`` and ``llm_settings``."""
    return Developer(
        developer.target,
        developer.catalog,
        developer.worktrees,
        developer.harness,
        llm=model,
        llm_settings=llm_settings,
    )


def test_llm_prompt_fits_its_token_budget_with_the_most_relevant_spans(
    developer: Developer,
) -> None:
    from agentx.llm.budget import EstimateCounter

    edit = {
        "path": "config.toml",
        "search": "exploration_slots = 1 ",
        "replace": "exploration_slots = 2 ",
    }
    model = RecordingFake(responses=[_plan(edit)])
    settings = {"context_tokens": 4096, "max_tokens": 512, "prompt_budget_tokens": 3500}
    llm_developer = _with_model(developer, model, settings)
    patch, check = llm_developer.implement(_proposal("t-budget", "exploration_slots", slots=2), 1)
    assert check.passed, check.detail
    prompt = model.prompt(0)
    assert EstimateCounter().count(prompt) <= 3500
    assert "left out to fit the token budget" in prompt
    assert "### config.toml lines" in prompt and "exploration_slots = 1" in prompt
    rerank = (Path(patch.worktree) / "recsys" / "rerank.py").read_text()
    assert rerank not in prompt  # spans of a file, never the whole file
    assert "of 3,404 tokens (left out: files -" in check.detail  # recorded with the attempt
    llm_developer.discard(patch)
    _no_residue(developer, "t-budget")


def test_a_required_item_over_the_budget_is_infrastructure_not_a_defect(
    developer: Developer,
) -> None:
    from agentx.agents.developing.checks import INFRASTRUCTURE, failure_cause
    from agentx.models import RootCause

    model = RecordingFake(responses=[_plan({"path": "x", "search": "", "replace": "y"})])
    llm_developer = _with_model(developer, model, {"prompt_budget_tokens": 300})
    patch, check = llm_developer.implement(_proposal("t-tiny", "exploration_slots", slots=2), 1)
    assert not check.passed and check.data[INFRASTRUCTURE]
    assert "over_budget" in check.detail and "raise llm.context_tokens" in check.detail
    assert model.requests == []  # never sent
    assert failure_cause([check]) == RootCause.INFRASTRUCTURE
    llm_developer.discard(patch)
    _no_residue(developer, "t-tiny")


def test_junk_edit_plans_fall_back_to_the_recipe_on_a_fresh_attempt(
    developer: Developer,
) -> None:
    """A model whose plans stay unusable (here: text that is no JSON) is not the idea's
    defect: the technique's recipe writes the change and the reason is recorded."""
    model = RecordingFake(responses=[AIMessage(content="1.0")] * 3)
    llm_developer = _with_model(developer, model, {"reasks": 1})
    patch, check = llm_developer.implement(_proposal("t-junk", "exploration_slots", slots=2), 1)
    assert check.passed, check.detail
    assert "the technique's recipe (offline policy) was used" in check.detail
    assert "model call: malformed: reask" in check.detail
    assert len(model.requests) == 2 and "+exploration_slots = 2" in patch.diff
    llm_developer.discard(patch)
    _no_residue(developer, "t-junk")
