"""`her2-cds seed`: put the example patients (hooks/examples/) into a FHIR R4 server as one transaction
Bundle, so that a sandbox or an EHR test system can call the service on them through the FHIR fallback."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

from cds_service.paths import hooks_dir

FHIR_JSON = "application/fhir+json"


class SeedError(Exception):
    """The examples could not be loaded; the message says why (server, status, OperationOutcome)."""


def example_resources(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every prefetched resource of every example, once (examples of one patient share their records)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((directory or hooks_dir() / "examples").glob("*.json")):
        body = json.loads(path.read_text("utf-8"))
        for value in (body.get("prefetch") or {}).values():
            if not isinstance(value, dict):
                continue
            items = (
                [e.get("resource") for e in value.get("entry") or []]
                if value.get("resourceType") == "Bundle"
                else [value]
            )
            for res in items:
                if isinstance(res, dict) and res.get("id"):
                    found.setdefault((res["resourceType"], res["id"]), res)
    return sorted(found.values(), key=lambda r: (r["resourceType"] != "Patient", r["resourceType"], r["id"]))


TDXD_ACTIVE_ID = "tdxd-active"


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def tdxd_active_patient(today: date) -> list[dict[str, Any]]:
    """A patient on T-DXd now, dated from the seeding day (the examples' dates are fixed, so none of them is on
    T-DXd today): HER2-low metastatic breast cancer, a dose every 3 weeks from 105 days ago, no chest imaging
    since. Patient view shows the ILD monitoring card (imaging overdue), which the sandbox's Rx view cannot
    order (its drug list has no T-DXd)."""
    sct, loinc, rx = "http://snomed.info/sct", "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm"
    subject = {"reference": f"Patient/{TDXD_ACTIVE_ID}"}
    confirmed = {
        "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
        "verificationStatus": _coding(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        ),
    }
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": TDXD_ACTIVE_ID, "gender": "female", "birthDate": "1968-04-02",
         "name": [{"family": "Active", "given": ["Tdxd"]}]},  # fmt: skip
        {"resourceType": "Condition", "id": f"{TDXD_ACTIVE_ID}-bc", "subject": subject, **confirmed,
         "code": _coding(sct, "254837009", "Malignant neoplasm of breast"), "onsetDateTime": "2019-03-01"},
        {"resourceType": "Condition", "id": f"{TDXD_ACTIVE_ID}-liver", "subject": subject, **confirmed,
         "code": _coding(sct, "94381002", "Secondary malignant neoplasm of liver"), "onsetDateTime": "2024-02-01"},
        {"resourceType": "Observation", "id": f"{TDXD_ACTIVE_ID}-her2", "status": "final", "subject": subject,
         "code": _coding(loinc, "85319-2", "HER2 [Presence] in Breast cancer specimen by Immune stain"),
         "effectiveDateTime": "2024-02-10", "valueCodeableConcept": {"text": "1+"}},
    ]  # fmt: skip
    for n, days_ago in enumerate(range(105, 0, -21)):
        out.append(
            {
                "resourceType": "MedicationAdministration",
                "id": f"{TDXD_ACTIVE_ID}-dose-{n + 1}",
                "status": "completed",
                "subject": subject,
                "medicationCodeableConcept": _coding(rx, "2267582", "fam-trastuzumab deruxtecan"),
                "effectiveDateTime": (today - timedelta(days=days_ago)).isoformat(),
                "dosage": {
                    "dose": {"value": 5.4, "unit": "mg/kg", "system": "http://unitsofmeasure.org", "code": "mg/kg"}
                },  # fmt: skip
            }
        )
    return out


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """PUT Type/id for each resource: seeding twice replaces, never duplicates."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:her2-cds:{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def wait_ready(base: str, seconds: float) -> None:
    """Poll `metadata` until the server answers 200 (a FHIR server in a container starts slowly)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{base}/metadata", timeout=5, headers={"Accept": FHIR_JSON}).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SeedError(f"{base}/metadata did not answer 200 within {seconds:g} s")
        time.sleep(2)


def seed(base: str, token: str | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Post the transaction; returns the Patients loaded. Raises SeedError with the server's reason."""
    base = base.rstrip("/")
    resources = example_resources() + tdxd_active_patient(date.today())
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = requests.post(
            base, data=json.dumps(transaction(resources)), headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise SeedError(f"{base}: cannot reach the FHIR server ({type(exc).__name__})") from exc
    if resp.status_code != 200:
        raise SeedError(f"{base}: the transaction was refused with HTTP {resp.status_code}: {_outcome(resp)}")
    return [r for r in resources if r["resourceType"] == "Patient"]


def _outcome(resp: requests.Response) -> str:
    try:
        issues = resp.json().get("issue") or []
        return "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues)[:500] or resp.text[:200]
    except ValueError:
        return resp.text[:200]
