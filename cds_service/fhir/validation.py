"""FHIR R4 validation with fhir.resources: the verdict on one resource (kept by its bytes), and a warm-up."""

from __future__ import annotations

from typing import Any

import orjson
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.specimen import Specimen
from pydantic import ValidationError

from cds_service.fhir.lru import Lru
from cds_service.fhir.primitives import ref_of

MODELS = {
    "Observation": Observation,
    "Condition": Condition,
    "Procedure": Procedure,
    "MedicationStatement": MedicationStatement,
    "MedicationRequest": MedicationRequest,
    "MedicationAdministration": MedicationAdministration,
    "Medication": Medication,
    "Specimen": Specimen,
    "ServiceRequest": ServiceRequest,
    "DiagnosticReport": DiagnosticReport,
}

CONTENT_CACHE_SIZE = 25_000  # resources whose validation verdict is kept: a 20,000-resource chart fits (no thrashing)
# Validation verdicts by the resource's exact bytes (a dict compares the bytes: no digest, no collision): the
# elements to wrap in a list, or None for a resource that is not valid FHIR R4, and the note it gets. Verdicts
# only, never the resource, so that no request's data outlives it here beyond its bytes.
_CACHE = Lru(CONTENT_CACHE_SIZE)


def clear_content_cache() -> None:
    """Forget every validation verdict (benchmarks of a cold start)."""
    _CACHE.clear()


def content_key(value: Any) -> bytes | None:
    """The bytes of a resource (or a chart) as orjson writes them (None for what it cannot write): the key of every
    verdict kept by content. Unsorted: the same chart resent by the EHR serialises the same way."""
    try:
        return orjson.dumps(value)
    except (TypeError, ValueError, RecursionError, orjson.JSONEncodeError):
        return None


def validated(resource: dict[str, Any], notes: list[str], key: bytes | None = None) -> dict[str, Any] | None:
    """The resource if fhir.resources accepts it (after wrapping single objects where R4 wants a
    list, as the public sandbox sends `category`); None, with a note, if not. key: content_key(resource)."""
    model = MODELS.get(resource.get("resourceType", ""))
    if model is None:
        return resource
    key = key if key is not None else content_key(resource)
    if key is None:
        fixes, note = _verdict(model, resource)
    else:
        fixes, note = _CACHE.get_or_make(key, lambda: _verdict(model, resource))
    if note:
        notes.append(note)
    if fixes is None:
        return None
    return _wrapped(resource, fixes) if fixes else resource


