"""Prefetch templates built from the loaded value sets: discovery publishes, and the fallback asks
for, every code a value set holds (a site's local codes included), never a hand-kept list."""

from __future__ import annotations

import copy
import re
from typing import Any

from cds_service.fhir.pathology import result_refs
from cds_service.fhir.read import reference
from cds_service.fhir.terminology import Terminology

# "{{codes:her2-ihc,er}}" in hooks/services.json: the system|code tokens of those value sets
_CODES = re.compile(r"\{\{\s*codes:([A-Za-z0-9,-]+)\s*\}\}")
PATHOLOGY_KEY = "pathology"


def code_tokens(ts: Terminology, vs_ids: list[str]) -> str:
    """`system|code,...` for every coded concept of the value sets, sorted, without duplicates."""
    tokens = sorted({f"{system}|{code}" for vs in vs_ids for system, code in ts.sets[vs].codes if system})
    return ",".join(tokens)


def expand_template(template: str, ts: Terminology) -> str:
    def sub(m: re.Match[str]) -> str:
        ids = [v for v in m.group(1).split(",") if v]
        unknown = [v for v in ids if v not in ts.sets]
        if unknown:
            raise ValueError(f"hooks/services.json names unknown value sets {unknown}")
        return code_tokens(ts, ids)

    return _CODES.sub(sub, template)


def with_codes(services: dict[str, dict[str, Any]], ts: Terminology) -> dict[str, dict[str, Any]]:
    """The service definitions with every `{{codes:...}}` token filled from the value sets (a copy)."""
    out = copy.deepcopy(services)
    for svc in out.values():
        svc["prefetch"] = {k: expand_template(t, ts) for k, t in (svc.get("prefetch") or {}).items()}
    return out


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def missing_report_results(by_key: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Ids of Observations that pathology reports reference but that no key delivered (a server or EHR
    that does not support `_include`)."""
    referenced = [
        ref
        for r in by_key.get(PATHOLOGY_KEY, [])
        if r.get("resourceType") == "DiagnosticReport"
        for ref in result_refs(r)
    ]
    return _undelivered(by_key, "Observation", referenced)


SPECIMEN_KEY = "her2Observations"  # the key whose template includes the specimens of HER2 results


def missing_specimens(by_key: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Ids of Specimens that Observations reference but that no key delivered (a server or EHR that ignored
    `_include=Observation:specimen`): without them a result's site (primary or metastatic) is not known."""
    referenced = [
        ref
        for rs in by_key.values()
        for r in rs
        if r.get("resourceType") == "Observation" and (ref := reference(r, "specimen"))
    ]
    return _undelivered(by_key, "Specimen", referenced)


def _undelivered(by_key: dict[str, list[dict[str, Any]]], rtype: str, referenced: list[str]) -> list[str]:
    """The ids of `rtype/id` references that no key delivered, once each, in order."""
    ids = [ref.removeprefix(f"{rtype}/") for ref in referenced if ref.startswith(f"{rtype}/")]
    if not ids:
        return []
    have = {r.get("id") for rs in by_key.values() for r in rs if r.get("resourceType") == rtype}
    # only FHIR ids go into a query: "x&patient=other" or "x#" from a record never shapes the request
    return [rid for rid in dict.fromkeys(ids) if rid not in have and _FHIR_ID.fullmatch(rid)]
