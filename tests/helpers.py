"""Builders for hook requests and the CDS Hooks 2.0 response checks every test applies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from cds_service import contracts
from cds_service.config import shipped_defaults
from cds_service.facts.orders import DraftOrder
from cds_service.facts.request import RequestContext
from cds_service.fhir.terminology import load_terminology
from cds_service.gather.templates import with_codes

_TS = load_terminology()
SERVICES = with_codes(contracts.services(), _TS)
PREFETCH_KEYS = list(SERVICES["her2-order-select"]["prefetch"])
SERVICE_FOR_HOOK = {
    "order-select": "her2-order-select",
    "order-sign": "her2-order-sign",
    "patient-view": "her2-patient-view",
}


def card_cfg(topic_key: str, **overrides: Any) -> dict[str, Any]:
    """A topic's card configuration as the service has it: the shipped defaults (one place for them), with
    overrides."""
    return {**shipped_defaults()["cards"][topic_key], **overrides}


def bundle(resources: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources], **extra}


def prefetch_from(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Split a patient's resources into the service's prefetch keys, as an EHR would."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    obs_keys: dict[str, list[dict[str, Any]]] = {
        "her2Observations": [],
        "receptorObservations": [],
        "diseaseStatus": [],
        "renalFunction": [],
    }
    templates = SERVICES["her2-order-select"]["prefetch"]
    reports = by_type.get("DiagnosticReport", [])
    in_reports = {ref["reference"] for r in reports for ref in r.get("result", [])}
    for o in by_type.get("Observation", []):
        if f"Observation/{o['id']}" in in_reports:  # what `_include=DiagnosticReport:result` brings
            reports = reports + [o]
            continue
        codes = [c.get("code") for c in (o.get("code") or {}).get("coding", [])]
        key = next(
            (
                k
                for k in ("receptorObservations", "diseaseStatus", "renalFunction")
                if any(c and f"|{c}," in templates[k] + "," or f"|{c}&" in templates[k] for c in codes)
            ),
            "her2Observations",
        )
        obs_keys[key].append(o)
    meds = by_type.get("Medication", [])
    return {
        "patient": next(iter(by_type.get("Patient", [])), None),
        **{
            k: bundle(v + (by_type.get("Specimen", []) if k == "her2Observations" else [])) for k, v in obs_keys.items()
        },
        "pathology": bundle(reports),
        "conditions": bundle(by_type.get("Condition", [])),
        "procedures": bundle(by_type.get("Procedure", [])),
        "medicationStatements": bundle(by_type.get("MedicationStatement", []) + meds),
        "medicationRequests": bundle(by_type.get("MedicationRequest", [])),
        "medicationAdministrations": bundle(by_type.get("MedicationAdministration", [])),
    }


def for_patient(resources: list[dict[str, Any]], patient_id: str) -> list[dict[str, Any]]:
    """The fixture chart (written for Patient/p1) as the chart of patient_id: every resource is bound to its patient
    (DESIGN §3), so a test about another patient needs that patient's own records."""
    text = json.dumps(resources).replace('"Patient/p1"', json.dumps(f"Patient/{patient_id}"))
    out = json.loads(text)
    for r in out:
        if r.get("resourceType") == "Patient":
            r["id"] = patient_id
    return out


def hook_request(
    hook: str,
    patient_id: str = "p1",
    *,
    prefetch: dict[str, Any] | None = None,
    draft_orders: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/dr1", "patientId": patient_id}
    if hook in ("order-select", "order-sign"):
        drafts = draft_orders or []
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
        if hook == "order-select":
            context["selections"] = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def cards_without_ids(body: dict[str, Any]) -> str:
    """A response as sorted JSON with its card and suggestion uuids taken out (new on every answer): two answers
    to the same chart compare equal."""
    text = json.dumps(body, sort_keys=True)
    for card in body.get("cards", []):
        text = text.replace(card["uuid"], "")
        for s in card.get("suggestions", []):
            text = text.replace(s["uuid"], "")
    return text


def empty_prefetch() -> dict[str, Any]:
    return {key: None for key in PREFETCH_KEYS}


def _no_nulls_or_empties(value: Any, path: str, allow_empty: set[str]) -> list[str]:
    bad = []
    if value is None:
        bad.append(f"{path} is null")
    elif isinstance(value, dict):
        if not value and path not in allow_empty:
            bad.append(f"{path} is an empty object")
        for k, v in value.items():
            bad += _no_nulls_or_empties(v, f"{path}.{k}", allow_empty)
    elif isinstance(value, list):
        if not value and path not in allow_empty:
            bad.append(f"{path} is an empty array")
        for i, v in enumerate(value):
            bad += _no_nulls_or_empties(v, f"{path}[{i}]", allow_empty)
    elif isinstance(value, str) and not value.strip():
        bad.append(f"{path} is an empty string")
    return bad


def assert_cds_response(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Check a response against CDS Hooks 2.0 and this service's promises; return its cards."""
    problems = contracts.check_response(body)
    assert not problems, problems
    bad = _no_nulls_or_empties(body, "$", {"$.cards"})
    assert not bad, bad
    uuids = [c["uuid"] for c in body["cards"]]
    uuids += [s["uuid"] for c in body["cards"] for s in c.get("suggestions", [])]
    assert len(uuids) == len(set(uuids)), "card and suggestion uuids must be unique"
    for card in body["cards"]:
        assert len(card["summary"]) < 140
        assert card["source"]["topic"]["system"] == "http://her2-cds.org/fhir/CodeSystem/card-topic"
        if card.get("suggestions"):
            assert card.get("selectionBehavior") in ("at-most-one", "any")
        for reason in card.get("overrideReasons", []):
            assert reason["display"].strip()
    return body["cards"]


def asked(hook: str, drafts: Iterable[Any] = (), patient_id: str = "p1", **context: Any) -> RequestContext:
    """The request context the engine builds for this hook: drafted resources read as the engine reads them
    (context.draftOrders), or DraftOrders as they are."""
    drafts = list(drafts)
    if all(isinstance(d, DraftOrder) for d in drafts):
        return RequestContext(hook, patient_id, tuple(drafts), **context)
    ctx = {
        "patientId": patient_id,
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": d} for d in drafts]},
    }
    return RequestContext.of(hook, {**ctx, **context}, _TS)
