"""The FastAPI app: the loop as a LangServe runnable under ``/loop``.

Each request is one whole run of the loop (intake to the last experiment, or to the
first human gate when not autonomous: the output's ``status`` then says ``waiting at
gate X`` and ``waiting_at`` shows it; a request with ``answer`` and the same
``thread_id`` continues it) on the workspace the run settings name. The run id is the
request's ``configurable.thread_id`` (a fresh ``api-...`` id when the caller names
none); its ``configurable`` may also choose the run's world, seed, budget and policy
values (:mod:`agentx.serve.context`). The run is registered in the workspace's
``runs.json`` with its settings (as ``agentx run`` records them) and checkpointed like a
CLI run (unless ``checkpointer = "none"``), so ``agentx status``, ``agentx report`` and
``agentx run --resume`` read served runs too. Knowledge cards land in the workspace's
memory, so later runs — from any interface — retrieve them.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request
from langchain_core.runnables import Runnable
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send
from langserve import add_routes
from langserve.serialization import WellKnownLCSerializer
from pydantic import BaseModel, ValidationError

from agentx.graph.builder import build_graph
from agentx.graph.checkpoint import open_async_checkpointer
from agentx.graph.context import CONTEXT_KEY, effective_settings, run_sandbox
from agentx.graph.gates import GATES, GateAnswerError, parse_answer
from agentx.graph.resources import Resources, build_resources
from agentx.runner import RunError, RunIdTaken, register_run, waiting_gate
from agentx.serve.context import ContextCheck, context_conflicts, make_context_check
from agentx.serve.gated import gated_runnable, served_output_model
from agentx.serve.middleware import ApiKeyMiddleware, RunGate
from agentx.serve.requests import (
    BadRequest,
    describe_validation,
    make_request_model,
    new_thread_id,
)
from agentx.serve.settings import API_KEY_HEADER, ServeSettings, load_serve_settings
from agentx.settings import Settings, load_settings
from agentx.workspace.lock import WorkspaceLock
from agentx.workspace.records import (
    WorkspaceRecordError,
    load_run_record,
    read_run_ids,
    save_run_settings,
)

LOOP_PATH = "/loop"
RECURSION_LIMIT = 10_000


class LoopSerializer(WellKnownLCSerializer):
    """LangServe's serializer, plus LangGraph's ``Send``: the scheduler fans a wave of
    experiments out with ``Send`` objects, which ``stream_events`` reports as the routing
    step's output and orjson cannot encode on its own."""

    def dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_encode)


def _encode(obj: Any) -> Any:
    if isinstance(obj, Send):
        return {"send": obj.node, "arg": obj.arg}
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def run_config_modifier(
    settings: Settings,
    request_model: type[BaseModel],
    graph: CompiledStateGraph | None = None,
    check_context: ContextCheck | None = None,
):
    """Per request: validate the input and the run's context first, then give the run its
    id, record its settings and register it.

    The order matters: a refused request (422) must leave no trace in ``runs.json``
    (LangServe calls this before it validates the input, so the input is checked here).
    The run id is the caller's ``configurable.thread_id`` (a declared configurable field, so
    LangServe passes it on; :mod:`agentx.serve.context`) or a fresh ``api-...`` id; an id
    already used in the workspace is refused (409), since its checkpoints would mix with
    the new run's (a batch's ids were all checked by the run gate before its first run is
    registered here). A request with an ``answer`` continues the run its ``thread_id``
    names, which must be waiting at a gate that takes the answer; context values sent
    along must be the run's own (409 otherwise: the run keeps the context it started with).
    """
    check = check_context or make_context_check(settings)

    async def with_thread_id(config: dict[str, Any], request: Request) -> dict[str, Any]:
        # unset context fields arrive as None (LangServe fills the declared ones)
        configurable = {
            k: v for k, v in (config.get("configurable") or {}).items() if v is not None
        }
        body = await request.json() if request is not None else {}
        answer, checked, explicit = None, None, None
        raw_input = _request_input(body, configurable.get("thread_id"))
        if raw_input is not None:
            try:
                checked = request_model.model_validate(raw_input)
            except ValidationError as error:
                where = "input." if "input" in body else "inputs[]."
                raise HTTPException(
                    status_code=422, detail="; ".join(describe_validation(error, where))
                ) from None
            answer = getattr(checked, "answer", None) or None
            explicit = raw_input.get("iterations") if isinstance(raw_input, dict) else None
        if answer is not None:
            await _check_answer(settings, graph, configurable, answer)
            return {**config, "configurable": configurable}
        try:  # the run gate checked it already; this covers callers that bypass it
            context = check(configurable, explicit)
        except BadRequest as error:
            raise HTTPException(status_code=error.status_code, detail=str(error)) from None
        configurable.setdefault("thread_id", new_thread_id())
        run_id = str(configurable["thread_id"])
        run_settings = _run_settings(settings, context, checked)
        try:
            register_run(settings, run_id)
        except RunIdTaken as error:
            raise HTTPException(
                status_code=409, detail=f"{error}; omit configurable.thread_id for a fresh one"
            ) from None
        except RunError as error:  # an unreadable runs.json: the workspace's fault, one line
            raise HTTPException(status_code=500, detail=str(error)) from None
        save_run_settings(
            settings.workspace, run_id, run_settings, run_sandbox(settings, run_settings)
        )
        return {**config, "configurable": configurable}

    return with_thread_id


