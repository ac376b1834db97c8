"""Cards held back and why: a topic in shadow mode, a repeat, a snooze. Works on the decisions (and their evidence
digest: a snooze "until the evidence changes" ends when it changes), and returns the cards to show and one ledger
entry per card, shown or not."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from cds_service.cards.repeats import Repeats
from cds_service.facts.request import RequestContext
from cds_service.rules.decision import CardDecision
from cds_service.rules.ruleset import RULESET_VERSION
from cds_service.storage.ledger import Entry, Ledger
from cds_service.storage.tenancy import PatientKey

Why = Literal["shadow", "repeat", "snooze"]
HELD_BACK: dict[Why, str] = {
    "shadow": "shadow mode (recorded in the ledger, not returned)",
    "repeat": "shown to this user for this patient within cards.repeat_window_minutes",
    "snooze": "snoozed after an override of the same topic for this patient",
}


@dataclass(frozen=True)
class Decided:
    """One decision, its topic's mode, and the card rendered from it."""

    decision: CardDecision
    mode: Literal["live", "shadow"]
    card: dict[str, Any]


@dataclass
class Shown:
    """What goes back to the EHR, what the ledger records, and why cards were held back."""

    cards: list[dict[str, Any]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    held: list[tuple[str, Why]] = field(default_factory=list)  # (topic, why) of each card held back
    missed: list[str] = field(default_factory=list)  # what could not be read and was taken as not known

    @property
    def counts(self) -> dict[Why, int]:
        """How many cards were held back, by why (in the order first met)."""
        out: dict[Why, int] = {}
        for _, why in self.held:
            out[why] = out.get(why, 0) + 1
        return out


def evidence_digest(d: CardDecision) -> str:
    """What the card is about, without the order in progress: a snooze 'until the evidence changes' ends when
    this changes."""
    lines = (d.topic, d.summary, *(e for e in d.evidence if not e.startswith("order in progress")), *d.unknowns)
    return _digest(lines)


@lru_cache(maxsize=4096)
def _digest(lines: tuple[str, ...]) -> str:
    """sha256 of the lines as a JSON list (the stored format: snoozes in the database compare against it)."""
    return hashlib.sha256(json.dumps(list(lines)).encode()).hexdigest()


class HoldBack:
    """Decides, card by card, whether it is shown: shadow first, then a repeat, then a snooze (info cards, when
    snoozes are configured)."""

    def __init__(self, repeats: Repeats, ledger: Ledger | None, snooze: bool) -> None:
        self.repeats = repeats
        self.ledger = ledger
        self.snooze = snooze

    def __call__(
        self,
        decided: list[Decided],
        request: RequestContext,
        user: object,
        patient: PatientKey,
        service_id: str,
        client: str | None,
    ) -> Shown:
        shown = Shown()
        repeat = [self._repeat(d.decision, request.hook, user, patient, shown.missed) for d in decided]
        patient_hash = self.ledger.patient_hash(patient) if self.ledger else None
        for d, is_repeat in zip(decided, repeat, strict=True):
            digest = evidence_digest(d.decision)
            why: Why | None = (
                "shadow"
                if d.mode == "shadow"
                else "repeat"
                if is_repeat
                else "snooze"
                if d.decision.indicator == "info"
                and self.ledger
                and self.snooze
                and self.ledger.snoozed(patient, d.decision.topic, digest)
                else None
            )
            if why:
                shown.held.append((d.decision.topic, why))
            else:
                shown.cards.append(d.card)
            shown.entries.append(
                Entry(
                    card_uuid=d.card["uuid"],
                    service_id=service_id,
                    hook=request.hook,
                    topic=d.decision.topic,
                    indicator=d.decision.indicator,
                    ruleset_version=RULESET_VERSION,
                    evidence_digest=digest,
                    pathways=",".join(d.decision.pathways) or None,
                    client=client,
                    held_back=why,
                    patient_hash=patient_hash,
                )
            )
        return shown

    def _repeat(self, d: CardDecision, hook: str, user: object, patient: PatientKey, missed: list[str]) -> bool:
        try:
            return self.repeats.is_repeat(d, hook, user, patient, missed)
        except Exception as exc:  # noqa: BLE001 - repeats cannot be told: show the card
            logging.getLogger("her2_cds").error("repeat check failed: %s", type(exc).__name__)
            return False
