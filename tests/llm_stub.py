"""Loopback stubs of model servers (the OpenAI chat and embeddings APIs): JSON in, JSON out.

Each test's stub says only what it answers (:meth:`JsonHandler.answer`); reading the
request, writing the reply, staying quiet and stopping the server are here, once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A POST handler whose body and reply are JSON; subclasses implement :meth:`answer`."""

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON reply to a POST of ``body`` to ``path``."""
        raise NotImplementedError

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        status, reply = self.answer(self.path, body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@contextmanager
def stub_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """``handler`` served on a free 127.0.0.1 port in a thread, stopped when the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def base_url(server: ThreadingHTTPServer) -> str:
    """The OpenAI-style base URL (``.../v1``) of a stub server."""
    return f"http://127.0.0.1:{server.server_address[1]}/v1"