def _request_input(body: Any, thread_id: Any) -> Any:
    """The loop input of this run: an invoke or stream body's ``input``, or the batch input
    whose config names ``thread_id`` (the run gate gave each batch input its own)."""
    if not isinstance(body, dict):
        return None
    if "input" in body:
        return body["input"]
    inputs, configs = body.get("inputs"), body.get("config")
    if thread_id is None or not isinstance(inputs, list) or not isinstance(configs, list):
        return None
    for request_input, item in zip(inputs, configs, strict=False):
        if (
            isinstance(item, dict)
            and (item.get("configurable") or {}).get("thread_id") == thread_id
        ):
            return request_input
    return None


def _run_settings(settings: Settings, context: Any, checked: BaseModel | None) -> Settings:
    """The settings a served run runs with: the server's, its context's values, and the
    goal and budget of its input (what ``agentx run`` records for a CLI run)."""
    run_settings = effective_settings(settings, context)
    update: dict[str, Any] = {}
    if checked is not None:
        update["goal"] = getattr(checked, "goal_text", settings.goal)
        update["iterations"] = getattr(checked, "iterations", settings.iterations)
    if context is not None and context.iterations is not None:
        update["iterations"] = context.iterations
    return run_settings.model_copy(update=update)


async def _check_answer(
    settings: Settings,
    graph: CompiledStateGraph | None,
    configurable: dict[str, Any],
    answer: Any,
) -> None:
    """Refuse (4xx, nothing resumed) an answer without a paused run, with a context other
    than the run's own (the run continues with its own settings; a different world or
    seed sent along would otherwise be silently ignored), or that its gate rejects."""
    thread_id = configurable.get("thread_id")
    if not thread_id:
        raise HTTPException(
            status_code=422, detail="an answer needs the paused run's configurable.thread_id"
        )
    runs = _registered(settings)
    if str(thread_id) not in runs or graph is None or graph.checkpointer is None:
        raise HTTPException(status_code=404, detail=f"no run {thread_id!r} in this workspace")
    state = await graph.aget_state({"configurable": {"thread_id": str(thread_id)}})
    waiting = waiting_gate(str(thread_id), state)
    if waiting is None:
        raise HTTPException(
            status_code=409, detail=f"run {thread_id!r} is not waiting at a gate; nothing to answer"
        )
    record = load_run_record(settings.workspace, str(thread_id))
    stored = record.settings if record is not None else state.values.get(CONTEXT_KEY)
    conflicts = context_conflicts(configurable, stored)
    if conflicts:
        raise HTTPException(
            status_code=409,
            detail=f"run {thread_id!r} continues with its own settings: {'; '.join(conflicts)}; "
            "send the run's values or none",
        )
    try:
        parse_answer(GATES[waiting.gate], answer)
    except GateAnswerError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None


