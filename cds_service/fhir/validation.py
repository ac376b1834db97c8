"""FHIR R4 validation with fhir.resources: the verdict on one resource (a compiled check first, which only says
"valid"; then the models, their verdict kept by the resource's bytes), and a warm-up."""

from __future__ import annotations

import typing
from collections.abc import Callable
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
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import ValidationError

from cds_service.fhir.fast_check import FastCheck
from cds_service.fhir.lru import Lru, key_bytes
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
FAST = FastCheck(MODELS.values())  # the compiled check in front of the models (fhir/fast_check.py)

CONTENT_CACHE_SIZE = 25_000  # resources whose validation verdict is kept: a 20,000-resource chart fits (no thrashing)
# Validation verdicts by the resource's exact bytes (a dict compares the bytes: no digest, no collision): the
# elements to wrap in a list, or None for a resource that is not valid FHIR R4, and the note it gets. Verdicts
# only, never the resource, so that no request's data outlives it here beyond its bytes.
CONTENT_CACHE_MB = 64  # and at most this much by key bytes: a report with an embedded PDF is hundreds of KB
_CACHE = Lru(CONTENT_CACHE_SIZE, CONTENT_CACHE_MB * 1_000_000, key_bytes)
ELEMENT_CACHE_SIZE = 4_000  # complex elements validated on their own (about 2-6 KB each), kept by their bytes
# The same elements recur across a chart and across charts (every eGFR's code, the patient reference, a unit): each
# is validated once, by the very call fhir.resources makes for a nested element (its model's model_validate), and
# the instance is handed to the resource's own validation, which accepts an instance of the right model as it is.
ELEMENT_CACHE_MB = 32  # by weight: an instance costs about 5 KB beside the strings it holds (an attachment's data)
_ELEMENTS = Lru(ELEMENT_CACHE_SIZE, ELEMENT_CACHE_MB * 1_000_000, lambda key: key_bytes(key) + 4_400)
_PLANS: dict[Any, dict[str, tuple[Any, bool]]] = {}  # model -> JSON name -> (element model, repeats)


def clear_content_cache() -> None:
    """Forget every validation verdict and validated element (benchmarks of a cold start)."""
    _CACHE.clear()
    _ELEMENTS.clear()


def content_key(value: Any) -> bytes | None:
    """The bytes of a resource (or a chart) as orjson writes them (None for what it cannot write): the key of every
    verdict kept by content. Unsorted: the same chart resent by the EHR serialises the same way."""
    try:
        return orjson.dumps(value)
    except (TypeError, ValueError, RecursionError, orjson.JSONEncodeError):
        return None


Verdict = tuple[frozenset[str] | None, str | None]  # (elements to wrap in a list, or None: invalid), the note
VALID: Verdict = (frozenset(), None)  # what a type the service does not validate gets


