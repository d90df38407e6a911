"""The report's interactive charts (Plotly), as HTML fragments for the template.

Each chart is a ``<div>`` plus the call that draws it; the plotly.js bundle itself is
inlined once by the template (from the installed ``plotly`` package), so the report
opens offline. Scales are honest: every experiment gets its own panel with its own axis,
so one large effect cannot squash the other intervals to a line, and marks are coloured
by the decision, never by the sign of the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from agentx.report.history import HistoryRow
from agentx.report.levels import fmt_p
from agentx.report.view import DECISION_COLORS, CumulativePoint, ExperimentView
from agentx.summary import EvolutionLine

OUTCOME_COLORS = {
    "kept": "#2e7d32",
    "rolled_back": "#757575",
    "unsafe": "#c62828",
    "no_gradient": "#90a4ae",
    "not_enough_tasks": "#90a4ae",
    "failed": "#8e24aa",
}
CONFIG = {"displaylogo": False, "responsive": True}
LAYOUT = {
    "template": "plotly_white",
    "font": {"family": "-apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"},
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
}


def plotly_js() -> str:
    """The plotly.js bundle shipped in the ``plotly`` package (inlined: no CDN)."""
    return get_plotlyjs()


def _html(figure: go.Figure, div_id: str) -> str:
    figure.update_layout(**LAYOUT)
    return pio.to_html(
        figure, full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG
    )


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def experiments_figure(views: Sequence[ExperimentView], north_star: str) -> go.Figure | None:
    """One panel per experiment: the north star at each stage with its interval at the
    decision's level, and the true effect as a dashed line; colour = the verdict."""
    launched = [v for v in views if v.stages]
    if not launched:
        return None
    cols = min(3, len(launched))
    rows = math.ceil(len(launched) / cols)
    titles = [f"#{v.number} {v.technique} · {v.decision}" for v in launched]
    figure = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08,
        vertical_spacing=min(0.12, 0.5 / rows),
    )  # fmt: skip
    for index, view in enumerate(launched):
        row, col = index // cols + 1, index % cols + 1
        stages = [s for s in view.stages if s.north_star and s.north_star.relative is not None]
        xs = [s.stage for s in stages]
        ys = [_pct(s.north_star.relative) for s in stages if s.north_star]
        plus = [_pct((s.north_star.ci_high or 0) - (s.north_star.relative or 0))
                for s in stages if s.north_star]  # fmt: skip
        minus = [_pct((s.north_star.relative or 0) - (s.north_star.ci_low or 0))
                 for s in stages if s.north_star]  # fmt: skip
        hover = [
            f"{s.stage}: {100 * (s.north_star.relative or 0):+.2f}% "
            f"[{100 * (s.north_star.ci_low or 0):+.2f}%, {100 * (s.north_star.ci_high or 0):+.2f}%]"
            f" at {s.north_star.level_label}, p={fmt_p(s.north_star.p_value)}, "
            f"n={s.n_control}/{s.n_treatment}"
            for s in stages
            if s.north_star
        ]
        figure.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="markers+lines", name=view.decision,
                marker={"color": view.color, "size": 9}, line={"color": view.color, "width": 1},
                error_y={"type": "data", "array": plus, "arrayminus": minus, "symmetric": False,
                         "color": view.color, "thickness": 1.5, "width": 5},
                hovertext=hover, hoverinfo="text", showlegend=False,
            ),
            row=row, col=col,
        )  # fmt: skip
        figure.add_hline(y=0, line={"color": "#9e9e9e", "width": 1}, row=row, col=col)
        if view.true_north_star is not None:
            figure.add_hline(
                y=100 * view.true_north_star, row=row, col=col,
                line={"color": "black", "width": 1.5, "dash": "dash"},
                annotation_text=f"true {100 * view.true_north_star:+.2f}%",
                annotation_position="bottom left",
                annotation_font_size=10,
            )  # fmt: skip
    figure.update_yaxes(ticksuffix="%", zeroline=False)
    figure.update_annotations(font_size=11)
    figure.update_layout(
        height=260 * rows + 60,
        title={"text": f"{north_star} per stage and experiment (each panel its own scale)",
               "font": {"size": 14}},
    )  # fmt: skip
    return figure


