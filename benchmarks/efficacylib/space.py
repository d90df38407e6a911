"""The configuration space every strategy searches: the catalog's (technique, parameters)
options, and the grouping of conflicting techniques that TPE's encoding needs.

An *option* is one technique at one parameter setting (a technique without parameters has
one option). Options are what the loop proposes, what random search draws and what the
ceiling's greedy search adds; a TPE *configuration* picks at most one option per conflict
group (techniques that cannot combine, e.g. two embedding sizes, share a group).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentx.agents.brainstorm.agent import feasible
from agentx.agents.brainstorm.policy import combo_key
from agentx.models import Edit
from agentx.research.catalog import Technique
from agentx.research.recipes import edits_for

OFF = "off"


@dataclass(frozen=True)
class Option:
    """One technique at one parameter setting."""

    technique: str
    params: tuple[tuple[str, Any], ...]

    @property
    def params_dict(self) -> dict[str, Any]:
        """The parameters as the catalog's recipes take them."""
        return dict(self.params)

    @property
    def key(self) -> str:
        """The loop's identity of the option (its avoid-set key)."""
        return combo_key(self.technique, self.params_dict)

    @property
    def label(self) -> str:
        """Short human label, also TPE's categorical value."""
        if not self.params:
            return self.technique
        return self.technique + "(" + ",".join(f"{k}={v}" for k, v in self.params) + ")"


def options_of(technique: Technique) -> list[Option]:
    """Every parameter setting of ``technique`` (the product of its parameters' values)."""
    return [
        Option(technique.id, tuple(setting.items())) for setting in technique.parameter_settings()
    ]


def all_options(catalog: dict[str, Technique]) -> list[Option]:
    """Every option of the catalog, in catalog order (techniques with a code recipe)."""
    return [o for t in catalog.values() if t.recipe for o in options_of(t)]


def recipe(catalog: dict[str, Technique], option: Option) -> list[Edit]:
    """The option's code edits."""
    return catalog[option.technique].render_recipe(option.params_dict)


def option_edits(catalog: dict[str, Technique], option: Option, repo: Path) -> list[Edit]:
    """The edits that put the option on the repository state at ``repo``, as the loop's
    developer would: the recipe, or, for a technique already merged there, a retune of its
    parameters (a second value of a kept technique is not its recipe applied twice).

    Raises:
        EditError: neither applies.
    """
    return edits_for(catalog[option.technique], option.params_dict, repo)[0]


def applicable(catalog: dict[str, Technique], option: Option, repo: Path) -> bool:
    """True when the option applies to the repository state at ``repo``: its recipe, or a
    retune of the technique already merged there (see :func:`option_edits`)."""
    return feasible(catalog[option.technique], option.params_dict, repo) is None


def conflict_groups(catalog: dict[str, Technique]) -> list[list[str]]:
    """Techniques that cannot be combined, grouped (connected components of ``conflicts``).

    Each group becomes one categorical of TPE's encoding, so a sampled configuration never
    holds two techniques the catalog says conflict.
    """
    ids = [t.id for t in catalog.values() if t.recipe]
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for technique in catalog.values():
        for other in technique.conflicts:
            if technique.id in parent and other in parent:
                parent[root(other)] = root(technique.id)
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def group_choices(catalog: dict[str, Technique], group: list[str]) -> dict[str, Option | None]:
    """TPE's choices for one group: ``off`` or one option of one of its techniques."""
    choices: dict[str, Option | None] = {OFF: None}
    for technique in group:
        for option in options_of(catalog[technique]):
            choices[option.label] = option
    return choices
