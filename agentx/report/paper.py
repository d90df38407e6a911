"""The paper's funnel, the yardstick a run's funnel is shown beside.

"AgentX: Towards Agent-Driven Self-Iteration of Industrial Recommender Systems"
(Kuaishou, 2026) reports, for its deployment on the Kuaishou app, that three AgentX
workers turned 374 experiment ideas into 10 publishable (kept) results. The stages in
between are not given in the summary we rely on, so they stay ``None`` rather than
being made up; the report shows them as "not reported".
"""

from __future__ import annotations

from agentx.graph.state import FUNNEL_KEYS

PAPER_FUNNEL: dict[str, int | None] = {
    "ideas": 374,
    "admitted": None,
    "implemented": None,
    "launched": None,
    "kept": 10,
}
PAPER_NOTE = (
    "Paper: three AgentX workers on the Kuaishou app, 374 ideas → 10 publishable results "
    "(intermediate stages not reported)."
)

assert tuple(PAPER_FUNNEL) == FUNNEL_KEYS  # one order for both columns
