"""Where each setting came from: defaults, the settings file, ``AGENTX_*`` variables, or flags.

Why a module of its own: pydantic-settings merges its sources and forgets them, but an
operator needs to know which of four places set a bad value (``AGENTX_ITERATIONS=abc``
must be blamed on the variable, not on "iterations"), which ``AGENTX_*`` variables are
typos that nothing reads, and, in ``agentx config``, where every effective value came
from. The functions here read the same sources ``Settings`` reads, without validating.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ENV_PREFIX = "AGENTX_"
NESTED = "__"
#: Variables that other parts of AgentX read (not run settings), so not typos.
OTHER_VARIABLES = frozenset(
    {"AGENTX_SETTINGS_FILE", "AGENTX_EMBED_THREADS", "AGENTX_PYTEST_REPORT"}
)
#: Prefixes owned by other settings models (``agentx serve``'s ``ServeSettings``).
OTHER_PREFIXES = ("AGENTX_SERVE_",)
DEFAULT = "default"


def _nested_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    annotation = model.model_fields[field].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``AGENTX_*`` variables that are run settings, by dotted key (``llm.model``)."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_VARIABLES:
            continue
        if upper.startswith(OTHER_PREFIXES):
            continue
        dotted = upper[len(ENV_PREFIX) :].lower().replace(NESTED, ".")
        found[dotted] = name
    return found


def unknown_env_variables(
    model: type[BaseModel], environ: Mapping[str, str] | None = None
) -> list[str]:
    """One line per ``AGENTX_*`` variable no setting reads, with the closest real name.

    A nested variable must name a field of the nested model (``AGENTX_LLM__MODEL``);
    a list-valued field (stages, guardrails) is set whole, as JSON.
    """
    problems = []
    for dotted, name in sorted(env_settings(environ).items()):
        head, _, rest = dotted.partition(".")
        known = set(model.model_fields)
        if head in known:
            nested = _nested_model(model, head)
            if not rest or (nested is not None and rest in nested.model_fields):
                continue
            if nested is None:
                problems.append(f"{name} is not read: {head} has no parts; set {head} whole")
                continue
            choices = [
                f"{ENV_PREFIX}{head.upper()}{NESTED}{f.upper()}" for f in nested.model_fields
            ]
        else:
            choices = [f"{ENV_PREFIX}{f.upper()}" for f in known]
        close = difflib.get_close_matches(name.upper(), choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"unknown environment variable {name}{hint}")
    return problems


def file_settings(settings_file: Path | None) -> dict[str, Any]:
    """The settings file's values by dotted key (tables flattened one level, as settings are)."""
    if settings_file is None or not Path(settings_file).is_file():
        return {}
    try:
        data = tomllib.loads(Path(settings_file).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # Settings reports the unreadable file itself
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{key}.{sub}"] = inner
        else:
            flat[key] = value
    return flat


class Origins:
    """Which source gave each setting, highest priority first: flag, environment, file.

    Args:
        overrides: the explicit keyword values (the CLI's flags), non-None only.
        settings_file: the TOML file in use, if any.
        override_label: how an explicit value is named in messages (``flag`` for the CLI).
    """

    def __init__(
        self,
        overrides: Mapping[str, Any],
        settings_file: Path | None,
        override_label: str = "argument",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._overrides = {key for key, value in overrides.items() if value is not None}
        self._label = override_label
        self._env = env_settings(environ)
        self._file = file_settings(settings_file)
        self._file_name = str(settings_file) if settings_file else ""

    def of(self, dotted: str) -> str:
        """The source of ``dotted`` (``llm.model``, ``stages.0.days`` or ``seed``)."""
        parts = dotted.split(".")
        head = parts[0]
        if head in self._overrides:
            flag = "--" + head.replace("_", "-")
            return f"{self._label} {flag}" if self._label == "flag" else f"{self._label} {head}"
        for candidate in (".".join(parts[:2]), head):
            if candidate in self._env:
                return f"env {self._env[candidate]}"
        for candidate in (".".join(parts[:2]), head):
            if candidate in self._file:
                return f"file {self._file_name}"
        return DEFAULT

    def explicit(self, dotted: str) -> bool:
        """True when a flag, a variable or the file set ``dotted`` (not a default)."""
        return self.of(dotted) != DEFAULT


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys; lists (stages, guardrails) stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat
