"""The FastAPI app: the loop as a LangServe runnable under ``/loop``.

Each request is one whole run of the loop (intake to the last experiment) on the
workspace the run settings name; the graph is compiled without a checkpointer, so a
request is self-contained and the run id is the request's ``configurable.thread_id``
(a fresh ``api-...`` id when the caller names none). Knowledge cards land in the
workspace's memory like those of CLI runs, so later runs — from any interface —
retrieve them.
"""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.runnables import Runnable
from langserve import add_routes

from agentx.graph.builder import build_graph
from agentx.graph.resources import Resources, build_resources
from agentx.serve.middleware import ApiKeyMiddleware, RunGate
from agentx.serve.requests import make_request_model, new_thread_id
from agentx.serve.settings import API_KEY_HEADER, ServeSettings, load_serve_settings
from agentx.settings import Settings, load_settings

LOOP_PATH = "/loop"
RECURSION_LIMIT = 10_000


def with_thread_id(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """Give every run an id of its own unless the caller chose one."""
    configurable = dict(config.get("configurable") or {})
    configurable.setdefault("thread_id", new_thread_id())
    return {**config, "configurable": configurable}


def _iterations_cap() -> int:
    """The same upper bound the run settings put on ``iterations``."""
    metadata = Settings.model_fields["iterations"].metadata
    return next(int(m.le) for m in metadata if getattr(m, "le", None) is not None)


def loop_runnable(resources: Resources) -> tuple[Runnable, type]:
    """The compiled loop with a validated input type, sequential batches and no step cap."""
    settings = resources.settings
    request_model = make_request_model(
        [m.name for m in resources.target.describe().metrics],
        [g.metric for g in settings.guardrails if g.tier != "observe"],
        default_goal=settings.goal,
        default_iterations=settings.iterations,
        max_iterations=_iterations_cap(),
    )
    graph = build_graph(settings, checkpointer=None, resources=resources)
    runnable = graph.with_types(input_type=request_model).with_config(
        recursion_limit=RECURSION_LIMIT, max_concurrency=1
    )
    return runnable, request_model


def create_app(
    settings: Settings | None = None,
    serve: ServeSettings | None = None,
    resources: Resources | None = None,
) -> FastAPI:
    """Build the app (sandbox, memory and graph are opened here, once).

    Args:
        settings: run settings (workspace, world, LLM...); from the environment if None.
        serve: host/port/API key; from ``AGENTX_SERVE_*`` if None.
        resources: prebuilt resources, e.g. your own target.
    """
    settings = settings or load_settings()
    serve = serve or load_serve_settings()
    resources = resources or build_resources(settings)
    runnable, request_model = loop_runnable(resources)
    app = FastAPI(
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
            per_req_config_modifier=with_thread_id,
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
            ],
        )
    app.add_middleware(RunGate, prefix=LOOP_PATH, request_model=request_model)
    if serve.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=serve.api_key.get_secret_value())
    return app