def _registered(settings: Settings) -> list[str]:
    """The workspace's run ids; an unreadable ``runs.json`` is the server's fault (500)
    with the one line that says which file and why, never a traceback."""
    try:
        return read_run_ids(settings.workspace)
    except WorkspaceRecordError as error:
        raise HTTPException(status_code=500, detail=str(error)) from None


def _iterations_cap() -> int:
    """The same upper bound the run settings put on ``iterations``."""
    metadata = Settings.model_fields["iterations"].metadata
    return next(int(m.le) for m in metadata if getattr(m, "le", None) is not None)


def loop_runnable(resources: Resources) -> tuple[Runnable, type, CompiledStateGraph]:
    """The compiled loop with a validated input type, sequential batches and no step cap
    (and the graph itself, whose checkpointer the app's lifespan opens)."""
    settings = resources.settings
    request_model = make_request_model(
        [m.name for m in resources.target.describe().metrics],
        [g.metric for g in settings.guardrails if g.tier != "observe"],
        default_goal=settings.goal,
        default_iterations=settings.iterations,
        max_iterations=_iterations_cap(),
    )
    # its resources serve the default world; a request's configurable may name another
    graph = build_graph(settings, checkpointer=None, resources=resources, any_world=True)
    runnable = (
        gated_runnable(graph)
        .with_types(input_type=request_model, output_type=served_output_model(graph))
        .with_config(recursion_limit=RECURSION_LIMIT, max_concurrency=1)
    )
    return runnable, request_model, graph


def create_app(
    settings: Settings | None = None,
    serve: ServeSettings | None = None,
    resources: Resources | None = None,
    hold_lock: bool = True,
) -> FastAPI:
    """Build the app (sandbox, memory and graph are opened here, once).

    Args:
        settings: run settings (workspace, world, LLM...); from the environment if None.
        serve: host/port/API key; from ``AGENTX_SERVE_*`` if None.
        resources: prebuilt resources, e.g. your own target.
        hold_lock: take the workspace lock for the server's life (its lifespan), so no
            CLI or embedded run writes the same workspace; ``agentx serve`` takes it
            itself before building the app, to refuse in one line.
    """
    settings = settings or load_settings()
    serve = serve or load_serve_settings()
    resources = resources or build_resources(settings)
    runnable, request_model, graph = loop_runnable(resources)
    check_context = make_context_check(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Hold the workspace and checkpoint served runs there, in the server's event loop."""
        with ExitStack() as held:
            if hold_lock:
                held.enter_context(WorkspaceLock(settings.workspace, command="agentx serve"))
            async with open_async_checkpointer(settings) as checkpointer:
                graph.checkpointer = checkpointer
                try:
                    yield
                finally:
                    graph.checkpointer = None

    app = FastAPI(
        lifespan=lifespan,
        title="AgentX",
        version="0.1.0",
        description=(
            "The AgentX loop (brainstorm → develop → evaluate → learn) as a LangServe "
            f"runnable at {LOOP_PATH}. Each request is a whole run."
            + (f" Send the API key in the {API_KEY_HEADER} header." if serve.api_key else "")
        ),
    )

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness probe (no key needed): the app is up and the graph is built."""
        return {"status": "ok", "world": resources.world_name}

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        add_routes(
            app,
            runnable,
            path=LOOP_PATH,
            per_req_config_modifier=run_config_modifier(
                settings, request_model, graph, check_context
            ),
            serializer=LoopSerializer(),
            enabled_endpoints=[
                "invoke",
                "batch",
                "stream",
                "stream_log",
                "stream_events",
                "input_schema",
                "output_schema",
                "config_schema",
                "playground",
                "config_hashes",  # the playground's schema reads; the run gate refuses runs
            ],
        )
    app.add_middleware(
        RunGate,
        prefix=LOOP_PATH,
        request_model=request_model,
        check_context=check_context,
        registered=lambda: read_run_ids(settings.workspace),
    )
    if serve.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=serve.api_key.get_secret_value())
    return app
