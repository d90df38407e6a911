"""The LangServe endpoint: ``agentx serve`` or ``create_app()`` in your own ASGI server."""

from agentx.serve.app import LOOP_PATH, create_app
from agentx.serve.settings import API_KEY_HEADER, ServeSettings, load_serve_settings

__all__ = ["API_KEY_HEADER", "LOOP_PATH", "ServeSettings", "create_app", "load_serve_settings"]
