"""Agents' harness files: versioned prompts and policy parameters under ``prompts/``.

Each agent has ``prompts/<agent>/harness.yaml`` (numeric policy parameters, rules,
output contract, version) and prompt templates (``*.md``). Harness evolution edits
these files; the agents read them at every run, never from constants in code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class HarnessError(ValueError):
    """A harness file is missing or malformed."""


def default_prompts_dir() -> Path:
    """``prompts/`` of this checkout."""
    return Path(__file__).resolve().parents[1] / "prompts"


def load_harness(agent: str, prompts_dir: Path | None = None) -> dict[str, Any]:
    """The parsed ``harness.yaml`` of ``agent``."""
    path = (prompts_dir or default_prompts_dir()) / agent / "harness.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise HarnessError(f"harness file missing: {path} ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise HarnessError(f"harness file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"harness file {path} must be a mapping")
    return data


def load_prompt(agent: str, name: str, prompts_dir: Path | None = None) -> str:
    """The text of prompt template ``prompts/<agent>/<name>.md``."""
    path = (prompts_dir or default_prompts_dir()) / agent / f"{name}.md"
    try:
        return path.read_text()
    except OSError as error:
        raise HarnessError(f"prompt missing: {path} ({error.strerror})") from None
