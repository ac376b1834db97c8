"""`her2-cds seed`: put the example patients (hooks/examples/) into a FHIR R4 server as one transaction
Bundle, so that a sandbox or an EHR test system can call the service on them through the FHIR fallback."""

from __future__ import annotations

import json
import time
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
    resources = example_resources()
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
