"""The served loop with human gates: start a run, or answer the gate a run waits at.

Why a wrapper around the compiled graph: LangServe passes a request's input straight to
the runnable, so a graph alone can neither take ``Command(resume=...)`` nor say that it
stopped at an interrupt (``invoke`` simply returned after 1.3 s looking finished). This
runnable takes the request (``answer`` empty: start; a ``HumanResponse``: resume the
caller's ``thread_id``), runs the graph as a child run (so ``stream_events`` still shows
every node), and returns the run's output plus ``status`` and ``waiting_at``. It declares
the run-context fields as configurable, so a request can choose its run's world, seed and
budget (:mod:`agentx.serve.context`).
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import (
    ConfigurableFieldSpec,
    Runnable,
    RunnableConfig,
    RunnableLambda,
)
from langchain_core.runnables.utils import get_unique_config_specs
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field, create_model

from agentx.graph.gates import GATES, PendingGate, parse_answer
from agentx.graph.state import LoopOutput
from agentx.runner import waiting_gate
from agentx.serve.context import context_specs

FINISHED = "finished"


def served_output_model(graph: CompiledStateGraph) -> type[BaseModel]:
    """The output schema: the loop's own output fields plus ``status`` and ``waiting_at``
    (a model, not a TypedDict, so ``/output_schema`` lists its properties at the top)."""
    return create_model(
        "AgentxServedOutput",
        __base__=graph.get_output_schema(),
        status=(str, Field(FINISHED, description="finished, or waiting at gate NAME")),
        waiting_at=(
            dict[str, Any],
            Field(default_factory=dict, description="The gate waited at (empty when none)."),
        ),
    )


def status_line(waiting: PendingGate | None) -> str:
    """``finished`` or ``waiting at gate NAME`` (what a caller checks)."""
    return f"waiting at gate {waiting.gate}" if waiting else FINISHED


def _output(values: dict[str, Any], waiting: PendingGate | None) -> dict[str, Any]:
    result = {key: values[key] for key in LoopOutput.__annotations__ if key in values}
    result["status"] = status_line(waiting)
    result["waiting_at"] = waiting.model_dump() if waiting else {}
    return result


def _graph_input(
    request: dict[str, Any], waiting: PendingGate | None, config: RunnableConfig
) -> Any:
    answer = request.get("answer") or None
    if answer is None:  # a budget in the run's context wins over the input's default
        iterations = (config.get("configurable") or {}).get("iterations")
        return {
            "goal_text": request.get("goal_text"),
            "iterations": iterations or request.get("iterations"),
        }
    if waiting is None:  # the request check refuses this first; kept for direct callers
        raise ValueError("the run is not waiting at a gate; send no answer to start one")
    parsed = parse_answer(GATES[waiting.gate], answer)
    return Command(resume=parsed.model_dump(exclude_none=True))


class ServedLoop(RunnableLambda):
    """A runnable lambda whose configurable fields include the run context's."""

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs([*super().config_specs, *context_specs()])


def gated_runnable(graph: CompiledStateGraph) -> Runnable:
    """The loop as a runnable taking the served request (see module docstring)."""

    async def arun(request: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        thread = str(config.get("configurable", {}).get("thread_id"))
        waiting = waiting_gate(thread, await graph.aget_state(config))
        await graph.ainvoke(_graph_input(request, waiting, config), config)
        snapshot = await graph.aget_state(config)
        return _output(dict(snapshot.values), waiting_gate(thread, snapshot))

    def run(request: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        thread = str(config.get("configurable", {}).get("thread_id"))
        waiting = waiting_gate(thread, graph.get_state(config))
        graph.invoke(_graph_input(request, waiting, config), config)
        snapshot = graph.get_state(config)
        return _output(dict(snapshot.values), waiting_gate(thread, snapshot))

    return ServedLoop(run, afunc=arun, name="agentx_loop")
