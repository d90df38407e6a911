"""The report's figures as base64 PNG, so the HTML file is self-contained.

matplotlib runs on the Agg backend (no display, no GUI toolkit) and each figure is
closed after rendering, so a long-lived process does not leak figures.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (backend first)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from agentx.models import ExperimentRecord  # noqa: E402
from agentx.summary import EvolutionLine  # noqa: E402

DECISION_COLORS = {
    "KEEP": "#2e7d32",
    "EXTEND": "#f9a825",
    "DISCARD": "#757575",
    "VETO": "#c62828",
    "ABANDONED": "#8e24aa",
}
STYLE = {
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def to_data_uri(figure: Figure) -> str:
    """PNG data URI of ``figure`` (then closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def funnel_figure(run: dict[str, int], paper: dict[str, int | None]) -> str:
    """Share of ideas reaching each stage: this run beside the paper."""
    stages = list(run)
    ideas = max(run.get("ideas", 0), 1)
    paper_ideas = paper.get("ideas") or 1
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 3.2))
        positions = range(len(stages))
        run_share = [100 * run.get(s, 0) / ideas for s in stages]
        axis.bar([p - 0.2 for p in positions], run_share, width=0.4, label="this run",
                 color="#1565c0")  # fmt: skip
        paper_share = [
            100 * value / paper_ideas if value is not None else 0 for value in paper.values()
        ]
        bars = axis.bar([p + 0.2 for p in positions], paper_share, width=0.4,
                        label="paper (Kuaishou)", color="#ef6c00")  # fmt: skip
        for bar, value, share in zip(bars, paper.values(), paper_share, strict=True):
            label = "n/r" if value is None else f"{share:.1f}%"
            axis.text(bar.get_x() + bar.get_width() / 2, share + 2, label, ha="center",
                      fontsize=8, color="#ef6c00")  # fmt: skip
        for position, share in zip(positions, run_share, strict=True):
            axis.text(position - 0.2, share + 2, f"{share:.0f}%", ha="center", fontsize=8)
        axis.set_xticks(list(positions), stages)
        axis.set_ylabel("% of ideas")
        axis.set_ylim(0, 125)
        axis.legend(frameon=False, loc="upper right", ncol=2)
        axis.set_title("Funnel: share of ideas that reach each stage")
        return to_data_uri(figure)


