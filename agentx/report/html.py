"""The HTML report of one run: a single file with inline CSS and embedded PNG plots.

Everything shown is escaped; nothing is fetched when the file is opened (no scripts,
fonts or stylesheets from elsewhere), so it can be mailed or archived as is.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from agentx.evolution.models import EvolutionStep
from agentx.graph.state import FUNNEL_KEYS
from agentx.models import ExperimentRecord
from agentx.report.paper import PAPER_FUNNEL, PAPER_NOTE
from agentx.report.plots import (
    DECISION_COLORS,
    OUTCOME_COLORS,
    evolution_figure,
    funnel_figure,
    ledger_decision,
    trajectory_figure,
)
from agentx.report.workspace import RunState, harness_versions, world_of
from agentx.settings import Settings
from agentx.summary import evolution_line, experiment_line, summarise_run

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
  background:#f5f6f8;color:#1f2933;line-height:1.45}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:32px 0 10px;
  border-bottom:2px solid #dde1e6;padding-bottom:4px}
.sub{color:#52606d;margin:0 0 16px} .note{color:#52606d;font-size:13px}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.tile{background:#fff;border-radius:8px;padding:12px 16px;min-width:140px;
  box-shadow:0 1px 2px rgba(0,0,0,.08)} .tile b{display:block;font-size:24px}
.tile>span{color:#52606d;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13.5px;
  box-shadow:0 1px 2px rgba(0,0,0,.08)}
th,td{padding:6px 9px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600} td.num,th.num{text-align:right;
  font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
  white-space:nowrap;
  font-weight:600} figure{margin:12px 0;background:#fff;padding:10px;border-radius:8px;
  box-shadow:0 1px 2px rgba(0,0,0,.08)} figure img{max-width:100%;display:block;margin:auto}
.pos{color:#2e7d32} .neg{color:#c62828} code{font-size:12.5px}
details{background:#fff;padding:8px 12px;border-radius:8px} summary{cursor:pointer}
"""


def _pct(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    css = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<span class="{css}">{value:+.{digits}%}</span>'


def _badge(decision: str) -> str:
    color = DECISION_COLORS.get(decision, "#455a64")
    return f'<span class="badge" style="background:{color}">{escape(decision)}</span>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _funnel_section(funnel: dict[str, int]) -> str:
    run = {key: int(funnel.get(key, 0)) for key in FUNNEL_KEYS}
    ideas = max(run["ideas"], 1)
    paper_ideas = PAPER_FUNNEL["ideas"] or 1
    rows = []
    for key in FUNNEL_KEYS:
        paper = PAPER_FUNNEL[key]
        rows.append(
            [
                escape(key),
                str(run[key]),
                f"{run[key] / ideas:.0%}",
                "not reported" if paper is None else str(paper),
                "–" if paper is None else f"{paper / paper_ideas:.1%}",
            ]
        )
    table = _table(
        ["stage", "this run", "% of ideas", "paper", "% of ideas"], rows, numeric={1, 2, 3, 4}
    )
    image = funnel_figure(run, PAPER_FUNNEL)
    return (
        f"<h2>Funnel</h2>{table}<p class='note'>{escape(PAPER_NOTE)}</p>"
        f"<figure><img alt='funnel compared with the paper' src='{image}'></figure>"
    )


def _ledger_section(records: list[ExperimentRecord], north_star: str) -> str:
    rows = []
    for record in records:
        line = experiment_line(record, north_star)
        params = ", ".join(f"{k}={v}" for k, v in line.params.items())
        north = record.verdict.north_star if record.verdict else None
        interval = (
            f"<br><span class='note'>[{north.ci_low:+.1%}, {north.ci_high:+.1%}]</span>"
            if north
            else ""
        )
        rows.append(
            [
                str(line.iteration + 1),
                f"<b>{escape(line.technique)}</b><br><code>{escape(params or '—')}</code>",
                escape(line.verification),
                "–" if line.q_code is None else f"{line.q_code:.2f}",
                escape(line.stage_reached or "–"),
                _badge(ledger_decision(record)),
                _pct(line.measured_effect) + interval,
                "–" if line.p_value is None else f"{line.p_value:.3f}",
                _pct(line.true_effect),
                escape(line.root_cause or ""),
            ]
        )
    table = _table(
        ["#", "technique", "verification", "Q_code", "stage", "decision",
         f"{north_star} measured", "p", "true", "root cause"],
        rows,
        numeric={0, 3, 6, 7, 8},
    )  # fmt: skip
    return f"<h2>Experiment ledger</h2>{table}"


def _vetoes_section(records: list[ExperimentRecord]) -> str:
    rows = []
    for record in records:
        rollout = record.rollout
        if rollout is None or not rollout.halted_at:
            continue
        stage = next((s for s in rollout.stages if s.stage == rollout.halted_at), None)
        breached = [g for g in (stage.guardrails if stage else []) if g.breached]
        detail = "<br>".join(
            f"<b>{escape(g.metric)}</b> ({escape(g.tier)}): {escape(g.detail)}" for g in breached
        )
        rows.append(
            [
                str(record.iteration + 1),
                escape(record.proposal.technique),
                escape(rollout.halted_at),
                escape(rollout.halt_reason or ""),
                detail or "–",
                "yes" if rollout.rolled_back else "no",
            ]
        )
    if not rows:
        return "<h2>Guardrail vetoes</h2><p>No rollout was vetoed in this run.</p>"
    table = _table(["#", "technique", "halted at", "reason", "breached", "rolled back"], rows)
    return f"<h2>Guardrail vetoes</h2>{table}"


def _edit_text(step: Any) -> str:
    """The edit as ``field old→new`` lines, added rules and replaced files."""
    edit = getattr(step, "edit", None)
    if edit is None:
        return "–"
    parts = [f"<code>{escape(e.field)}</code> {e.old:g}→{e.new:g}" for e in edit.edits]
    parts += [f"+ rule: {escape(rule)}" for rule in edit.add_rules]
    parts += [f"<code>{escape(name)}</code> rewritten" for name in sorted(edit.files)]
    return "<br>".join(parts) or escape(edit.key())


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4f}"


