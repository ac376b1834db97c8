"""The draft orders in play (order-select / order-sign context): which drug, which dose."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cds_service.fhir.extraction import medication_concept
from cds_service.fhir.primitives import ref_of
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

    @property
    def is_tdxd(self) -> bool:
        return bool(self.drug and self.drug.value_set == "tdxd")

    @property
    def is_systemic(self) -> bool:
        return bool(self.drug and self.drug.value_set in SYSTEMIC_CLASSES)


def read_dose(order: dict[str, Any]) -> tuple[float | None, str | None]:
    for d in order.get("dosageInstruction") or []:
        if not isinstance(d, dict):
            continue
        for dr in d.get("doseAndRate") or []:
            q = dr.get("doseQuantity") if isinstance(dr, dict) else None
            if (
                isinstance(q, dict)
                and isinstance(q.get("value"), (int, float))
                and not isinstance(q["value"], bool)
                and math.isfinite(q["value"])
            ):
                unit = str(q.get("unit") or q.get("code") or "")
                text = f"{q['value']:g} {unit}".strip()
                if unit.replace(" ", "").lower() in ("mg/kg", "mg/kg/dose"):
                    return float(q["value"]), text
                return None, text
        if isinstance(d.get("text"), str):
            m = MG_PER_KG.search(d["text"])
            return (float(m.group(1)) if m else None), d["text"][:80]
    return None, None


def read_drafts(context: dict[str, Any], ts: Terminology) -> list[DraftOrder]:
    """Draft orders from context.draftOrders, defensively (the sandbox sends non-R4 shapes)."""
    bundle = context.get("draftOrders")
    selections = set(context.get("selections") or [])
    out = []
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for e in entries if isinstance(entries, list) else []:
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict):
            continue
        try:
            out.append(_read_one(res, selections, ts))
        except (TypeError, AttributeError, ValueError, KeyError):
            out.append(
                DraftOrder(ref_of(res), ref_of(res) in selections or not selections, None, None, "order not readable")
            )
    return out


def _read_one(res: dict[str, Any], selections: set[str], ts: Terminology) -> DraftOrder:
    ref = ref_of(res)
    drug = None
    if res.get("resourceType") in ("MedicationRequest", "MedicationStatement", "MedicationAdministration"):
        contained = {str(c.get("id")): c for c in res.get("contained") or [] if isinstance(c, dict)}
        concept = medication_concept(res, contained)
        drug = ts.classify_drug(concept) if concept else None
        if drug is None and not concept:
            for t in texts(res.get("code")) + note_texts(res):
                drug = ts.classify_drug({"text": t}) or drug
    dose, dose_text = read_dose(res) if drug else (None, None)
    return DraftOrder(ref, ref in selections or not selections, drug, dose, dose_text, res)
