"""One status policy for every resource type (DESIGN §6.1): what is ignored, what is said but not
counted, and how results of one specimen rank against each other."""

from __future__ import annotations

from typing import Any

from cds_service.fhir.primitives import ref_of
from cds_service.fhir.terminology import codings

IGNORE, UNCONFIRMED, USE = "ignore", "unconfirmed", "use"

# Observation / DiagnosticReport: no result (registered), withdrawn (cancelled) or a mistake.
_RESULT_IGNORED = {"entered-in-error", "cancelled", "registered"}
# Condition.verificationStatus
_CONDITION_IGNORED = {"entered-in-error", "refuted"}
_CONDITION_UNCONFIRMED = {"unconfirmed", "provisional", "differential"}
# Procedure.status: not done, or not yet done.
_PROCEDURE_IGNORED = {"entered-in-error", "not-done", "preparation"}
# MedicationStatement / MedicationRequest / MedicationAdministration: never given, or not yet decided.
_MEDICATION_IGNORED = {"entered-in-error", "not-taken", "not-done", "cancelled", "draft", "intended", "unknown"}
MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
_RESULT_RANK = {"final": 2, "amended": 2, "corrected": 2, "appended": 2, "preliminary": 1}


def verdict(resource: dict[str, Any]) -> tuple[str, str | None]:
    """(IGNORE | UNCONFIRMED | USE, the status that decided it). A preliminary result is used: it is
    ranked below final ones of the same specimen (result_rank) and called preliminary on the card."""
    rtype = resource.get("resourceType")
    status = resource.get("status")
    if rtype in ("Observation", "DiagnosticReport"):
        return (IGNORE, status) if status in _RESULT_IGNORED else (USE, None)
    if rtype == "Condition":
        ver = {c.get("code") for c in codings(resource.get("verificationStatus"))}
        if ver & _CONDITION_IGNORED:
            return IGNORE, next(iter(ver & _CONDITION_IGNORED))
        if ver & _CONDITION_UNCONFIRMED:
            return UNCONFIRMED, next(iter(ver & _CONDITION_UNCONFIRMED))
        return USE, None
    if rtype == "Procedure":
        return (IGNORE, status) if status in _PROCEDURE_IGNORED else (USE, None)
    if rtype in MEDICATION_TYPES:
        return (IGNORE, status) if status in _MEDICATION_IGNORED else (USE, None)
    if status == "entered-in-error":
        return IGNORE, status
    return USE, None


_UNREMARKABLE = {"draft", "intended"}  # orders not yet placed: nothing to tell the clinician


def note(resource: dict[str, Any], decision: str, status: str | None) -> str | None:
    """The sentence a card shows for a resource the policy set aside (None: not worth a line)."""
    if status in _UNREMARKABLE:
        return None
    if decision == UNCONFIRMED:
        return f"{ref_of(resource)} is {status}: said here, not counted"
    return f"{ref_of(resource)} ignored (status {status})"


def result_rank(resource: dict[str, Any]) -> tuple[int, str]:
    """Order of precedence among results of one specimen: final/amended/corrected over preliminary,
    then the later `issued`."""
    issued = resource.get("issued")
    return _RESULT_RANK.get(str(resource.get("status")), 1), issued if isinstance(issued, str) else ""