_SUBJECT = {"reference": "Patient/warm-up"}
_PERIOD = {"start": "2020-01-01", "end": "2020-02-01"}
_CONCEPT = {"coding": [{"system": "http://loinc.org", "code": "0-0", "display": "warm-up"}], "text": "warm-up"}
# one record of each type the service reads, with the nested elements its readers use (dosage timing, dispense,
# components, quantities, periods): the first validation of each nested model builds its validator
WARM_UP_RECORDS: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "status": "final",
        "code": _CONCEPT,
        "subject": _SUBJECT,
        "effectivePeriod": _PERIOD,
        "valueQuantity": {"value": 1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "interpretation": [_CONCEPT],
        "component": [{"code": _CONCEPT, "valueCodeableConcept": _CONCEPT}, {"code": _CONCEPT, "valueInteger": 1}],
        "specimen": {"reference": "Specimen/warm-up"},
        "derivedFrom": [{"reference": "Observation/warm-up"}],
        "note": [{"text": "warm-up"}],
    },
    {
        "resourceType": "Condition",
        "subject": _SUBJECT,
        "code": _CONCEPT,
        "bodySite": [_CONCEPT],
        "clinicalStatus": _CONCEPT,
        "verificationStatus": _CONCEPT,
        "onsetPeriod": _PERIOD,
        "stage": [{"summary": _CONCEPT}],
    },
    {
        "resourceType": "Procedure",
        "status": "completed",
        "subject": _SUBJECT,
        "code": _CONCEPT,
        "performedPeriod": _PERIOD,
        "bodySite": [_CONCEPT],
    },
    {
        "resourceType": "MedicationStatement",
        "status": "active",
        "subject": _SUBJECT,
        "medicationCodeableConcept": _CONCEPT,
        "effectivePeriod": _PERIOD,
        "statusReason": [_CONCEPT],
        "reasonCode": [_CONCEPT],
    },
    {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": _SUBJECT,
        "medicationReference": {"reference": "Medication/warm-up", "display": "warm-up"},
        "authoredOn": "2020-01-01",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"boundsPeriod": _PERIOD}},
                "doseAndRate": [{"doseQuantity": {"value": 5.4, "unit": "mg/kg"}}],
                "text": "warm-up",
            }
        ],
        "dispenseRequest": {
            "validityPeriod": _PERIOD,
            "numberOfRepeatsAllowed": 1,
            "expectedSupplyDuration": {"value": 28, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
        },
    },
    {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "subject": _SUBJECT,
        "medicationCodeableConcept": _CONCEPT,
        "effectivePeriod": _PERIOD,
        "dosage": {"dose": {"value": 5.4, "unit": "mg/kg"}},
    },
    {"resourceType": "Medication", "code": _CONCEPT},
    {
        "resourceType": "Specimen",
        "type": _CONCEPT,
        "collection": {"bodySite": _CONCEPT, "collectedDateTime": "2020-01-01"},
    },
    {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "subject": _SUBJECT,
        "code": _CONCEPT,
        "category": [_CONCEPT],
        "reasonCode": [_CONCEPT],
        "specimen": [{"reference": "Specimen/warm-up"}],
        "note": [{"text": "warm-up"}],
    },
    {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": _CONCEPT,
        "category": [_CONCEPT],
        "subject": _SUBJECT,
        "effectiveDateTime": "2020-01-01",
        "result": [{"reference": "Observation/warm-up"}],
        "specimen": [{"reference": "Specimen/warm-up"}],
        "conclusion": "warm-up",
        "conclusionCode": [_CONCEPT],
    },
]


def warm_models() -> None:
    """Validate one record of each type the service reads (not cached: nothing of a real request is kept).
    Raises if a warm-up record is not valid FHIR R4 (a test keeps them valid)."""
    for record in WARM_UP_RECORDS:
        fixes, note = _verdict(MODELS[record["resourceType"]], record)
        if fixes is None or fixes:
            raise ValueError(f"warm-up {record['resourceType']} is not valid FHIR R4 as it stands: {note}")


def _wrapped(resource: dict[str, Any], fixes: frozenset[str]) -> dict[str, Any]:
    return {**resource, **{k: [resource[k]] for k in fixes}}


def _verdict(model: Any, resource: dict[str, Any]) -> tuple[frozenset[str] | None, str | None]:
    """(the elements to wrap in a list, empty when it is valid as it is; or None: not valid FHIR R4), and the
    note it gets (None: nothing to say)."""
    fixes: frozenset[str] = frozenset()
    candidate = resource
    for attempt in range(2):
        try:
            model.model_validate(candidate)
            return fixes, (
                f"{ref_of(resource)} had single values where FHIR R4 expects lists; read as lists" if attempt else None
            )
        except ValidationError as exc:
            found = {str(e["loc"][0]) for e in exc.errors() if e["type"] == "list_type" and len(e["loc"]) == 1}
            if attempt or not found:
                return (
                    None,
                    f"{ref_of(resource)} could not be read and was left out: not valid FHIR R4 ({_problem(exc)})",
                )
            fixes = frozenset(found)
            candidate = _wrapped(resource, fixes)
        except (RecursionError, TypeError, ValueError):
            return None, f"{ref_of(resource)} was skipped: not readable FHIR"
    return None, None


def _problem(exc: ValidationError) -> str:
    """Where a resource breaks FHIR R4, in a few words (never its values)."""
    errors = exc.errors()
    if any("one field value is expected" in str(e.get("msg", "")) for e in errors):
        return "more than one value[x]"
    where = sorted({".".join(map(str, e["loc"][:3])) for e in errors if e.get("loc")})[:3]
    return ", ".join(where) or "invalid element"
