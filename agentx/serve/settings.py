"""Settings of the LangServe endpoint (``AGENTX_SERVE_*``), apart from run settings.

They live here rather than in :mod:`agentx.settings` because they describe how the
loop is *reached*, not how it runs: the same run settings serve the CLI, Studio and
the endpoint. The one safety rule is enforced at load time: a server reachable from
other machines must have an API key.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentx.settings import SettingsError

API_KEY_HEADER = "X-API-Key"


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname may resolve anywhere: treat it as public


class ServeSettings(BaseSettings):
    """Where ``agentx serve`` listens and which key it asks for."""

    model_config = SettingsConfigDict(env_prefix="AGENTX_SERVE_", extra="forbid")

    host: str = Field("127.0.0.1", min_length=1, description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    api_key: SecretStr | None = Field(
        None, description=f"Required in the {API_KEY_HEADER} header when set."
    )
    log_level: str = Field("info", description="uvicorn log level.")

    @model_validator(mode="after")
    def _public_needs_key(self) -> ServeSettings:
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key is empty; set AGENTX_SERVE_API_KEY to a secret or unset it")
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"refusing to bind {self.host} (beyond localhost) without an API key; "
                "set AGENTX_SERVE_API_KEY or bind 127.0.0.1"
            )
        return self


def load_serve_settings(**overrides: Any) -> ServeSettings:
    """Build :class:`ServeSettings` from the environment and non-None ``overrides``.

    Raises:
        SettingsError: one line naming the bad field and how to fix it.
    """
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return ServeSettings(**clean)
    except ValidationError as error:
        parts = []
        for item in error.errors():
            field = ".".join(str(p) for p in item["loc"])
            message = str(item["msg"]).removeprefix("Value error, ")
            parts.append(f"{field}: {message}" if field else message)
        raise SettingsError("invalid serve setting " + "; ".join(parts)) from None
