"""ASGI middleware of the endpoint: the API-key gate and the run gate.

Both are plain ASGI (not FastAPI dependencies) because they must cover what a
dependency cannot: the key gate sets a cookie so the playground, which a browser
loads without custom headers, stays usable; the run gate holds its lock until a
streamed response has been sent in full, and rewrites ``/batch`` bodies.

Both match the path the app routes on (:func:`route_path`), not the raw ``path``: behind a
proxy (``uvicorn --root-path``) or mounted in another app, ``path`` starts with the root
path, and a gate that compared raw paths would let every run through unchecked.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Collection
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel

from agentx.serve.requests import (
    BadRequest,
    check_batch_body,
    check_ids_unused,
    check_run_body,
)
from agentx.serve.settings import API_KEY_HEADER
from agentx.workspace.records import WorkspaceRecordError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "agentx_api_key"
OPEN_PATHS = frozenset({"/healthz"})
RUN_ENDPOINTS = ("/invoke", "/batch", "/stream", "/stream_log", "/stream_events")
CONFIG_HASH = "/c/"
#: The config-hash reads the playground makes when a configurable field is edited; the
#: schemas do not depend on the config, and a read runs nothing.
CONFIG_HASH_READS = frozenset({"input_schema", "output_schema", "config_schema"})
CONFIG_HASH_REFUSED = (
    "config-hash runs ({prefix}/c/{{config_hash}}/...) are not served; send the config "
    'in the request body instead: {{"input": ..., "config": {{"configurable": {{...}}}}}}'
)


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` without the ``root_path`` a proxy or a parent
    app put in front of it (what Starlette's router matches)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


async def send_error(send: Send, status: int, detail: str) -> None:
    """Answer with FastAPI's error shape: ``{"detail": "..."}``."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", API_KEY_HEADER.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Require the key in the ``X-API-Key`` header (or the playground's cookie).

    Opening ``.../playground/?api_key=KEY`` once in a browser sets an HttpOnly cookie
    so the playground's own requests are let in; every other client sends the header.
    """

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._key = api_key.encode()

    def _valid(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        cookie = SimpleCookie(headers.get("cookie", ""))
        if self._valid(headers.get(API_KEY_HEADER.lower())) or (
            COOKIE in cookie and self._valid(cookie[COOKIE].value)
        ):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        from_query = (query.get("api_key") or [None])[0]
        if "/playground" in route_path(scope) and self._valid(from_query):
            await self.app(scope, receive, self._setting_cookie(send, scope))
            return
        detail = (
            f"wrong API key in the {API_KEY_HEADER} header"
            if API_KEY_HEADER.lower() in headers
            else f"missing API key: send it in the {API_KEY_HEADER} header"
        )
        await send_error(send, 401, detail)

    def _setting_cookie(self, send: Send, scope: Scope) -> Send:
        root = scope.get("root_path", "") or "/"
        value = f"{COOKIE}={self._key.decode()}; Path={root}; HttpOnly; SameSite=Strict"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message["headers"], (b"set-cookie", value.encode())]
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


class RunGate:
    """One run at a time, and run bodies checked before LangServe sees them: ``/batch``
    bodies, and every run's context in ``config.configurable`` (LangServe would refuse a
    wrong type with its own list of errors, and run a bad value into a traceback).

    Runs share the workspace's sandbox repository (a kept change is merged into it),
    so two concurrent runs would race on git and measure against a moving baseline.
    Requests wait their turn; the lock is held until the response is fully sent.

    Every run route passes here: the plain ones, and LangServe's config-hash forms
    (``{prefix}/c/{hash}/invoke`` and so on), which are refused in one line, since their
    config would bypass the body checks. Only the config-hash schema reads pass (the
    playground fetches them when a configurable field is edited; they run nothing). A
    batch's run ids are checked against the workspace's runs under the lock, before any of
    them is registered.
    """

    def __init__(
        self,
        app: ASGIApp,
        prefix: str,
        request_model: type[BaseModel],
        check_context: Callable[[Any, Any], Any] | None = None,
        registered: Callable[[], Collection[str]] | None = None,
    ):
        self.app = app
        self._prefix = prefix.rstrip("/")
        self._model = request_model
        self._check = check_context or (lambda _configurable, _iterations: None)
        self._registered = registered or (lambda: ())
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        endpoint = path[len(self._prefix) :] if path.startswith(self._prefix + "/") else None
        if endpoint is not None and endpoint.startswith(CONFIG_HASH):
            if scope["method"] != "GET" or endpoint.rsplit("/", 1)[-1] not in CONFIG_HASH_READS:
                await send_error(send, 404, CONFIG_HASH_REFUSED.format(prefix=self._prefix))
                return
            await self.app(scope, receive, send)
            return
        if endpoint is None or scope["method"] != "POST" or endpoint not in RUN_ENDPOINTS:
            await self.app(scope, receive, send)
            return
        payload = await _read_body(receive)
        try:
            body = json.loads(payload or b"null")
        except json.JSONDecodeError as error:
            if endpoint == "/batch":
                await send_error(send, 400, f"the body is not valid JSON: {error}")
                return
            body = None  # LangServe answers it
        checked: dict[str, Any] | None = None
        try:
            if endpoint == "/batch":
                checked = check_batch_body(body, self._model, self._check)
                payload = json.dumps(checked).encode()
            else:
                check_run_body(body, self._check)
        except BadRequest as error:
            await send_error(send, error.status_code, str(error))
            return
        receive = _replay(payload, receive)
        scope = _with_content_length(scope, len(payload))
        async with self._lock:  # runs register under the lock: the check below holds
            if checked is not None:
                try:
                    check_ids_unused(checked["config"], self._registered())
                except BadRequest as error:
                    await send_error(send, error.status_code, str(error))
                    return
                except WorkspaceRecordError as error:  # the workspace's fault, not the caller's
                    await send_error(send, 500, str(error))
                    return
            await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the (rewritten) body over once, then pass on the client's disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


def _with_content_length(scope: Scope, length: int) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}
