"""What a stage of the sweep counted (lines, resources, problems), with where the first few problems are: file and
line or byte, never the content (it is patient data)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

PLACES_KEPT = 5  # positions kept per kind of problem


@dataclass
class Tally:
    """Counts by kind, and the first positions of each kind."""

    counts: Counter[str] = field(default_factory=Counter)
    places: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, where: str | None = None, n: int = 1) -> None:
        self.counts[kind] += n
        if where is not None:
            kept = self.places.setdefault(kind, [])
            if len(kept) < PLACES_KEPT:
                kept.append(where)

    def merge(self, other: Tally) -> Tally:
        self.counts.update(other.counts)
        for kind, places in other.places.items():
            kept = self.places.setdefault(kind, [])
            kept += places[: PLACES_KEPT - len(kept)]
        return self

    def as_json(self) -> dict[str, object]:
        return {"counts": dict(sorted(self.counts.items())), "places": dict(sorted(self.places.items()))}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Tally:
        counts = data.get("counts")
        places = data.get("places")
        return cls(
            Counter(counts if isinstance(counts, dict) else {}),
            {k: list(v) for k, v in (places if isinstance(places, dict) else {}).items()},
        )
