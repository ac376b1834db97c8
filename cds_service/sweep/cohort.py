"""Pass 1: the patients to judge, found cheaply: a breast-cancer diagnosis (coded, or a malignant neoplasm: the
facts decide its site) or any record of T-DXd (the ILD card serves every T-DXd setting). Only Conditions, Medications
and medication records are read. A superset of the patients any card can speak for: the judge decides."""

from __future__ import annotations

from typing import Any

from cds_service.fhir.extraction import MED_TYPES, condition_sets, medication_concept
from cds_service.fhir.terminology import Terminology
from cds_service.sweep.export import LineReader, Part
from cds_service.sweep.records import parse, patient_of, reference_id

COHORT_CONDITIONS = frozenset({"breast-cancer", "malignant-neoplasm"})
TDXD = "tdxd"
MEDICATION_TYPES = frozenset({"Medication"})
COHORT_TYPES = frozenset({"Condition", *MED_TYPES})


def tdxd_medications(part: Part, ts: Terminology) -> dict[str, dict[str, Any]]:
    """The Medication resources of a part that are T-DXd, by id (the medication records name them by reference)."""
    found: dict[str, dict[str, Any]] = {}
    for _, line in LineReader(part):
        r = parse(line)
        if r is None or r["resourceType"] != "Medication" or type(r.get("id")) is not str:
            continue
        hit = ts.classify_drug(r.get("code"))
        if hit is not None and hit.value_set == TDXD:
            found[r["id"]] = r
    return found


def cohort_of(part: Part, ts: Terminology, tdxd_meds: dict[str, dict[str, Any]]) -> set[str]:
    """The patients of a part's Conditions and medication records who belong in the sweep."""
    found: set[str] = set()
    for _, line in LineReader(part):
        r = parse(line)
        if r is None:
            continue
        rtype = r["resourceType"]
        if rtype == "Condition":
            hit = bool(condition_sets(ts, r) & COHORT_CONDITIONS)
        elif rtype in MED_TYPES:
            drug = ts.classify_drug(medication_concept(r, {}))  # its code, a contained drug, or the reference's words
            hit = reference_id(r.get("medicationReference"), "Medication") in tdxd_meds or (
                drug is not None and drug.value_set == TDXD
            )
        else:
            continue
        pid = patient_of(r) if hit else None
        if pid is not None:
            found.add(pid)
    return found
