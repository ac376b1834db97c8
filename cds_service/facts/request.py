"""What belongs to one request and not to the chart: the hook, the patient, the drafted orders (read once, here),
what the EHR could not give, and the records the gatherer set aside. Chart facts (facts/derive.py) are what a
chart determines and what the memo keeps; this is read afresh on every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds_service.facts.orders import DraftOrder, read_drafts
from cds_service.fhir.terminology import Terminology


@dataclass(frozen=True)
class RequestContext:
    """One hook request's context, as the rules see it."""

    hook: str
    patient_id: str = ""
    drafts: tuple[DraftOrder, ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)  # prefetch key -> why it could not be read
    set_aside: tuple[str, ...] = ()  # records left out by the gatherer (counts, never the other ids)

    @classmethod
    def of(
        cls,
        hook: str,
        context: dict[str, Any],
        ts: Terminology,
        unavailable: dict[str, str] | None = None,
        set_aside: list[str] | tuple[str, ...] = (),
    ) -> RequestContext:
        """The request context of a CDS Hooks `context` (its drafts parsed here, once)."""
        patient = context.get("patientId")
        return cls(
            hook,
            "" if patient is None else str(patient),
            tuple(read_drafts(context, ts)),
            dict(unavailable or {}),
            tuple(set_aside),
        )

    @property
    def names_medication(self) -> bool:
        """Some drafted order names a medication (order-select fires on every keystroke, before one does)."""
        return any(d.names_medication for d in self.drafts)

    @property
    def draft_refs(self) -> frozenset[str]:
        return frozenset(d.ref for d in self.drafts)

    def orders_in_play(self) -> list[DraftOrder]:
        """The orders a card may stand beside: selected ones on order-select, all drafts on order-sign."""
        if self.hook == "order-select":
            return [d for d in self.drafts if d.selected]
        if self.hook == "order-sign":
            return list(self.drafts)
        return []

    def systemic_order(self) -> DraftOrder | None:
        """A drafted systemic breast-cancer therapy other than T-DXd (the moment to reconsider HER2)."""
        return next((d for d in self.orders_in_play() if d.is_systemic and not d.is_tdxd), None)

    def tdxd_order(self) -> DraftOrder | None:
        return next((d for d in self.orders_in_play() if d.is_tdxd), None)

    def not_available(self, chart_notes: list[str]) -> list[str]:
        """What a card says it could not use: sources the EHR could not give, records set aside (the gatherer's,
        then the chart's own)."""
        lines = [f"data not available from the EHR: {key} ({why})" for key, why in sorted(self.unavailable.items())]
        return lines + list(self.set_aside) + list(chart_notes)
