"""What a rule decides: a card's content before it becomes CDS Hooks JSON (no uuids, no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds_service.facts.derive import Facts
from cds_service.facts.orders import DraftOrder

ORDER_HOOKS = ("order-select", "order-sign")


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


def orders_in_play(facts: Facts, hook: str) -> list[DraftOrder]:
    """The orders a card may stand beside: selected ones on order-select, all drafts on order-sign."""
    if hook == "order-select":
        return [d for d in facts.drafts if d.selected]
    if hook == "order-sign":
        return list(facts.drafts)
    return []


def systemic_order(facts: Facts, hook: str) -> DraftOrder | None:
    """A drafted systemic breast-cancer therapy other than T-DXd (the moment to reconsider HER2)."""
    return next((d for d in orders_in_play(facts, hook) if d.is_systemic and not d.is_tdxd), None)


def tdxd_order(facts: Facts, hook: str) -> DraftOrder | None:
    return next((d for d in orders_in_play(facts, hook) if d.is_tdxd), None)


def unavailable_lines(facts: Facts) -> list[str]:
    lines = [f"data not available from the EHR: {key} ({why})" for key, why in sorted(facts.unavailable.items())]
    return lines + facts.data_notes