def validated(resource: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """The resource if fhir.resources accepts it (after wrapping single objects where R4 wants a
    list, as the public sandbox sends `category`); None, with a note, if not."""
    return apply_verdict(resource, verdict_of(resource), notes)


def verdict_of(resource: dict[str, Any]) -> Verdict:
    """Valid when the compiled check says so; else fhir.resources' verdict, kept by the resource's bytes."""
    model = MODELS.get(resource.get("resourceType", ""))
    if model is None:
        return VALID
    if FAST.accepts(resource):  # the compiled check says valid as it stands: the models need not be asked
        return VALID
    key = content_key(resource)
    if key is None:
        return _verdict(model, resource)
    found: Verdict = _CACHE.get_or_make(key, lambda: _verdict(model, resource))
    return found


def apply_verdict(resource: dict[str, Any], verdict: Verdict, notes: list[str]) -> dict[str, Any] | None:
    """The resource as its verdict admits it (wrapped where it had single values for lists), or None; the
    verdict's note is added to notes."""
    fixes, note = verdict
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
    FAST.compile()  # once per process
    for record in WARM_UP_RECORDS:
        fixes, note = _verdict(MODELS[record["resourceType"]], record)
        if fixes is None or fixes:
            raise ValueError(f"warm-up {record['resourceType']} is not valid FHIR R4 as it stands: {note}")


def _wrapped(resource: dict[str, Any], fixes: frozenset[str]) -> dict[str, Any]:
    """The resource repaired: each element named in fixes wrapped in a list, each named "-element" left out."""
    out = {k: v for k, v in resource.items() if f"-{k}" not in fixes}
    return {**out, **{k: [resource[k]] for k in fixes if not k.startswith("-")}}


def _verdict(
    model: Any, resource: dict[str, Any], validate: Callable[[Any, dict[str, Any]], None] | None = None
) -> Verdict:
    """(the elements to wrap in a list, empty when it is valid as it is; or None: not valid FHIR R4), and the
    note it gets (None: nothing to say)."""
    fixes: frozenset[str] = frozenset()
    candidate = resource
    for attempt in range(2):
        try:
            (validate or _validate)(model, candidate)
            return fixes, (_repair_note(resource, fixes) if attempt else None)
        except ValidationError as exc:
            top = [e for e in exc.errors() if len(e["loc"]) == 1]
            found = {str(e["loc"][0]) for e in top if e["type"] == "list_type"}
            # an element the resource type does not have (a MedicationRequest's effectiveDateTime) is left out and
            # named: what it held is not read, the rest of the record is
            found |= {f"-{e['loc'][0]}" for e in top if e["type"] == "extra_forbidden" and _droppable(str(e["loc"][0]))}
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


def _droppable(element: str) -> bool:
    """An unknown element that may be left out: never one that looks like a modifier (a misspelt
    modifierExtension changes what the record means) and never the resource type."""
    return element != "resourceType" and "modifier" not in element.lower()


def _repair_note(resource: dict[str, Any], fixes: frozenset[str]) -> str:
    said = []
    if any(not f.startswith("-") for f in fixes):
        said.append("had single values where FHIR R4 expects lists; read as lists")
    dropped = sorted(f[1:] for f in fixes if f.startswith("-"))
    if dropped:
        said.append(
            f"has element(s) a FHIR R4 {resource.get('resourceType')} does not have ({', '.join(dropped)}): "
            "left out, the rest of the record is read"
        )
    return f"{ref_of(resource)} " + "; ".join(said)


def _problem(exc: ValidationError) -> str:
    """Where a resource breaks FHIR R4, in a few words (never its values)."""
    errors = exc.errors()
    if any("one field value is expected" in str(e.get("msg", "")) for e in errors):
        return "more than one value[x]"
    where = sorted({".".join(map(str, e["loc"][:3])) for e in errors if e.get("loc")})[:3]
    return ", ".join(where) or "invalid element"


def _validate(model: Any, data: dict[str, Any]) -> None:
    """model.model_validate(data), its complex elements handed over as instances validated before. When one of them
    is not valid on its own, the resource is validated whole, so that the error is found and worded as always."""
    prepared = _prepared(model, data)
    # model(**data) is what model_validate ends in (fhir_core's __init__), without pydantic running fhir_core's
    # after-validators a second time around it: the same verdict (tests/test_validation_elements.py), 15 % sooner
    model(**(data if prepared is None else prepared))


def _prepared(model: Any, data: dict[str, Any]) -> dict[str, Any] | None:
    """data with each complex element at its top level replaced by its validated instance (None: one is invalid)."""
    if not isinstance(data, dict):
        return None
    plan = _plan(model)
    out: dict[str, Any] = {}
    for name, value in data.items():
        kind = plan.get(name)
        if kind is not None:
            element_model, repeats = kind
            if repeats and isinstance(value, list):
                items = []
                for v in value:
                    item = _instance(element_model, v) if isinstance(v, dict) else v
                    if item is None and v is not None:
                        return None
                    items.append(item)
                value = items
            elif not repeats and isinstance(value, dict):
                value = _instance(element_model, value)
                if value is None:
                    return None
        out[name] = value
    return out


def _instance(element_model: Any, element: dict[str, Any]) -> Any:
    """The element validated as fhir.resources validates a nested one, kept by its bytes; None if it is not valid."""
    key = content_key(element)
    if key is None:
        return None
    hit = _ELEMENTS.get((element_model, key))
    if hit is None:
        try:
            hit = element_model.model_validate(element)
        except Exception:  # noqa: BLE001 - the whole resource is then validated, and raises what it raises
            return None
        _ELEMENTS.put((element_model, key), hit)
    return hit


def _plan(model: Any) -> dict[str, tuple[Any, bool]]:
    """A model's complex elements by JSON name: (the element's model, whether it repeats)."""
    plan = _PLANS.get(model)
    if plan is None:
        plan = {}
        for name, info in model.model_fields.items():
            kind = _element_model(info.annotation)
            if kind is not None:
                plan[info.alias or name] = kind
        _PLANS[model] = plan
    return plan


def _element_model(annotation: Any) -> tuple[Any, bool] | None:
    """(model, repeats) for a field of exactly one complex FHIR type; None for primitives, choices of several
    types, and contained resources (their model depends on the value: left to fhir.resources)."""
    found: list[Any] = []
    repeats = False
    stack = [annotation]
    while stack:
        a = stack.pop()
        origin = typing.get_origin(a)
        if origin is not None:
            repeats = repeats or origin is list
            stack.extend(typing.get_args(a))
        elif isinstance(a, type) and issubclass(a, FhirBase):
            found.append(a)
    if len(found) != 1 or issubclass(found[0], FhirElementOrResourceBase):
        return None
    return found[0].get_model_klass(), repeats
