"""Records belong to one patient (DESIGN §3): every gathered resource must be about `context.patientId` and of a type
its prefetch key asked for. Anything else (another patient's result in a prefetch or in a lenient server's answer,
a resource of the wrong type in a search answer) is left out and counted, never shown by its ids."""

from __future__ import annotations

import re
from collections.abc import Callable
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


def search_type(template: str) -> str | None:
    """The resource type a prefetch template searches for (or reads), without its `_include`s."""
    m = _QUERY_TYPE.match(template)
    return m.group(1) if m else None


def expected_types(template: str) -> set[str]:
    """The resource types a prefetch template asks for: its search type and the targets of its `_include`s."""
    found = search_type(template)
    types = {found} if found else set()
    for inc in _INCLUDE.finditer(template):
        types.add(inc.group(3) or _INCLUDE_TARGET.get(inc.group(2), ""))
    types.discard("")
    return types


class PatientRefs:
    """Whether a resource is this patient's: the Patient itself, or every subject/patient reference names it
    (relative, `_history`, absolute on the request's FHIR server, or a `urn:uuid` that is the Patient's fullUrl in
    the same answer or its id, as collection Bundles without fullUrl write it). The usual spellings are one set
    lookup per resource; the rest go through the reference grammar."""

    def __init__(self, patient_id: str, server: str | None, patient_urls: set[str] | Callable[[], set[str]]) -> None:
        self.patient_id = patient_id
        self.base = (server or "").rstrip("/")
        self.own = {f"Patient/{patient_id}", f"urn:uuid:{patient_id}"}
        if self.base:
            self.own.add(f"{self.base}/Patient/{patient_id}")
        self._urls = patient_urls  # the Patient's fullUrls, or how to find them (only a urn:uuid reference needs them)

    def __call__(self, resource: dict[str, Any]) -> bool:
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            return resource.get("id") == self.patient_id
        found = False
        for key in ("subject", "patient"):
            ref = resource.get(key)
            target = ref.get("reference") if type(ref) is dict else None
            if type(target) is str:
                if target not in self.own and not self._names_patient(target):
                    return False
                found = True
        return found or rtype in NO_SUBJECT or (rtype == "Specimen" and "subject" not in resource)

    def _names_patient(self, ref: str) -> bool:
        if callable(self._urls):
            self._urls = self._urls()
        if ref in self._urls:
            return True
        if ref.startswith(("http://", "https://")):
            if not self.base or not ref.startswith(self.base + "/Patient/"):
                return False
            ref = ref[len(self.base) + 1 :]
        m = PATIENT_REF.fullmatch(ref)
        return m is not None and unquote(m.group(1)) == self.patient_id


def belongs(
    resource: dict[str, Any], patient_id: str, server: str | None, patient_urls: set[str] | Callable[[], set[str]]
) -> bool:
    """The resource is the Patient itself or refers to it (see PatientRefs)."""
    return PatientRefs(patient_id, server, patient_urls)(resource)


def bind(
    by_key: dict[str, list[dict[str, Any]]],
    templates: dict[str, str],
    patient_id: str | None,
    server: str | None,
    patient_urls: set[str] | Callable[[], set[str]],
    out: Binding,
) -> None:
    """Leave out, in place, every resource that is not this patient's or not of its key's types (counted in out)."""
    mine = PatientRefs(patient_id, server, patient_urls) if isinstance(patient_id, str) else None
    for key, resources in by_key.items():
        types = expected_types(templates.get(key, ""))
        kept = []
        for r in resources:
            if types and r.get("resourceType") not in types:
                out.wrong_type += 1
            elif mine is None or not mine(r):
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
