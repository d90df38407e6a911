"""Goal intake: free text → a normalised :class:`~agentx.models.Goal`.

Offline, the goal is parsed against the target's metric vocabulary: the first metric
named is the objective, metrics named after "without", "not hurt", "keep" or "protect"
become guardrails, and "do not touch X" / "no X" phrases become forbidden levers.
"""

from __future__ import annotations

import re

from agentx.models import Goal

# Words people use for each metric; keys are the target's metric names.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "watch_time": ("watch time", "watch-time", "watchtime", "dwell", "time spent", "watch_time"),
    "clicks": ("clicks", "click volume"),
    "ctr": ("ctr", "click-through", "click through"),
    "active_days": ("return visits", "retention", "active days", "returning", "active_days"),
    "diversity": ("diversity", "variety"),
    "tail_share": ("long tail", "long-tail", "tail share", "tail_share", "creator exposure"),
    "latency_ms": ("latency", "response time", "latency_ms", "slow"),
    "errors": ("errors", "error rate", "failures"),
    "coverage": ("coverage", "catalogue coverage", "catalog coverage"),
}
_GUARD_CUES = (
    "without",
    "not hurt",
    "not hurting",
    "keep",
    "protect",
    "while preserving",
    "no drop",
)
_FORBID = re.compile(r"(?:do not|don't|never) (?:touch|change|modify) ([\w\s,/.-]+?)(?:[.;]|$)")
_DECREASE = re.compile(r"\b(reduce|lower|decrease|cut|minimi[sz]e)\b")
_UNKNOWN = re.compile(
    r"\b(?:raise|increase|improve|grow|boost|maximi[sz]e|reduce|lower|cut)\s+"
    r"(?:the\s+)?([a-z][\w-]*(?:\s[a-z][\w-]*)?)"
)


class GoalError(ValueError):
    """The goal cannot be mapped onto the target's metrics."""


def _mentions(text: str, known: list[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for metric in known:
        for phrase in (*SYNONYMS.get(metric, ()), metric):
            for match in re.finditer(rf"(?<![\w]){re.escape(phrase)}(?![\w])", text):
                found.append((match.start(), metric))
    return sorted(set(found))


def parse_goal(text: str, known_metrics: list[str], default_guardrails: list[str]) -> Goal:
    """Normalise ``text`` against ``known_metrics``.

    Raises:
        GoalError: no known metric is named; the message lists the known ones.
    """
    lowered = " ".join(text.lower().split())
    mentions = _mentions(lowered, known_metrics)
    if not mentions:
        wanted = _UNKNOWN.search(lowered)
        named = f" ({wanted.group(1)!r} is not one)" if wanted else ""
        raise GoalError(
            f"the goal names no known metric{named}; known metrics: {', '.join(known_metrics)}"
        )
    objective_pos, objective = mentions[0]
    cue_positions = [lowered.find(cue) for cue in _GUARD_CUES if cue in lowered]
    guard_start = min(cue_positions) if cue_positions else len(lowered)
    guardrails = [m for pos, m in mentions if pos > guard_start and m != objective]
    for metric in default_guardrails:
        if metric not in guardrails and metric != objective:
            guardrails.append(metric)
    before = lowered[:objective_pos]
    direction = "decrease" if _DECREASE.search(before[-40:]) else "increase"
    forbidden = [
        part.strip()
        for match in _FORBID.finditer(lowered)
        for part in re.split(r",|\band\b", match.group(1))
        if part.strip()
    ]
    questions = []
    if objective in ("clicks", "ctr"):
        questions.append("Clicks can rise on clickbait: should watch time be a guardrail?")
    return Goal(
        text=text,
        objective=objective,
        direction=direction,
        forbidden=forbidden,
        guardrails=list(dict.fromkeys(guardrails)),
        requested_outputs=["ranked proposals", "verdicts", "knowledge cards"],
        open_questions=questions,
    )
