"""Whose patient a request is about. Patient ids are unique only within one EHR: a patient is (issuer, FHIR
server, patient id), and everything remembered about one (repeats, snoozes, the ledger's patient hash) is
keyed by all three (DESIGN.md §3, Tenancy)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# the patient hash before 2026.12 covered the patient id alone (ledger and snooze rows of that time)
KEY_VERSION_ID_ONLY = 1
KEY_VERSION_TENANT = 2


def server_of(url: Any) -> str:
    """A FHIR base as a tenant names it: scheme and host in lower case, no default port, no trailing slash
    ("" when the request named none)."""
    if not isinstance(url, str) or not url:
        return ""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip().rstrip("/")
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class PatientKey:
    """One patient of one EHR: the issuer of the request's token ("" with authentication off), the FHIR server
    it named and the patient id."""

    issuer: str
    fhir_server: str
    patient_id: str

    @classmethod
    def of(cls, issuer: str | None, request: dict[str, Any]) -> PatientKey:
        context = request.get("context") or {}
        pid = context.get("patientId") if isinstance(context, dict) else None
        return cls(issuer or "", server_of(request.get("fhirServer")), pid if isinstance(pid, str) else "")

    def canonical(self) -> bytes:
        """The bytes a patient hash is made from: unambiguous (JSON), so no two tenants share them."""
        return json.dumps([self.issuer, self.fhir_server, self.patient_id], separators=(",", ":")).encode()
