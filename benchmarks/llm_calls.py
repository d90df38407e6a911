"""Model calls and tokens per experiment of an LLM-mode run against a real server.

Usage: python benchmarks/llm_calls.py --base-url http://127.0.0.1:8080/v1 --model NAME
           [--world default] [--iterations 1] [--context 16384] [--max-tokens 2048]
           [--seed 0] [--out benchmarks/results]

Runs the loop in LLM mode against an OpenAI-compatible server with the default LLM
settings (except the server, the model and its context) and tallies every chat request
with :func:`agentx.llm.usage.tally_usage`: requests per decision (the answer schema:
GoalDraft, IdeaBatch, EditPlan, ...), the prompt and completion tokens the server
reported, and the largest prompt, which must fit ``--context``. Prints a table and writes
``llm-calls-<world>.json`` under ``--out``. docs/llm.md quotes the measured run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from agentx.graph.resources import build_resources
from agentx.llm.usage import tally_usage
from agentx.runner import run_loop
from agentx.settings import load_settings


def main() -> None:
    """Run the loop in LLM mode and print the calls and tokens it took."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--world", default="default")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--context", type=int, default=16_384)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
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
                "timeout_s": args.timeout,
            },
            evolution={"enabled": False},
            extend={"enabled": False},
        )
        started = time.perf_counter()
        with tally_usage() as tally:
            summary = run_loop(settings, resources=build_resources(settings))
        seconds = time.perf_counter() - started
    experiments = len(summary.experiments)
    total = tally.total()
    rows = {name: usage.model_dump() for name, usage in tally.by_decision().items()}
    result = {
        "world": args.world,
        "model": args.model,
        "base_url": args.base_url,
        "context": args.context,
        "max_tokens": args.max_tokens,
        "experiments": experiments,
        "outcomes": [line.status for line in summary.experiments],
        "total": total.model_dump(),
        "per_experiment": total.per(experiments) if experiments else None,
        "by_decision": rows,
        "run_seconds": round(seconds, 1),
    }
    header = (
        f"{'decision':<14}{'calls':>7}{'failed':>8}{'prompt':>10}{'completion':>12}{'largest':>10}"
    )
    lines = [header]
    for name, usage in [*tally.by_decision().items(), ("all", total)]:
        lines.append(
            f"{name:<14}{usage.calls:>7}{usage.failed:>8}{usage.prompt_tokens:>10,}"
            f"{usage.completion_tokens:>12,}{usage.largest_prompt:>10,}"
        )
    if experiments:
        per = total.per(experiments)
        lines.append(
            f"per experiment ({experiments}): {per['calls']:.1f} calls, "
            f"{per['prompt_tokens']:,.0f} prompt and {per['completion_tokens']:,.0f} "
            f"completion tokens (goal intake included); largest prompt "
            f"{total.largest_prompt:,} of a {args.context:,} context; {seconds:.0f} s"
        )
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"llm-calls-{args.world}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
