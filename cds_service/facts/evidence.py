"""Evidence: what every derived fact carries so that a card can cite it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds_service.fhir.primitives import fmt


@dataclass(frozen=True)
class Evidence:
    """One resource a fact stands on: its reference, date and what it said."""

    ref: str
    when: date | None
    text: str

    def line(self) -> str:
        return f"{self.text} ({fmt(self.when)}; {self.ref})"