def trajectory_figure(records: Sequence[ExperimentRecord], north_star: str) -> str:
    """Per-experiment effect (measured with its interval, and true) and the baseline's
    cumulative change from kept experiments, measured and true."""
    with plt.rc_context(STYLE):
        figure, (top, bottom) = plt.subplots(
            2, 1, figsize=(7.5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
        )
        xs = [r.iteration + 1 for r in records]
        measured_total, true_total = [1.0], [1.0]
        for record, x in zip(records, xs, strict=True):
            verdict = record.verdict
            decision = ledger_decision(record)
            color = DECISION_COLORS.get(decision, "#455a64")
            measured = true = None
            if verdict is not None and verdict.north_star is not None:
                effect = verdict.north_star
                measured = 100 * effect.relative
                top.errorbar(x, measured, yerr=[[measured - 100 * effect.ci_low],
                             [100 * effect.ci_high - measured]], fmt="o", color=color,
                             capsize=4, markersize=7)  # fmt: skip
            if verdict is not None and north_star in verdict.true_effects:
                true = 100 * verdict.true_effects[north_star]
                top.plot(x, true, marker="x", color="black", markersize=8, linestyle="none")
            if measured is None and true is None:
                top.plot(x, 0, marker="s", color=color, markersize=6)
            top.annotate(decision.lower(), (x, measured if measured is not None else 0),
                         textcoords="offset points", xytext=(8, -3), fontsize=8,
                         color=color)  # fmt: skip
            kept = decision == "KEEP"
            measured_total.append(measured_total[-1] * (1 + (measured or 0) / 100 * kept))
            true_total.append(true_total[-1] * (1 + (true or 0) / 100 * kept))
        top.axhline(0, color="#9e9e9e", linewidth=1)
        top.set_ylabel(f"{north_star} effect (%)")
        top.set_title(
            "North star per experiment: measured (dot, 95% interval) and true (x)", fontsize=10
        )
        end = (xs[-1] if xs else 0) + 0.8
        steps = [0, *xs, end]  # the last level is held to the right edge
        for totals, label, style in (
            (measured_total, "measured", {"color": "#1565c0"}),
            (true_total, "true", {"color": "black", "linestyle": "--"}),
        ):
            levels = [100 * (v - 1) for v in totals]
            bottom.step(steps, [*levels, levels[-1]], where="post", label=label, linewidth=2,
                        **style)  # fmt: skip
        bottom.set_ylabel("baseline change (%)")
        bottom.set_xlabel("experiment (0 = the baseline before the run)")
        bottom.set_xticks([0, *xs])
        bottom.set_xlim(-0.3, end)
        bottom.legend(frameon=False, loc="upper left")
        bottom.set_title("Cumulative change of the baseline from kept experiments", fontsize=10)
        return to_data_uri(figure)


def ledger_decision(record: ExperimentRecord) -> str:
    """The decision a ledger row shows: the verdict, VETO for a halted rollout, ABANDONED."""
    if record.verdict is None:
        return "ABANDONED"
    if record.rollout is not None and record.rollout.halted_at:
        return "VETO"
    return record.verdict.decision.value


OUTCOME_COLORS = {
    "kept": "#2e7d32",
    "rolled_back": "#757575",
    "unsafe": "#c62828",
    "no_gradient": "#90a4ae",
    "not_enough_tasks": "#90a4ae",
    "failed": "#8e24aa",
}
AGENT_COLORS = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f")


def evolution_figure(steps: Sequence[EvolutionLine]) -> str:
    """Replay score of each SGPO step, before (hollow) and after (filled) the edit.

    One panel per agent (their rubrics score on different scales), x = the step's place
    in the run; kept steps are green stars labelled with the version they committed.
    Steps with no replay (no gradient, unsafe, too few tasks) are grey dotted lines.
    """
    agents = list(dict.fromkeys(step.agent for step in steps))
    xs = list(range(1, len(steps) + 1))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            len(agents), 1, figsize=(7.5, 1.2 + 2.4 * len(agents)), sharex=True, squeeze=False
        )
        for row, agent in enumerate(agents):
            axis = axes[row][0]
            color = AGENT_COLORS[row % len(AGENT_COLORS)]
            mine = [(x, s) for x, s in zip(xs, steps, strict=True) if s.agent == agent]
            scored = [
                (x, s) for x, s in mine if s.old_score is not None and s.new_score is not None
            ]
            if scored:
                axis.plot([x for x, _ in scored], [s.old_score for _, s in scored], marker="o",
                          markerfacecolor="white", color=color, linestyle="--", linewidth=1,
                          markersize=7)  # fmt: skip
            for x, step in scored:
                arrow = {"arrowstyle": "->", "color": color, "lw": 1.2}
                axis.annotate("", (x, step.new_score), (x, step.old_score), arrowprops=arrow)
                if step.outcome == "kept":
                    axis.plot(x, step.new_score, marker="*", markersize=16, color="#2e7d32",
                              markeredgecolor="black", markeredgewidth=0.6)  # fmt: skip
                    axis.annotate(f"v{step.new_version}", (x, step.new_score),
                                  textcoords="offset points", xytext=(9, -3), fontsize=8,
                                  color="#2e7d32", fontweight="bold")  # fmt: skip
                else:
                    axis.plot(x, step.new_score, marker="o", markersize=7, color=color)
            done = {x for x, _ in scored}
            for x, step in mine:
                if x in done:
                    continue
                outcome_color = OUTCOME_COLORS.get(step.outcome, "#90a4ae")
                axis.axvline(x, color=outcome_color, linestyle=":", linewidth=1.2)
                axis.annotate(step.outcome.replace("_", " "), (x, 0.5), rotation=90,
                              xycoords=("data", "axes fraction"), xytext=(4, 0),
                              textcoords="offset points", fontsize=8, va="center",
                              color=outcome_color)  # fmt: skip
            if not scored:
                axis.set_yticks([])
            axis.set_ylabel(f"{agent}\nreplay score")
            axis.margins(y=0.25)
        handles = [
            Line2D([], [], marker="o", markerfacecolor="white", color="#455a64", linestyle="--",
                   label="before (base harness)"),
            Line2D([], [], marker="o", color="#455a64", linestyle="none",
                   label="after, rolled back"),
            Line2D([], [], marker="*", color="#2e7d32", markeredgecolor="black", markersize=12,
                   linestyle="none", label="after, kept (new version)"),
        ]  # fmt: skip
        axes[0][0].legend(handles=handles, frameon=False, fontsize=8, ncol=3,
                          loc="lower left", bbox_to_anchor=(0, 1.0))  # fmt: skip
        bottom = axes[-1][0]
        bottom.set_xticks(xs, [f"{x}\nit {s.iteration}" for x, s in zip(xs, steps, strict=True)])
        bottom.set_xlim(0.4, len(steps) + 0.8)
        bottom.set_xlabel("SGPO step of the run (loop iteration)")
        figure.suptitle("Harness evolution: replay score before → after each edit", fontsize=10)
        return to_data_uri(figure)
