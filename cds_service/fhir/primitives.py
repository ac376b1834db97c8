"""FHIR primitives read from raw JSON: dates (a year or a month too), a resource's effective date, its reference."""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


class PartialDate(date):
    """A FHIR date with only a year or a month: it compares as its first day, prints as recorded
    ("2016", "2016-05"), and `latest` is its last possible day."""

    latest: date
    precision: str  # "year" | "month"

    def isoformat(self) -> str:
        return f"{self.year:04d}" if self.precision == "year" else f"{self.year:04d}-{self.month:02d}"

    __str__ = isoformat


def latest_day(d: date) -> date:
    """The last day a (possibly partial) date can stand for."""
    return getattr(d, "latest", d)


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date/dateTime/instant; a year or year-month is a PartialDate.

    >>> parse_date("2024-03-05T10:00:00+01:00"), parse_date("2024-03").isoformat(), parse_date(20240305)
    (datetime.date(2024, 3, 5), '2024-03', None)
    """
    if not isinstance(value, str):
        return None
    return _parse_date(value)


@lru_cache(maxsize=65_536)
def _parse_date(value: str) -> date | None:
    """Memoised: a chart repeats its dates, and the result (a date, or a PartialDate set up once) is never
    changed after it is made."""
    m = _DATE.match(value)
    if not m:
        return None
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    try:
        if day:
            return date(year, int(month), int(day))
        partial = PartialDate(year, int(month or 1), 1)
        partial.precision = "year" if month is None else "month"
        partial.latest = (
            date(year, 12, 31)
            if month is None
            else date(year + int(month) // 12, int(month) % 12 + 1, 1) - timedelta(days=1)
        )
    except ValueError:
        return None
    return partial


def months_between(earlier: date, later: date) -> int:
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return months - (1 if later.day < earlier.day else 0)


def fmt(d: date | None) -> str:
    return d.isoformat() if d else "date unknown"


def ref_of(resource: dict[str, Any]) -> str:
    """Type/id; a result read from a report's text names the report (`_ref`)."""
    if isinstance(resource.get("_ref"), str):
        return resource["_ref"]
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


def effective_date(resource: dict[str, Any]) -> date | None:
    """effective[x] (or onset, performed, authoredOn), else issued / recordedDate.

    >>> effective_date({"effectivePeriod": {"end": "2024-02-01"}, "issued": "2024-03-01"})
    datetime.date(2024, 2, 1)
    >>> effective_date({"issued": "2024-03-01T08:00:00Z"})
    datetime.date(2024, 3, 1)
    """
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