def _harness_section(values: dict[str, Any], settings: Settings) -> str:
    versions = harness_versions(settings.workspace)
    at_end = values.get("harness_versions") or {}
    rows = [
        [escape(agent), f"v{version}", escape(f"v{at_end[agent]}" if agent in at_end else "–")]
        for agent, version in versions.items()
    ]
    table = _table(["agent", "active in the workspace", "at the end of this run"], rows)
    steps = [
        step if isinstance(step, EvolutionStep) else EvolutionStep.model_validate(step)
        for step in values.get("evolutions") or []
    ]
    note = (
        "<p class='note'>The workspace's harness store (<code>harness/</code>) is the truth: "
        "an agent runs the bundled <code>prompts/</code> version until an SGPO step keeps an "
        "edit, which commits the next version. An edit is kept only when replaying the "
        "recorded tasks with it raises the rubric score by more than epsilon "
        f"({settings.evolution.epsilon:g}).</p>"
    )
    title = "<h2>Harness evolution (SGPO)</h2>"
    if not steps:
        every = settings.evolution.every
        why = (
            f"evolution runs every {every} experiments (settings <code>evolution.every</code>)"
            if settings.evolution.enabled
            else "evolution is off (settings <code>evolution.enabled</code>)"
        )
        return f"{title}{table}{note}<p>No SGPO step in this run: {why}.</p>"
    lines = [evolution_line(step) for step in steps]
    rows = []
    for number, (step, line) in enumerate(zip(steps, lines, strict=True), start=1):
        version = f"v{line.base_version}" + (f"→v{line.new_version}" if line.new_version else "")
        gradient = step.gradient
        loss = (
            f"<details><summary>loss {gradient.loss:.3f}</summary>"
            f"<p class='note'>{escape(gradient.loss_text)}</p></details>"
            if gradient is not None
            else ""
        )
        replay = (
            f"{_score(line.old_score)}→{_score(line.new_score)}"
            if line.old_score is not None
            else "–"
        )
        gain = (
            "–"
            if line.gain is None
            else f'<span class="{_sign(line.gain)}">{line.gain:+.4f}</span>'
        )
        rows.append(
            [
                str(number),
                str(line.iteration),
                escape(line.agent),
                _outcome_badge(line.outcome),
                escape(version),
                _edit_text(step),
                replay,
                gain,
                "–" if line.tasks is None else str(line.tasks),
                escape(line.reason) + loss,
            ]
        )
    history = _table(
        ["#", "iteration", "agent", "outcome", "version", "edit", "replay old→new", "gain",
         "tasks", "reason"],
        rows,
        numeric={0, 1, 6, 7, 8},
    )  # fmt: skip
    image = evolution_figure(lines)
    kept = sum(line.outcome == "kept" for line in lines)
    return (
        f"{title}{table}{note}<p>{len(lines)} SGPO step(s) in this run, {kept} kept.</p>"
        f"{history}<figure><img alt='SGPO replay scores before and after each edit' "
        f"src='{image}'></figure>"
    )


