"""One line of an export as a resource, and the patient it is about."""

from __future__ import annotations

import re
from typing import Any

import orjson

from cds_service.gather.binding import PATIENT_REF

# a reference to a Patient: relative, absolute or versioned (`Patient/p1`, `https://x/fhir/Patient/p1/_history/2`)
# binding's grammar of a Patient reference, at the end of a relative or absolute one (an export is one server's)
_PATIENT = re.compile(r"(?:^|/)" + PATIENT_REF.pattern + "$")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def parse(line: bytes) -> dict[str, Any] | None:
    """The resource on a line, or None: not JSON, not an object, or no resourceType."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict and type(value.get("resourceType")) is str else None


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource is about: a Patient's own id, or the one patient its subject and patient
    references name (None: no readable reference to a Patient, or references to two patients)."""
    if resource["resourceType"] == "Patient":
        rid = resource.get("id")
        return rid if type(rid) is str and _ID.fullmatch(rid) else None
    found = None
    for key in ("subject", "patient"):
        ref = resource.get(key)
        target = ref.get("reference") if type(ref) is dict else None
        if target is None:
            continue
        m = _PATIENT.search(target) if type(target) is str else None
        if m is None or (found is not None and m.group(1) != found):
            return None
        found = m.group(1)
    return found


def reference_id(ref: Any, rtype: str) -> str | None:
    """The id a reference element names in rtype (`Medication/m1`, absolute or relative), or None (contained,
    another type)."""
    target = ref.get("reference") if type(ref) is dict else None
    if type(target) is not str or target.startswith("#"):
        return None
    head, _, rid = target.rstrip("/").rpartition("/")
    return rid if (head == rtype or head.endswith("/" + rtype)) and _ID.fullmatch(rid) else None
