"""Records belong to one patient (DESIGN §3): every gathered resource must be about `context.patientId` and of a type
its prefetch key asked for. Anything else (another patient's result in a prefetch or in a lenient server's answer,
a resource of the wrong type in a search answer) is left out and counted, never shown by its ids."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

# resource types that carry no patient reference of their own (kept when their key asked for them)
NO_SUBJECT = {"Medication"}
# `_include=Type:param` → the type it brings
_INCLUDE_TARGET = {"specimen": "Specimen", "medication": "Medication", "subject": "Patient", "patient": "Patient"}
_INCLUDE = re.compile(r"_include=([A-Za-z]+):([A-Za-z-]+)(?::([A-Za-z]+))?")
_QUERY_TYPE = re.compile(r"^([A-Z][A-Za-z]+)(?:[/?]|$)")
PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


@dataclass
class Binding:
    """What the binding left out, as counts (never ids)."""

    other_patient: int = 0
    wrong_type: int = 0

    @property
    def left_out(self) -> int:
        return self.other_patient + self.wrong_type

    @property
    def notes(self) -> list[str]:
        """What the card says (counts, never the other patient's ids)."""
        out = [f"{self.other_patient} resource(s) left out: not this patient's"] if self.other_patient else []
        if self.wrong_type:
            out.append(f"{self.wrong_type} resource(s) left out: not of the type the query asked for")
        return out


def expected_types(template: str) -> set[str]:
    """The resource types a prefetch template asks for: its search type and the targets of its `_include`s."""
    m = _QUERY_TYPE.match(template)
    types = {m.group(1)} if m else set()
    for inc in _INCLUDE.finditer(template):
        types.add(inc.group(3) or _INCLUDE_TARGET.get(inc.group(2), ""))
    types.discard("")
    return types


def _patient_refs(resource: dict[str, Any]) -> list[str]:
    refs = []
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            refs.append(ref["reference"])
    return refs


def belongs(resource: dict[str, Any], patient_id: str, server: str | None, patient_urls: set[str]) -> bool:
    """The resource is the Patient itself or refers to it: relative (Patient/id), absolute on the request's FHIR
    server, or a `urn:uuid` that is the Patient's fullUrl in the same answer or its id (collection Bundles that
    omit fullUrl and reference `urn:uuid:<Patient.id>`, as the mCODE pathways records do)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id") == patient_id
    refs = _patient_refs(resource)
    if not refs:
        return rtype in NO_SUBJECT or (rtype == "Specimen" and "subject" not in resource)
    base = (server or "").rstrip("/")
    for ref in refs:
        if ref in patient_urls or ref == f"urn:uuid:{patient_id}":
            continue
        if ref.startswith(("http://", "https://")):
            if not base or not ref.startswith(base + "/Patient/"):
                return False
            ref = ref[len(base) + 1 :]
        m = PATIENT_REF.fullmatch(ref)
        if not m or unquote(m.group(1)) != patient_id:
            return False
    return True


def bind(
    by_key: dict[str, list[dict[str, Any]]],
    templates: dict[str, str],
    patient_id: str | None,
    server: str | None,
    patient_urls: set[str],
    out: Binding,
) -> None:
    """Leave out, in place, every resource that is not this patient's or not of its key's types (counted in out)."""
    for key, resources in by_key.items():
        types = expected_types(templates.get(key, ""))
        kept = []
        for r in resources:
            if types and r.get("resourceType") not in types:
                out.wrong_type += 1
            elif not isinstance(patient_id, str) or not belongs(r, patient_id, server, patient_urls):
                out.other_patient += 1
            else:
                kept.append(r)
        by_key[key] = kept


def patient_full_urls(payloads: list[Any], patient_id: str | None) -> set[str]:
    """fullUrls (urn:uuid or absolute) of the entries that are this Patient, in the Bundles given."""
    urls = set()
    for data in payloads:
        entries = data.get("entry") if isinstance(data, dict) else None
        for e in entries if isinstance(entries, list) else []:
            r = e.get("resource") if isinstance(e, dict) else None
            if isinstance(r, dict) and r.get("resourceType") == "Patient" and r.get("id") == patient_id:
                if isinstance(e.get("fullUrl"), str):
                    urls.add(e["fullUrl"])
    return urls
