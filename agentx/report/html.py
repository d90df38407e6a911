"""The HTML report of one run: Jinja2 templates, Plotly charts, one self-contained file.

The templates live in ``agentx/report/templates`` and autoescape everything; this module
only gathers what they show. Charts are drawn by plotly.js, which is inlined from the
installed ``plotly`` package, and the CSS is inlined too: nothing is fetched when the file
is opened, so it can be mailed or archived as is.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from agentx.evolution.models import EvolutionStep
from agentx.graph.state import FUNNEL_KEYS
from agentx.graph.tracelog import read_trace
from agentx.report import charts
from agentx.report.history import decision_levels, history_rows, read_trajectories
from agentx.report.levels import fmt_p, fmt_pct, level_text
from agentx.report.paper import PAPER_FUNNEL, PAPER_NOTE
from agentx.report.view import DECISION_COLORS, ExperimentView, cumulative, experiment_view
from agentx.report.workspace import RunState, harness_versions, run_settings, world_of
from agentx.settings import Settings
from agentx.summary import evolution_line, summarise_run

TRACE_LIMIT = 200


@cache
def environment() -> Environment:
    """The report's template environment (autoescaping, strict about missing names)."""
    env = Environment(
        loader=PackageLoader("agentx.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = fmt_pct
    env.filters["p"] = fmt_p
    env.filters["g"] = lambda value: f"{value:g}"
    return env


def _funnel_rows(funnel: dict[str, int]) -> list[dict[str, Any]]:
    run = {key: int(funnel.get(key, 0)) for key in FUNNEL_KEYS}
    rows, previous = [], None
    for key in FUNNEL_KEYS:
        share = "–" if not previous else f"{run[key] / previous:.0%}"
        rows.append({"stage": key, "count": run[key], "conversion": share})
        previous = run[key]
    return rows


def _paper(funnel: dict[str, int]) -> dict[str, Any]:
    ideas, kept = int(funnel.get("ideas", 0)), int(funnel.get("kept", 0))
    paper_ideas, paper_kept = PAPER_FUNNEL["ideas"] or 0, PAPER_FUNNEL["kept"] or 0
    return {
        "run_ideas": ideas,
        "run_kept": kept,
        "run_share": f"{kept / ideas:.1%}" if ideas else "–",
        "ideas": paper_ideas,
        "kept": paper_kept,
        "share": f"{paper_kept / paper_ideas:.1%}" if paper_ideas else "–",
        "note": PAPER_NOTE,
    }


def _edit_parts(step: EvolutionStep) -> list[str]:
    """The edit as ``field old→new`` lines, added rules and rewritten files."""
    edit = step.edit
    if edit is None:
        return []
    parts = [f"{e.field} {e.old:g}→{e.new:g}" for e in edit.edits]
    parts += [f"+ rule: {rule}" for rule in edit.add_rules]
    parts += [f"{name} rewritten" for name in sorted(edit.files)]
    return parts or [edit.key()]


def _harness(values: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str | None]:
    at_end = values.get("harness_versions") or {}
    versions = [
        {"agent": agent, "active": version,
         "at_end": f"v{at_end[agent]}" if agent in at_end else "–"}
        for agent, version in harness_versions(settings.workspace).items()
    ]  # fmt: skip
    steps = [
        step if isinstance(step, EvolutionStep) else EvolutionStep.model_validate(step)
        for step in values.get("evolutions") or []
    ]
    lines = [evolution_line(step) for step in steps]
    rows = []
    for step, line in zip(steps, lines, strict=True):
        gradient = step.gradient
        rows.append(
            {
                "iteration": line.iteration,
                "agent": line.agent,
                "outcome_label": line.outcome.replace("_", " "),
                "outcome_color": charts.OUTCOME_COLORS.get(line.outcome, "#455a64"),
                "version": f"v{line.base_version}"
                + (f"→v{line.new_version}" if line.new_version else ""),
                "edit": _edit_parts(step),
                "replay": "–"
                if line.old_score is None
                else f"{line.old_score:+.4f}→{_score(line.new_score)}",
                "gain": "–" if line.gain is None else f"{line.gain:+.4f}",
                "tasks": "–" if line.tasks is None else line.tasks,
                "reason": line.reason,
                "loss": f"{gradient.loss:.3f}" if gradient is not None else "",
                "loss_text": gradient.loss_text if gradient is not None else "",
            }
        )
    evolution = settings.evolution
    why = (
        f"evolution runs every {evolution.every} experiments (settings evolution.every)"
        if evolution.enabled
        else "evolution is off (settings evolution.enabled)"
    )
    context = {
        "versions": versions,
        "steps": rows,
        "kept": sum(line.outcome == "kept" for line in lines),
        "epsilon": evolution.epsilon,
        "why_none": why,
    }
    figure = charts.evolution_figure(lines, evolution.epsilon)
    return context, charts.chart_html(figure, "chart-evolution")


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4f}"


def report_context(state: RunState, settings: Settings) -> dict[str, Any]:
    """Everything the template shows, as plain values (the template escapes them)."""
    settings = run_settings(settings, state.run_id)  # its world, seed, stages...
    values = state.values
    north_star = settings.north_star
    levels = decision_levels(settings)
    views: list[ExperimentView] = [
        experiment_view(record, north_star, levels, state.run_id)
        for record in values.get("experiments", [])
    ]
    world = world_of(settings.workspace, state.run_id)
    summary = summarise_run(values, world, settings.seed, north_star)
    points = cumulative(views)
    final = points[-1] if points else None
    counts = {label: sum(v.decision == label for v in views) for label in DECISION_COLORS}
    tiles = [
        (str(len(views)), "experiments"),
        *[(str(n), label.lower()) for label, n in counts.items() if n],
        (fmt_pct(final.measured if final else 0.0), f"{north_star} baseline change, measured"),
        (fmt_pct(final.true if final else 0.0), f"{north_star} baseline change, true"),
    ]
    history = history_rows(read_trajectories(settings.workspace), levels)
    harness, evolution_html = _harness(values, settings)
    goal = values.get("goal")
    return {
        "run_id": state.run_id,
        "world": world,
        "seed": settings.seed,
        "workspace": str(settings.workspace),
        "status": state.status,
        "goal": goal.text if goal else str(values.get("goal_text", "")),
        "objective": summary.objective,
        "north_star": north_star,
        "tiles": tiles,
        "levels": levels,
        "levels_text": {
            "north_star": level_text(levels.north_star),
            "guardrail": level_text(levels.guardrail),
            "secondary": level_text(levels.secondary),
        },
        "decision_colors": DECISION_COLORS,
        "funnel": _funnel_rows(summary.funnel),
        "paper": _paper(summary.funnel),
        "experiments": views,
        "cumulative": points,
        "final_measured": final.measured if final else 0.0,
        "final_true": final.true if final else 0.0,
        "vetoes": [v for v in views if v.decision == "VETO"],
        "history": history,
        "harness": harness,
        # the run's trace log (runs from before it had one kept the trace in state)
        "trace": list(values.get("trace") or read_trace(settings.workspace, state.run_id))[
            -TRACE_LIMIT:
        ],
        "trace_limit": TRACE_LIMIT,
        "charts": {
            "funnel": charts.chart_html(
                charts.funnel_figure({k: int(summary.funnel.get(k, 0)) for k in FUNNEL_KEYS}),
                "chart-funnel",
            ),
            "cumulative": charts.chart_html(
                charts.cumulative_figure(points, north_star), "chart-cumulative"
            ),
            "experiments": charts.chart_html(
                charts.experiments_figure(views, north_star), "chart-experiments"
            ),
            "history": charts.chart_html(
                charts.history_figure(history, north_star), "chart-history"
            ),
            "evolution": evolution_html,
        },
    }


def render_report(state: RunState, settings: Settings) -> str:
    """The report of ``state`` as one HTML document."""
    context = report_context(state, settings)
    drawn = any(context["charts"].values())
    context["plotly_js"] = charts.plotly_js() if drawn else ""
    return environment().get_template("report.html.j2").render(**context)


def write_report(state: RunState, settings: Settings, path: Path | None = None) -> Path:
    """Write the report (default ``WORKSPACE/reports/<run>.html``) and return its path."""
    target = path or Path(settings.workspace) / "reports" / f"{state.run_id}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(state, settings), encoding="utf-8")
    return target
