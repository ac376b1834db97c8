"""Repeats held back: order-sign leaves out an info card that the same user was shown, unchanged, for the same
patient within `cards.repeat_window_minutes`."""

from __future__ import annotations

import hashlib
import json

from cds_service.rules.decision import CardDecision
from cds_service.storage.first_use import CacheUnavailable, FirstUseMemory
from cds_service.storage.tenancy import PatientKey


class Repeats:
    """Remembers (by a hash of user, patient of one EHR and card content, in a first-use memory) which cards were
    shown."""

    def __init__(self, shown: FirstUseMemory, window_minutes: int, always: frozenset[str] = frozenset()) -> None:
        self.shown = shown
        self.window = window_minutes * 60
        self.always = always  # the topics whose cards always repeat (the registry's repeat policy)

    def is_repeat(
        self, d: CardDecision, hook: str, user: object, patient: PatientKey, missed: list[str] | None = None
    ) -> bool:
        """Whether to leave this card out as a repeat. Warnings, critical cards and the topics that always repeat
        (the ILD monitoring reminder) never are; order-select keeps every card (it fires on each edit and the EHR
        replaces its card list) but remembers it. A memory that cannot be read holds nothing back ("repeat read" is
        added to missed)."""
        if not self.window or hook not in ("order-select", "order-sign"):
            return False
        if d.indicator != "info" or d.topic in self.always:
            return False
        seen = [
            user,
            [patient.issuer, patient.fhir_server, patient.patient_id],  # the same ids in another EHR: other people
            d.topic,
            d.summary,
            d.evidence,
            d.unknowns,
            d.advice,
            [s.label for s in d.suggestions],
        ]
        key = hashlib.sha256(json.dumps(seen, default=str).encode()).hexdigest()
        try:
            new = self.shown.first_use(key, self.window)
        except CacheUnavailable:
            new = True  # not known: show it, and say so (missed: the audit line and a metric)
            if missed is not None:
                missed.append("repeat read")
        return not new and hook == "order-sign"
