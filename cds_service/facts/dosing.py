"""T-DXd dose history (DESIGN §6.5, dose): every dose on record (administrations, statements, requests), each as
mg/kg (a flat dose converted with the body weight recorded nearest before it), and the levels given since a
reduction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.facts.evidence import Evidence
from cds_service.facts.label import STARTING_DOSE, below, level_of
from cds_service.facts.orders import read_quantity
from cds_service.facts.therapy import NOT_GIVEN
from cds_service.fhir.extraction import MedRecord
from cds_service.fhir.primitives import effective_date, ref_of
from cds_service.fhir.read import string
from cds_service.fhir.validation import validated

_KG = {"kg": 1.0, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237, "g": 0.001}


@dataclass(frozen=True)
class Weight:
    kg: float
    evidence: Evidence
    resource: dict[str, Any]


@dataclass(frozen=True)
class DoseGiven:
    """One T-DXd dose on record: mg/kg when known, else as written."""

    ref: str
    when: date | None
    mg_per_kg: float | None
    written: str


@dataclass
class DoseHistory:
    """The T-DXd doses on record, oldest first, and the weights to convert a flat dose."""

    doses: list[DoseGiven] = field(default_factory=list)
    weights: list[Weight] = field(default_factory=list)

    @property
    def reduced(self) -> list[DoseGiven]:
        """The doses given below the starting dose (a reduction is on record when there is any)."""
        return [d for d in self.doses if d.mg_per_kg is not None and below(d.mg_per_kg, STARTING_DOSE)]

    @property
    def lowest_since_reduction(self) -> float | None:
        """The lowest label level given since the first reduction (None: no reduction on record)."""
        reduced = self.reduced
        if not reduced:
            return None
        first = reduced[0]
        since = self.doses[self.doses.index(first) :]
        levels = [lv.mg_per_kg for d in since if d.mg_per_kg is not None and (lv := level_of(d.mg_per_kg))]
        return min(levels) if levels else min(d.mg_per_kg for d in reduced if d.mg_per_kg is not None)

    def without(self, refs: frozenset[str]) -> DoseHistory:
        """The history without these records (the orders being drafted, when the chart holds them too)."""
        if not any(d.ref in refs for d in self.doses):
            return self
        return DoseHistory([d for d in self.doses if d.ref not in refs], self.weights)

    def weight_on(self, when: date | None) -> Weight | None:
        """The valid weight recorded nearest before `when` (the latest one when `when` is not known). Weights are
        validated here, where one is used, not at extraction (a chart holds dozens)."""
        before = [w for w in self.weights if when is None or (w.evidence.when or date.min) <= when]
        for w in sorted(before, key=lambda w: w.evidence.when or date.min, reverse=True):
            if validated(w.resource, []) is not None:
                return w
        return None


def read_weight(obs: dict[str, Any]) -> Weight | None:
    q = obs.get("valueQuantity")
    if not isinstance(q, dict) or q.get("comparator") is not None:
        return None
    value = q.get("value")
    factor = _KG.get(str(string(q, "code") or string(q, "unit") or "kg").lower())
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or factor is None
        or not 20 <= value * factor <= 400
    ):
        return None
    kg = round(float(value) * factor, 1)
    return Weight(kg, Evidence(ref_of(obs), effective_date(obs), f"body weight {kg:g} kg"), obs)


def dose_history(meds: list[MedRecord], weights: list[dict[str, Any]]) -> DoseHistory:
    """Every T-DXd dose on record (the status policy was applied at extraction); the rules leave out the orders
    being drafted now (DoseHistory.without)."""
    history = DoseHistory(weights=[w for o in weights if (w := read_weight(o))])
    for rec in meds:
        r = rec.resource
        if rec.drug.value_set != "tdxd" or string(r, "status") in NOT_GIVEN:
            continue
        per_kg, flat, written = read_quantity(r)
        if per_kg is None and written is None:
            continue  # a record without a dose says nothing about levels
        when = effective_date(r)  # effective[x], a request's authoredOn
        if per_kg is None and flat is not None and (w := history.weight_on(when)):
            per_kg = round(flat / w.kg, 2)
            written = f"{written}, {per_kg:g} mg/kg at {w.kg:g} kg"
        history.doses.append(DoseGiven(ref_of(r), when, per_kg, written or "dose not stated"))
    history.doses.sort(key=lambda d: d.when or date.min)
    return history
