"""What a rule decides: a card's content before it becomes CDS Hooks JSON (no uuids, no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Suggestion:
    """Resources to create, drafted orders to update (whole resource) or delete (by reference)."""

    label: str
    resources: list[dict[str, Any]]
    recommended: bool | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


@dataclass
class CardDecision:
    """One card: topic, indicator, a summary under 140 characters, evidence and unknowns."""

    topic: str
    indicator: str
    summary: str
    evidence: list[str]
    unknowns: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    selection: str = "at-most-one"
    links: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    pathways: list[str] = field(default_factory=list)  # the label pathways the card names (DB-06, DB-04)


def not_evaluated(topic: str, label: str) -> CardDecision:
    """The card that stands in for a topic (label: its name) whose derivation failed (no internal detail)."""
    return CardDecision(
        topic=topic,
        indicator="info",
        summary=f"her2-cds could not evaluate {label} for this patient: review it yourself",
        evidence=[],
        unknowns=[
            f"the service could not evaluate {label} for this request; the other "
            "checks ran. The failure was recorded for the service team."
        ],
    )