def cumulative_figure(points: Sequence[CumulativePoint], north_star: str) -> go.Figure | None:
    """The baseline's change against the run's original baseline, measured and true."""
    if not points:
        return None
    xs = [0, *[p.number for p in points]]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=xs, y=[0, *[100 * p.measured for p in points]], mode="lines", name="measured",
            line={"shape": "hv", "color": "#1565c0", "width": 2.5},
        )
    )  # fmt: skip
    if all(p.true is not None for p in points):
        figure.add_trace(
            go.Scatter(
                x=xs, y=[0, *[100 * (p.true or 0) for p in points]], mode="lines", name="true",
                line={"shape": "hv", "color": "black", "width": 2, "dash": "dash"},
            )
        )  # fmt: skip
    figure.add_trace(
        go.Scatter(
            x=[p.number for p in points], y=[100 * p.measured for p in points], mode="markers",
            name="decision", showlegend=False,
            marker={"color": [DECISION_COLORS.get(p.decision, "#455a64") for p in points],
                    "size": 11, "line": {"color": "white", "width": 1}},
            hovertext=[f"#{p.number} {p.technique}: {p.decision}" for p in points],
            hoverinfo="text",
        )
    )  # fmt: skip
    figure.update_layout(
        height=320,
        title={"text": f"{north_star}: change of the baseline against the run's original one",
               "font": {"size": 14}},
        xaxis={"title": "after experiment (0 = original baseline)", "dtick": 1},
        yaxis={"ticksuffix": "%"},
    )  # fmt: skip
    return figure


def funnel_figure(funnel: dict[str, int]) -> go.Figure | None:
    """This run's funnel in counts (the paper reports only its ends: see the table)."""
    if not funnel or not any(funnel.values()):
        return None
    stages = list(funnel)
    figure = go.Figure(
        go.Funnel(y=stages, x=[funnel[s] for s in stages], textinfo="value+percent initial",
                  marker={"color": "#1565c0"})
    )  # fmt: skip
    figure.update_layout(height=280, title={"text": "This run's funnel", "font": {"size": 14}})
    return figure


def evolution_figure(lines: Sequence[EvolutionLine], epsilon: float) -> go.Figure | None:
    """Replay gain of each SGPO step against epsilon, the bar an edit must clear.

    Only steps that replayed are drawn (the others are in the table): no bare axes.
    """
    scored = [(i, line) for i, line in enumerate(lines, start=1) if line.gain is not None]
    if not scored:
        return None
    figure = go.Figure(
        go.Bar(
            x=[f"{i}: {line.agent} @{line.iteration}" for i, line in scored],
            y=[line.gain for _, line in scored],
            marker={"color": [OUTCOME_COLORS.get(line.outcome, "#90a4ae") for _, line in scored]},
            hovertext=[
                f"{line.outcome}: replay {line.old_score:+.4f} → {line.new_score:+.4f} "
                f"(gain {line.gain:+.4f})"
                for _, line in scored
            ],
            hoverinfo="text",
            text=[line.outcome.replace("_", " ") for _, line in scored],
            textposition="outside",
            width=0.4 if len(scored) < 4 else None,
        )
    )
    figure.add_hline(y=epsilon, line={"color": "#2e7d32", "dash": "dot"},
                     annotation_text=f"epsilon {epsilon:g}")  # fmt: skip
    figure.add_hline(y=0, line={"color": "#9e9e9e", "width": 1})
    figure.update_layout(
        height=300,
        title={"text": "SGPO: replay-score gain of each edit (kept only above epsilon)",
               "font": {"size": 14}},
        yaxis={"title": "gain (new − old replay score)", "tickformat": "+.4f"},
    )  # fmt: skip
    return figure


def history_figure(rows: Sequence[HistoryRow], north_star: str) -> go.Figure | None:
    """Each run's change of the baseline, measured beside true."""
    usable = [r for r in rows if not r.problem and r.experiments]
    if not usable:
        return None
    names = [r.run_id for r in usable]
    figure = go.Figure()
    width = 0.3 if len(usable) < 4 else None
    figure.add_trace(go.Bar(x=names, y=[100 * (r.measured or 0) for r in usable], width=width,
                            name="measured", marker={"color": "#1565c0"}))  # fmt: skip
    if any(r.true is not None for r in usable):
        figure.add_trace(go.Bar(x=names, y=[None if r.true is None else 100 * r.true
                                            for r in usable], width=width,
                                name="true", marker={"color": "#263238"}))  # fmt: skip
    figure.update_layout(
        barmode="group", height=300,
        title={"text": f"{north_star}: baseline change per run in this workspace",
               "font": {"size": 14}},
        yaxis={"ticksuffix": "%"},
    )  # fmt: skip
    return figure


def chart_html(figure: go.Figure | None, div_id: str) -> str | None:
    """A figure as a ``<div>`` and its drawing call (None stays None: no bare axes)."""
    return None if figure is None else _html(figure, div_id)
