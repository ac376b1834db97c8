"""Evidence and dates: what every derived fact carries so a card can cite it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date/dateTime/instant (partial dates take the first day)."""
    if not isinstance(value, str):
        return None
    m = _DATE.match(value)
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


def months_between(earlier: date, later: date) -> int:
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return months - (1 if later.day < earlier.day else 0)


def fmt(d: date | None) -> str:
    return d.isoformat() if d else "date unknown"


@dataclass(frozen=True)
class Evidence:
    """One resource a fact stands on: its reference, date and what it said."""

    ref: str
    when: date | None
    text: str

    def line(self) -> str:
        return f"{self.text} ({fmt(self.when)}; {self.ref})"


def ref_of(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


def effective_date(resource: dict[str, Any]) -> date | None:
    """effective[x] (or onset, performed, authoredOn), else issued / recordedDate."""
    for key in ("effectiveDateTime", "onsetDateTime", "performedDateTime", "authoredOn", "occurrenceDateTime"):
        d = parse_date(resource.get(key))
        if d:
            return d
    for key in ("effectivePeriod", "onsetPeriod", "performedPeriod"):
        period = resource.get(key)
        if isinstance(period, dict):
            d = parse_date(period.get("start")) or parse_date(period.get("end"))
            if d:
                return d
    for key in ("effectiveInstant", "issued", "recordedDate", "dateAsserted"):
        d = parse_date(resource.get(key))
        if d:
            return d
    return None
