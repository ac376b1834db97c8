"""Cards held back and why: a topic's mode (live, shadow, off), the reasons a card is derived but not returned,
and the digest of what a card is about (a snooze "until the evidence changes" ends when it changes)."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from cds_service.rules.decision import CardDecision

HELD_BACK = {
    "shadow": "shadow mode (recorded in the ledger, not returned)",
    "repeat": "shown to this user for this patient within cards.repeat_window_minutes",
    "snooze": "snoozed after an override of the same topic for this patient",
}


def topic_mode(cfg: dict[str, Any]) -> str:
    """live | shadow | off (`enabled: false` is off)."""
    return "off" if not cfg["enabled"] else str(cfg["mode"])


def evidence_digest(d: CardDecision) -> str:
    """What the card is about, without the order in progress: a snooze 'until the evidence changes' ends when
    this changes."""
    lines = (d.topic, d.summary, *(e for e in d.evidence if not e.startswith("order in progress")), *d.unknowns)
    return _digest(lines)


@lru_cache(maxsize=4096)
def _digest(lines: tuple[str, ...]) -> str:
    """sha256 of the lines as a JSON list (the stored format: snoozes in the database compare against it)."""
    return hashlib.sha256(json.dumps(list(lines)).encode()).hexdigest()