def _sign(value: float) -> str:
    return "pos" if value > 0 else "neg" if value < 0 else ""


def _outcome_badge(outcome: str) -> str:
    color = OUTCOME_COLORS.get(outcome, "#455a64")
    label = escape(outcome.replace("_", " "))
    return f'<span class="badge" style="background:{color}">{label}</span>'


def _trace_section(values: dict[str, Any], limit: int = 200) -> str:
    events = values.get("trace", [])[-limit:]
    rows = [[escape(e.node), escape(e.experiment_id or ""), escape(e.message)] for e in events]
    return (
        f"<h2>Trace</h2><details><summary>{len(events)} node events (last {limit})</summary>"
        f"{_table(['node', 'experiment', 'message'], rows)}</details>"
    )


def render_report(state: RunState, settings: Settings) -> str:
    """The report of ``state`` as one HTML document."""
    values = state.values
    records: list[ExperimentRecord] = list(values.get("experiments", []))
    world = world_of(settings.workspace)
    north_star = settings.north_star
    summary = summarise_run(values, world, settings.seed, north_star)
    goal = values.get("goal")
    kept = [r for r in records if ledger_decision(r) == "KEEP"]
    measured_total = 1.0
    for record in kept:
        effect = record.verdict.north_star if record.verdict else None
        measured_total *= 1 + (effect.relative if effect else 0.0)
    tiles = [
        (str(len(records)), "experiments"),
        (str(len(kept)), "kept"),
        (str(len(summary.vetoed)), "vetoed"),
        (_pct(measured_total - 1), f"{north_star} change, measured"),
        (_pct(summary.total_true_effect), f"{north_star} change, true"),
    ]
    tiles_html = "".join(
        f"<div class='tile'><b>{value}</b><span>{escape(label)}</span></div>"
        for value, label in tiles
    )
    trajectory = (
        f"<figure><img alt='north-star trajectory' src='{trajectory_figure(records, north_star)}'>"
        "</figure>"
        if records
        else "<p>No experiment finished yet.</p>"
    )
    workspace = escape(str(settings.workspace))
    goal_text = escape(goal.text if goal else str(values.get("goal_text", "")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AgentX report · {escape(state.run_id)}</title><style>{CSS}</style></head>
<body><main>
<h1>AgentX run report · {escape(state.run_id)}</h1>
<p class="sub">World <b>{escape(world)}</b> · workspace <code>{workspace}</code>
 · status <b>{escape(state.status)}</b><br>Goal: {goal_text}
 (objective <b>{escape(summary.objective)}</b>)</p>
<div class="tiles">{tiles_html}</div>
{_funnel_section(summary.funnel)}
<h2>North-star trajectory</h2>{trajectory}
<p class="note">Measured effects come from the A/B readout; true effects from the simulator's
ground truth (known only in the sandbox). A kept change moves the baseline for every later
experiment.</p>
{_ledger_section(records, north_star)}
{_vetoes_section(records)}
{_harness_section(values, settings)}
{_trace_section(values)}
</main></body></html>
"""


def write_report(state: RunState, settings: Settings, path: Path | None = None) -> Path:
    """Write the report (default ``WORKSPACE/reports/<run>.html``) and return its path."""
    target = path or Path(settings.workspace) / "reports" / f"{state.run_id}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(state, settings), encoding="utf-8")
    return target
