"""Which edits apply a technique to a repository: its recipe, or a retune of merged code.

Why: a code technique's recipe adds a rule, feature or weighting behind a guard edit that
refuses to apply once the code exists, so a kept technique could never be tried at another
value (it stayed at its first one even when a stronger setting was better). Its parameters
live in ``config.toml`` lines the recipe wrote (``key = {{param}}``); a *retune* edits just
those lines of the merged code, whatever their current value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agentx.models import Edit
from agentx.research.catalog import CatalogError, Technique
from agentx.workspace.edits import EditError, apply_edits

CONFIG = "config.toml"
# A recipe line that sets a config key from one parameter, e.g. ``rotation_temperature = {{t}}``.
_SETS_KEY = re.compile(r"^(\w+)\s*=\s*\{\{\s*(\w+)\s*\}\}", re.MULTILINE)


def retune_edits(technique: Technique, params: dict[str, Any]) -> list[Edit]:
    """Edits that set the technique's parameters in merged code (empty: nothing to retune).

    One regex edit per ``config.toml`` key a recipe line sets from a parameter; the value
    it replaces is whatever the baseline holds now.
    """
    template: list[Edit] = []
    for edit in technique.recipe:
        if edit.path != CONFIG:
            continue
        for key, param in _SETS_KEY.findall(edit.replace):
            template.append(
                Edit(
                    path=CONFIG,
                    search=rf"^{re.escape(key)}\s*=\s*[^\s#]+",
                    replace=f"{key} = {{{{{param}}}}}",
                    regex=True,
                )
            )
    if not template or not technique.params:
        return []
    retune = technique.model_copy(update={"recipe": template})
    return retune.render_recipe(params)


def edits_for(technique: Technique, params: dict[str, Any], repo: Path) -> tuple[list[Edit], str]:
    """The edits that apply ``technique`` at ``params`` to ``repo`` and how: recipe or retune.

    The recipe when it applies; otherwise, for a technique already merged (its recipe's guard
    refuses), the retune of its parameters.

    Raises:
        EditError: neither the recipe nor a retune applies (the message is the recipe's).
        CatalogError: the recipe uses an unknown parameter.
    """
    recipe = technique.render_recipe(params)
    try:
        apply_edits(repo, recipe, dry_run=True)
        return recipe, "recipe"
    except EditError as error:
        retune = retune_edits(technique, params)
        if not retune:
            raise
        try:
            apply_edits(repo, retune, dry_run=True)
        except EditError:
            raise error from None
        return retune, "retune"


def application(
    technique: Technique, params: dict[str, Any], repo: Path
) -> tuple[str | None, str | None]:
    """How the technique applies to ``repo`` at ``params``: (None, "recipe" or "retune"),
    or (why not, None)."""
    if not technique.recipe:
        return "the technique has no code recipe", None
    try:
        _, how = edits_for(technique, params, repo)
    except (EditError, CatalogError) as error:
        return str(error), None
    return None, how


def infeasible(technique: Technique, params: dict[str, Any], repo: Path) -> str | None:
    """None if the technique applies to ``repo`` at ``params`` (recipe or retune); else why."""
    return application(technique, params, repo)[0]
