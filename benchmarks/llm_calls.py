"""Model calls and prompt tokens per experiment of an LLM-mode run.

Usage: python benchmarks/llm_calls.py --base-url http://127.0.0.1:8000/v1 --model NAME
           [--world default] [--iterations 2] [--context 16384] [--out benchmarks/results]

Runs the loop in LLM mode against an OpenAI-compatible server and records every chat
request: which decision asked (the schema: GoalDraft, IdeaBatch, EditPlan, ...), the
prompt and completion tokens the server reported, and the wall time. Prints a table per
decision and per experiment, and writes llm-calls-<world>.json. The largest prompt must
fit ``--context`` (the token budget is derived from it, see docs/llm.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from agentx.graph.resources import build_resources
from agentx.llm.factory import make_chat_model
from agentx.runner import run_loop
from agentx.settings import load_settings


class CallLog(BaseCallbackHandler):
    """Every chat request: the decision (tool or schema name), tokens and seconds."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._open: dict[UUID, dict[str, Any]] = {}

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: UUID, **kw: Any
    ) -> None:
        params = kw.get("invocation_params") or {}
        tools = params.get("tools") or []
        name = tools[0]["function"]["name"] if tools else "text"
        self._open[run_id] = {"decision": name, "start": time.perf_counter()}

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        call = self._open.pop(run_id, {"decision": "?", "start": time.perf_counter()})
        usage = (response.llm_output or {}).get("token_usage") or {}
        self.calls.append(
            {
                "decision": call["decision"],
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "seconds": round(time.perf_counter() - call["start"], 2),
            }
        )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        call = self._open.pop(run_id, {"decision": "?", "start": time.perf_counter()})
        self.calls.append(
            {
                "decision": call["decision"],
                "error": f"{type(error).__name__}: {str(error)[:120]}",
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "seconds": round(time.perf_counter() - call["start"], 2),
            }
        )


def main() -> None:
    """Run the loop in LLM mode and print the calls and tokens it took."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--world", default="default")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--context", type=int, default=16_384)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    log = CallLog()
    with tempfile.TemporaryDirectory() as workspace:
        settings = load_settings(
            world=args.world,
            iterations=args.iterations,
            seed=args.seed,
            workspace=Path(workspace),
            llm={
                "model": args.model,
                "base_url": args.base_url,
                "context_tokens": args.context,
                "max_tokens": args.max_tokens,
                "timeout_s": 600.0,
            },
            extend={"enabled": False},
        )
        model = make_chat_model(settings.llm)
        assert model is not None
        model.callbacks = [log]
        started = time.perf_counter()
        summary = run_loop(settings, resources=build_resources(settings, llm=model))
        seconds = time.perf_counter() - started
    experiments = max(1, len(summary.experiments))
    by_decision: dict[str, dict[str, float]] = {}
    for call in log.calls:
        row = by_decision.setdefault(
            call["decision"], {"calls": 0, "prompt_tokens": 0, "max_prompt": 0, "seconds": 0.0}
        )
        row["calls"] += 1
        row["prompt_tokens"] += call["prompt_tokens"]
        row["max_prompt"] = max(row["max_prompt"], call["prompt_tokens"])
        row["seconds"] += call["seconds"]
    total_prompt = sum(c["prompt_tokens"] for c in log.calls)
    result = {
        "world": args.world,
        "model": args.model,
        "context": args.context,
        "experiments": len(summary.experiments),
        "calls": len(log.calls),
        "calls_per_experiment": round(len(log.calls) / experiments, 2),
        "prompt_tokens": total_prompt,
        "prompt_tokens_per_experiment": round(total_prompt / experiments),
        "largest_prompt": max((c["prompt_tokens"] for c in log.calls), default=0),
        "run_seconds": round(seconds, 1),
        "by_decision": by_decision,
        "calls_log": log.calls,
    }
    print(f"{'decision':<16}{'calls':>7}{'prompt tok':>12}{'max prompt':>12}{'seconds':>10}")
    for name, row in sorted(by_decision.items()):
        print(
            f"{name:<16}{row['calls']:>7}{row['prompt_tokens']:>12,}"
            f"{row['max_prompt']:>12,}{row['seconds']:>10.1f}"
        )
    print(
        f"{len(summary.experiments)} experiments: {result['calls_per_experiment']} calls and "
        f"{result['prompt_tokens_per_experiment']:,} prompt tokens per experiment; largest "
        f"prompt {result['largest_prompt']:,} of a {args.context:,} context; {seconds:.0f} s"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"llm-calls-{args.world}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
