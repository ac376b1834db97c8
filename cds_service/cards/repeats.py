"""Repeats held back: order-sign leaves out an info card that the same user was shown, unchanged, for the same
patient within `cards.repeat_window_minutes`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cds_service.storage.first_use import CacheUnavailable, FirstUseMemory
from cds_service.storage.tenancy import PatientKey

ALWAYS_REPEAT = {"ild-monitoring"}  # the safety reminder beside a T-DXd order


class Repeats:
    """Remembers (by a hash of user, patient of one EHR and card content, in a first-use memory) which cards were
    shown."""

    def __init__(self, shown: FirstUseMemory, window_minutes: int) -> None:
        self.shown = shown
        self.window = window_minutes * 60

    def without_repeats(
        self,
        cards: list[dict[str, Any]],
        hook: str,
        context: dict[str, Any],
        patient: PatientKey,
        missed: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The cards to show. Warnings, critical cards and the ILD monitoring reminder always repeat; order-select
        keeps every card (it fires on each edit and the EHR replaces its card list) but is remembered. A memory that
        cannot be read holds nothing back ("repeat read" is added to missed)."""
        if not self.window or hook not in ("order-select", "order-sign"):
            return cards
        kept = []
        for card in cards:
            if card["indicator"] != "info" or card["source"]["topic"]["code"] in ALWAYS_REPEAT:
                kept.append(card)
                continue
            seen = [
                context.get("userId"),
                [patient.issuer, patient.fhir_server, patient.patient_id],  # the same ids in another EHR: other people
                card["source"]["topic"]["code"],
                card["summary"],
                card["detail"],
            ]
            key = hashlib.sha256(json.dumps(seen, default=str).encode()).hexdigest()
            try:
                new = self.shown.first_use(key, self.window)
            except CacheUnavailable:
                new = True  # not known: show it, and say so (missed: the audit line and a metric)
                if missed is not None:
                    missed.append("repeat read")
            if new or hook == "order-select":
                kept.append(card)
        return kept
