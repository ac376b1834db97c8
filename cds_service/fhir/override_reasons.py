"""The override reasons a card offers: this service's reasons (CodeSystem override-reason), each offered as the HL7
non-adherence reason code that fits it (CDS Hooks 3.0 "suggested categories", so that override rates compare across
sites), or as its own code where none fits (ConceptMap override-reason-to-non-adherence)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.fhir.terminology import Terminology

OURS = "http://her2-cds.org/fhir/CodeSystem/override-reason"
HL7 = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
MAP_ID = "ConceptMap/override-reason-to-non-adherence"


@dataclass(frozen=True)
class Reason:
    """One override reason: ours, the coding a card offers for it, and its HL7 category (None: none fits)."""

    code: str
    display: str
    offered: dict[str, str]  # {system, code, display}
    category: str | None = None  # an HL7 non-adherence category code
    category_display: str | None = None


def reasons(ts: Terminology) -> dict[str, Reason]:
    """Our reasons by our code, each with what a card offers for it."""
    displays = {c["code"]: c["display"] for c in ts.resources[f"CodeSystem/{OURS.rsplit('/', 1)[-1]}"]["concept"]}
    mapped: dict[str, list[dict[str, Any]]] = {}
    for group in ts.resources[MAP_ID]["group"]:
        if group["source"] == OURS and group["target"] == HL7:
            mapped.update({e["code"]: e.get("target", []) for e in group["element"]})
    out = {}
    for code, display in displays.items():
        targets = mapped.get(code, [])
        same = next((t for t in targets if t.get("equivalence") in ("equivalent", "equal") and t.get("code")), None)
        wider = next((t for t in targets if t.get("equivalence") == "wider" and t.get("code")), None)
        offered = (
            {"system": HL7, "code": same["code"], "display": same["display"]}
            if same
            else {"system": OURS, "code": code, "display": display}
        )
        out[code] = Reason(
            code, display, offered, wider["code"] if wider else None, wider.get("display") if wider else None
        )
    return out


def by_any_code(ts: Terminology) -> dict[str, Reason]:
    """Our reasons by our code and by the code a card offers for them (feedback carries the offered one)."""
    found = reasons(ts)
    return {**{r.offered["code"]: r for r in found.values()}, **found}


def snooze_rules(rules: Mapping[str, Mapping[str, Any]], ts: Terminology) -> dict[str, Mapping[str, Any]]:
    """cards.snooze, keyed by every code that names each rule's reason (ours and the offered HL7 code), so that a
    rule written with either fires on the feedback the EHR sends back."""
    known = by_any_code(ts)
    out: dict[str, Mapping[str, Any]] = {}
    for key, rule in rules.items():
        reason = known.get(key)
        for code in (key, *((reason.code, reason.offered["code"]) if reason else ())):
            out.setdefault(code, rule)
    return out
