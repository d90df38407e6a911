"""``agentx serve``: the loop as a LangServe endpoint on uvicorn."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer

from agentx.cli.common import USER_ERRORS, CommandError, err, fail
from agentx.cli.progress import working
from agentx.workspace.lock import WorkspaceLock


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line now rather than with uvicorn's log after the graph is built."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {host} is in use; pick another with --port"
                ) from None
            raise CommandError(f"cannot bind {host}:{port}: {error.strerror}") from None


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind [env AGENTX_SERVE_HOST; 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port [env AGENTX_SERVE_PORT; 8000].")
    ] = None,
    workspace: Annotated[Path | None, typer.Option(help="Where runs and memory live.")] = None,
    world: Annotated[str | None, typer.Option(help="Shipped world name or world file.")] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Experiments per request when the input names none.")
    ] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
) -> None:
    """Serve the loop over HTTP with LangServe (invoke, batch, stream, stream_events, playground).

    Each request runs the whole loop on the workspace; requests are served one at a
    time. Set AGENTX_SERVE_API_KEY to require the X-API-Key header; binding anything
    but localhost is refused without a key.
    """
    from agentx.serve.settings import load_serve_settings
    from agentx.settings import load_settings

    try:
        serve_settings = load_serve_settings(host=host, port=port)
        settings = load_settings(
            settings_file, workspace=workspace, world=world, iterations=iterations
        )
        _check_port_free(serve_settings.host, serve_settings.port)
        import uvicorn

        from agentx.graph.checkpoint import checkpointer_session
        from agentx.serve.app import LOOP_PATH, create_app

        lock = WorkspaceLock(settings.workspace, command="agentx serve")
        settings.workspace.mkdir(parents=True, exist_ok=True)
        lock.acquire()  # held until the server stops: one writer per workspace
        with checkpointer_session(settings):  # a dead checkpoint server: one line, no server
            pass
        with working(err, "building the sandbox, memory and graph"):
            app = create_app(settings, serve_settings, hold_lock=False)
    except USER_ERRORS as error:
        fail(error)
    except OSError as error:
        fail(f"cannot use workspace {settings.workspace}: {error.strerror or error}")
    shown = f"http://{serve_settings.host}:{serve_settings.port}"
    err.print(
        f"AgentX serving world {settings.world} (workspace {settings.workspace}) at "
        f"{shown}{LOOP_PATH}/ — playground {shown}{LOOP_PATH}/playground/"
        + (" — API key required" if serve_settings.api_key else ""),
        highlight=False,
    )
    try:
        uvicorn.run(
            app,
            host=serve_settings.host,
            port=serve_settings.port,
            log_level=serve_settings.log_level,
        )
    finally:
        lock.release()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root command."""
    app.command("serve")(serve)
