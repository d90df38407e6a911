"""The four evidence sources a proposal can cite."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentx.models import Evidence, KnowledgeCard
from agentx.research.catalog import Technique
from agentx.target.models import DataReport, SystemDescription

# Data-report fields a technique's required signals can refer to.
_SIGNALS = {
    "position_bias_eta": lambda r: f"position-bias exponent ~{r.position_bias_eta:.2f}",
    "tail_impression_share": lambda r: (
        f"tail items get {r.tail_impression_share:.1%} of impressions"
    ),
    "cold_start_item_share": lambda r: f"{r.cold_start_item_share:.1%} of items are cold-start",
    "item_popularity_gini": lambda r: f"item popularity Gini {r.item_popularity_gini:.2f}",
    "user_activity_gini": lambda r: f"user activity Gini {r.user_activity_gini:.2f}",
    "ctr": lambda r: f"logged CTR {r.ctr:.3f}",
    "segment_mix": lambda r: (
        "logged users: "
        + ", ".join(f"{share:.0%} {segment}" for segment, share in sorted(r.segment_mix.items()))
    ),
}


@dataclass
class EvidenceBundle:
    """Everything the brainstorm draws on for one batch."""

    system: SystemDescription
    data: DataReport
    catalog: dict[str, Technique]
    cards: list[KnowledgeCard] = field(default_factory=list)
    similar: list[KnowledgeCard] = field(default_factory=list)


def cite(technique: Technique, bundle: EvidenceBundle, world: str) -> list[Evidence]:
    """Evidence for proposing ``technique``: research, system, data and memory."""
    cited = [Evidence(source="research", ref=technique.id, summary=technique.summary)]
    paths = {info.path for info in bundle.system.files}
    for location in technique.locations:
        if location in paths or location in {"config.toml"}:
            cited.append(Evidence(source="system", ref=location, summary=f"{location} exists"))
            break
    for signal in technique.signals:
        if signal in _SIGNALS:
            cited.append(Evidence(source="data", ref=signal, summary=_SIGNALS[signal](bundle.data)))
    for card in bundle.cards:
        if card.technique == technique.id and card.world == world:
            cited.append(Evidence(source="memory", ref=card.id, summary=card.title))
    for card in bundle.similar:
        if card.technique == technique.id and all(e.ref != card.id for e in cited):
            cited.append(Evidence(source="memory", ref=card.id, summary=card.title))
    return cited
