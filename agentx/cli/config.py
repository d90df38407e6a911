"""``agentx config``: the effective settings and where each one came from.

Why: settings merge four sources (defaults, a TOML file, ``AGENTX_*`` variables, flags);
an operator debugging "why is this run on the wrong world" needs to see the winner and
its source in one place, with secrets masked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.table import Table

from agentx.cli.common import USER_ERRORS, fail, out


def _shown(value: Any) -> Any:
    """JSON-friendly value; secrets stay masked."""
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def _flat_settings(settings: Any) -> dict[str, Any]:
    """Dotted keys of the settings object; nested models expanded, lists kept whole."""
    flat: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(type(value), "model_fields"):
            for sub in type(value).model_fields:
                flat[f"{name}.{sub}"] = getattr(value, sub)
        elif isinstance(value, list):
            flat[name] = [getattr(v, "model_dump", lambda v=v: v)() for v in value]
        else:
            flat[name] = value
    return flat


def _origin(key: str, origin: str, settings: Any) -> str:
    """``origin``, except for stages the world chose (its declared rollout shares): an
    operator wondering why the canary is 2.5% should see the world, not "default"."""
    from agentx.sandbox.world import declared_rollout_shares

    chose_stages = key == "stages" and "stages" not in settings.model_fields_set
    if chose_stages and declared_rollout_shares(settings.world) is not None:
        return f"world {settings.world}"
    return origin


def config(
    workspace: Annotated[Path | None, typer.Option(help="Workspace to show settings for.")] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="TOML settings.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the effective settings and where each came from (default, file, env, flag)."""
    from agentx.settings import load_settings, setting_origins

    try:
        settings = load_settings(settings_file, override_label="flag", workspace=workspace)
    except USER_ERRORS as error:
        fail(error)
    origins = setting_origins(settings_file, "flag", workspace=workspace)
    rows = [
        {"key": key, "value": _shown(value), "origin": _origin(key, origins.of(key), settings)}
        for key, value in _flat_settings(settings).items()
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("setting", "value", "from")
    for row in rows:
        value = row["value"]
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        table.add_row(row["key"], text, row["origin"])
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``config`` to the root command."""
    app.command("config")(config)
