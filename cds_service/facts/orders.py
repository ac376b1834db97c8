"""The draft orders in play (order-select / order-sign context): which drug, which dose."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cds_service.fhir.extraction import medication_concept
from cds_service.fhir.primitives import ref_of
from cds_service.fhir.read import concept, draft_resources, items, names_medication, string
from cds_service.fhir.terminology import DRUG_CLASSES, Match, Terminology, note_texts, texts

MG_PER_KG = re.compile(r"(\d+(?:\.\d+)?)\s*mg\s*/\s*kg", re.I)
SYSTEMIC_CLASSES = frozenset(DRUG_CLASSES)  # every drug class the service knows is a systemic therapy


@dataclass
class DraftOrder:
    ref: str
    selected: bool
    drug: Match | None
    dose_mg_per_kg: float | None
    dose_text: str | None
    resource: dict[str, Any] | None = None  # the drafted resource, as the EHR sent it
    dose_mg: float | None = None  # a flat dose in mg (converted to mg/kg with a recorded weight, if any)
    names_medication: bool = True  # the draft names a medication at all (recognised or not)

    @property
    def is_tdxd(self) -> bool:
        return bool(self.drug and self.drug.value_set == "tdxd")

    @property
    def is_systemic(self) -> bool:
        return bool(self.drug and self.drug.value_set in SYSTEMIC_CLASSES)


MG = re.compile(r"(\d+(?:\.\d+)?)\s*mg(?!\s*/)", re.I)
_MG_PER_KG_UNITS = {"mg/kg", "mg/kg/dose", "mg/kg{dose}"}


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _dosages(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's dosageInstruction, a statement's dosage, an administration's single dosage."""
    found = resource.get("dosageInstruction") or resource.get("dosage") or []
    found = [found] if isinstance(found, dict) else found
    return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []


def read_quantity(resource: dict[str, Any]) -> tuple[float | None, float | None, str | None]:
    """(mg/kg, flat mg, as written) of the first dose a medication record states, structured or in its text."""
    for d in _dosages(resource):
        quantities = [dr.get("doseQuantity") for dr in items(d, "doseAndRate")]
        quantities.append(d.get("dose"))  # MedicationAdministration.dosage.dose
        for q in quantities:
            value = _number(q.get("value")) if isinstance(q, dict) else None
            if q is None or value is None:
                continue
            unit = str(string(q, "code") or string(q, "unit") or "")
            text = f"{value:g} {q.get('unit') or unit}".strip()
            norm = unit.replace(" ", "").lower()
            if norm in _MG_PER_KG_UNITS:
                return value, None, text
            return None, (value if norm == "mg" else None), text
        if (words := string(d, "text")) is not None:
            m = MG_PER_KG.search(words)
            flat = MG.search(words) if not m else None
            return (float(m.group(1)) if m else None), (float(flat.group(1)) if flat else None), words[:80]
    return None, None, None


def read_drafts(context: dict[str, Any], ts: Terminology) -> list[DraftOrder]:
    """Draft orders from context.draftOrders, defensively (the sandbox sends non-R4 shapes)."""
    selections = {s for s in context.get("selections") or [] if isinstance(s, str)}
    out = []
    for res in draft_resources(context):
        try:
            out.append(_read_one(res, selections, ts))
        except (TypeError, AttributeError, ValueError, KeyError):
            ref = ref_of(res)
            selected = ref in selections or not selections
            out.append(
                DraftOrder(ref, selected, None, None, "order not readable", names_medication=names_medication(res))
            )
    return out


def _read_one(res: dict[str, Any], selections: set[str], ts: Terminology) -> DraftOrder:
    ref = ref_of(res)
    drug = None
    if string(res, "resourceType") in ("MedicationRequest", "MedicationStatement", "MedicationAdministration"):
        contained = {str(string(c, "id")): c for c in items(res, "contained")}
        med = medication_concept(res, contained)
        drug = ts.classify_drug(med) if med else None
        if drug is None and not med:
            for t in texts(concept(res, "code")) + note_texts(res):
                drug = ts.classify_drug({"text": t}) or drug
    dose, flat, dose_text = read_quantity(res) if drug else (None, None, None)
    return DraftOrder(ref, ref in selections or not selections, drug, dose, dose_text, res, flat, names_medication(res))
