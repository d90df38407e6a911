"""Load the technique catalog from ``knowledge/research``.

Each technique is a markdown file with YAML front matter (mechanism summary, the
metrics it moves, prior effect and risk, parameters, and a code recipe of strict
search/replace edits with ``{{param}}`` placeholders). Files are read with
langchain-community's document loaders so the same notes feed LLM prompts as documents.
"""

from __future__ import annotations

import itertools
import json
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from agentx.models import Edit, Maturity

with warnings.catch_warnings():
    # langchain-community announces its own sunset on import; the loaders still work.
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.document_loaders import DirectoryLoader, TextLoader

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class CatalogError(ValueError):
    """A research note is malformed; the message names the file and field."""


class TechniqueParam(BaseModel):
    """A tunable parameter of a technique and the values worth trying."""

    name: str
    values: list[Any] = Field(min_length=1)
    default: Any = None


OfflineMetric = Literal["ndcg_at_k", "recall_at_k", "coverage"]


class Technique(BaseModel):
    """One technique of the catalog."""

    id: str
    name: str
    lever: str
    maturity: Maturity = Maturity.READY
    summary: str
    metrics_moved: dict[str, Literal["+", "-", "0", "?"]] = Field(default_factory=dict)
    prior_effect: float = Field(0.0, description="Prior mean relative effect on watch time.")
    prior_sd: float = Field(0.03, gt=0)
    risk: float = Field(0.2, ge=0, le=1)
    preconditions: list[str] = Field(default_factory=list)
    locations: list[str] = Field(default_factory=list)
    signals: list[str] = Field(default_factory=list)
    guardrails: list[str] = Field(default_factory=list)
    conflicts: list[str] = Field(default_factory=list, description="Ids it cannot combine with.")
    params: list[TechniqueParam] = Field(default_factory=list)
    recipe: list[Edit] = Field(default_factory=list)
    stochastic: bool = Field(
        False,
        description="Randomised by design (rotation, exploration): its offline NDCG against "
        "logged clicks drops by construction, whatever it does online.",
    )
    offline_metrics: list[OfflineMetric] = Field(
        default_factory=lambda: ["ndcg_at_k"],
        min_length=1,
        description="Offline metrics the verification judges a regression on; a stochastic "
        "technique names the ones its randomisation should not hurt (e.g. coverage).",
    )
    body: str = ""
    source: str = ""

    def default_params(self) -> dict[str, Any]:
        """Each parameter's default (or first) value."""
        return {p.name: p.default if p.default is not None else p.values[0] for p in self.params}

    def parameter_settings(self) -> list[dict[str, Any]]:
        """Every parameter setting (the product of its parameters' values, in catalog
        order); one empty setting for a technique without parameters."""
        names = [p.name for p in self.params]
        return [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(p.values for p in self.params))
        ]

    def render_recipe(self, params: dict[str, Any]) -> list[Edit]:
        """The recipe's edits with ``{{name}}`` replaced by parameter values."""
        values = {**self.default_params(), **params}

        def fill(text: str) -> str:
            def sub(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in values:
                    raise CatalogError(f"{self.id}: recipe uses unknown parameter {name!r}")
                value = values[name]
                return json.dumps(value) if isinstance(value, str) else str(value)

            return _PLACEHOLDER.sub(sub, text)

        return [
            Edit(path=e.path, search=fill(e.search), replace=fill(e.replace), regex=e.regex)
            for e in self.recipe
        ]


def default_research_dir() -> Path:
    """``knowledge/research`` of this checkout."""
    return Path(__file__).resolve().parents[2] / "knowledge" / "research"


def parse_technique(text: str, source: str) -> Technique:
    """Parse one note (front matter + markdown body)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        raise CatalogError(f"{source}: missing YAML front matter (--- ... ---)")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as error:
        raise CatalogError(f"{source}: invalid YAML front matter: {error}") from None
    try:
        return Technique(**meta, body=match.group(2).strip(), source=source)
    except ValidationError as error:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise CatalogError(f"{source}: {fields}") from None


def load_catalog(directory: Path | None = None) -> dict[str, Technique]:
    """All techniques under ``directory`` keyed by id (sorted, deterministic)."""
    folder = directory or default_research_dir()
    if not folder.is_dir():
        raise CatalogError(f"research directory not found: {folder}")
    loader = DirectoryLoader(str(folder), glob="*.md", loader_cls=TextLoader)
    techniques: dict[str, Technique] = {}
    for document in loader.load():
        source = Path(document.metadata["source"]).name
        technique = parse_technique(document.page_content, source)
        if technique.id in techniques:
            raise CatalogError(f"{source}: duplicate technique id {technique.id!r}")
        techniques[technique.id] = technique
    return dict(sorted(techniques.items()))
