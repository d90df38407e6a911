"""Agents' harness files: versioned prompts and policy parameters under ``prompts/``.

Each agent has ``prompts/<agent>/harness.yaml`` (numeric policy parameters, rules,
output contract, version) and prompt templates (``*.md``). Harness evolution edits
these files; the agents read them at every run, never from constants in code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class HarnessError(ValueError):
    """A harness file is missing or malformed."""


def default_prompts_dir() -> Path:
    """``prompts/`` of this checkout."""
    return Path(__file__).resolve().parents[1] / "prompts"


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; HarnessError says which file and why not."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise HarnessError(f"{what} missing: {path} ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise HarnessError(f"{what} {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{what} {path} must be a mapping")
    return data


def describe_validation(error: ValidationError) -> str:
    """Every invalid field of a harness-like file, as ``a.b: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or '(root)'}: {item['msg']}"
        for item in error.errors()
    )


def load_harness(agent: str, prompts_dir: Path | None = None) -> dict[str, Any]:
    """The parsed ``harness.yaml`` of ``agent``."""
    return load_mapping(
        (prompts_dir or default_prompts_dir()) / agent / "harness.yaml", "harness file"
    )


def load_prompt(agent: str, name: str, prompts_dir: Path | None = None) -> str:
    """The text of prompt template ``prompts/<agent>/<name>.md``."""
    path = (prompts_dir or default_prompts_dir()) / agent / f"{name}.md"
    try:
        return path.read_text()
    except OSError as error:
        raise HarnessError(f"prompt missing: {path} ({error.strerror})") from None
