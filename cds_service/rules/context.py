"""What a card stands beside besides the clinical picture: the orders in play on this hook, and the data the EHR
could not give."""

from __future__ import annotations

from cds_service.facts.derive import Facts
from cds_service.facts.orders import DraftOrder


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
