"""Extraction: keep only the resources a fact reads (filtered on plain JSON), validated with fhir.resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cds_service.fhir.pathology import (
    conclusion_statements,
    pathology_reports,
    report_member_set,
    report_text,
    result_refs,
    with_report_context,
)
from cds_service.fhir.primitives import ref_of
from cds_service.fhir.status import IGNORE, UNCONFIRMED, verdict
from cds_service.fhir.status import note as status_note
from cds_service.fhir.terminology import HER2_SETS, Match, Terminology
from cds_service.fhir.validation import Verdict, apply_verdict, content_key, validated, verdict_of

MED_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
OBS_SETS = (
    *HER2_SETS,
    "er",
    "pr",
    "hr-combined",
    "disease-status",
    "staging",
    "renal-function",
    "ild",
    "body-weight",
    "erbb2-genomic",
)
CONDITION_SETS = (
    "ild",
    "lung-metastasis",
    "metastatic-disease",
    "regional-lymph-node",
    "lymph-node-metastasis",
    "breast-cancer",
    "malignant-neoplasm",
    "other-primary-cancer",
    "her2-positive-disease",
    "renal-impairment",
    "respiratory-symptom",
)
PROCEDURE_SETS = (
    "radiotherapy",
    "biopsy",
    "chest-imaging",
    "chemotherapy-procedure",
    "endocrine-procedure",
    "ovarian-ablation",
)
# therapy recorded as a procedure (drugs not named): the drug class it is exposure to, and the name it shows
THERAPY_PROCEDURES = {
    "chemotherapy-procedure": ("chemotherapy", "chemotherapy (drugs not named)"),
    "endocrine-procedure": ("endocrine-therapy", "endocrine therapy (drugs not named)"),
    "ovarian-ablation": ("endocrine-therapy", "oophorectomy"),
}
LAZY_SETS = ("body-weight",)  # validated where one is used, not here (see Extracted.weights)


@dataclass
class MedRecord:
    """One medication record in a drug class, with the drug as resolved."""

    resource: dict[str, Any]
    drug: Match
    key: bytes | None = None  # content_key(resource): the lines of therapy are kept by every record's key


@dataclass
class Extracted:
    """The relevant resources of one request, by what they are."""

    observations: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in OBS_SETS})
    conditions: dict[str, list[tuple[dict[str, Any], Match]]] = field(
        default_factory=lambda: {k: [] for k in CONDITION_SETS}
    )
    procedures: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in PROCEDURE_SETS})
    meds: list[MedRecord] = field(default_factory=list)
    unreadable: dict[str, list[str]] = field(default_factory=dict)  # value set -> refs that failed validation
    specimens: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report_texts: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (pathology report, its text)
    # body weights through the status policy but not yet validated: a chart holds dozens (vital signs) and a flat
    # T-DXd dose needs one, so the one used is validated where it is used (facts/dosing.py)
    weights: list[dict[str, Any]] = field(default_factory=list)


def _dedupe(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One copy per type/id: the same resource may come under two prefetch keys, on two pages of a search, or
    as two versions. Every copy is weighed (copy_rank): the copy that wins is the one the status policy then
    reads, wherever it stood in the answer."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    anonymous = []
    for r in resources:
        if not isinstance(r, dict) or not isinstance(r.get("resourceType"), str):
            continue
        rid = r.get("id")
        if not isinstance(rid, str):
            anonymous.append(r)
            continue
        key = (r["resourceType"], rid)
        old = best.get(key)
        if old is None or (old is not r and copy_rank(r) >= copy_rank(old)):  # ranked only for a duplicate
            best[key] = r
    return list(best.values()) + anonymous


_COPY_STATUS = {  # among copies of one id: a retraction is final; an amendment or correction replaces the original
    "entered-in-error": 5,
    "cancelled": 4,
    "amended": 3,
    "corrected": 3,
    "final": 2,
    "appended": 2,
    "preliminary": 1,
    "registered": 0,
}


def copy_rank(r: dict[str, Any]) -> tuple[str, int, str, str]:
    """Which of two copies of one id is the resource now: the later meta.versionId (when the server keeps
    versions), then the status (entered-in-error > cancelled > amended/corrected > final > preliminary), then
    the later meta.lastUpdated, then the later `issued`; a tie goes to the copy that came last."""
    meta: dict[str, Any] = r["meta"] if isinstance(r.get("meta"), dict) else {}
    v = str(meta.get("versionId", ""))
    issued = r.get("issued")
    return (
        v.zfill(12) if v.isdigit() else v,
        _COPY_STATUS.get(str(r.get("status")), 2),
        str(meta.get("lastUpdated", "")),
        issued if isinstance(issued, str) else "",
    )


def therapy_match(vs: str, m: Match) -> Match:
    """A therapy procedure as the drug class it is exposure to, under the name its value set gives it."""
    drug_class, name = THERAPY_PROCEDURES[vs]
    return Match(drug_class, m.by, m.what, name)


def medication_concept(resource: dict[str, Any], medications: dict[str, dict[str, Any]]) -> Any:
    """medicationCodeableConcept, or the code of the referenced (or contained) Medication."""
    if isinstance(resource.get("medicationCodeableConcept"), dict):
        return resource["medicationCodeableConcept"]
    ref = resource.get("medicationReference")
    if not isinstance(ref, dict):
        return None
    target = ref.get("reference")
    if isinstance(target, str):
        if target.startswith("#"):
            for c in resource.get("contained") or []:
                if isinstance(c, dict) and c.get("id") == target[1:]:
                    return c.get("code")
        med = medications.get(target.split("/")[-1]) if "Medication/" in target or "/" not in target else None
        if med:
            return med.get("code")
    return {"text": ref["display"]} if isinstance(ref.get("display"), str) else None


def _observation_set(ts: Terminology, obs: dict[str, Any]) -> str | None:
    hit = ts.match_any(OBS_SETS, obs.get("code"))
    if hit:
        return hit.value_set
    for comp in obs.get("component") or []:
        if isinstance(comp, dict):
            hit = ts.match_any(HER2_SETS, comp.get("code"))
            if hit:
                return "her2-ihc" if hit.value_set in ("her2-ihc", "her2-interpretation") else "her2-ish"
    return None


def _condition_hits(ts: Terminology, cond: dict[str, Any]) -> list[tuple[str, Match]]:
    """The value sets a Condition's code is in: by code when any coding matched one (its text is
    then not read against the others), else by text."""
    code = cond.get("code")
    if not ts.group(CONDITION_SETS).could_match(code):
        return []
    hits = [(vs, m) for vs in CONDITION_SETS if (m := ts.match(vs, code)) is not None]
    coded = [(vs, m) for vs, m in hits if m.by == "code"]
    return coded or hits


def condition_sets(ts: Terminology, cond: dict[str, Any]) -> set[str]:
    """The value sets a Condition is sorted into, as the facts sort it."""
    return {vs for vs, _ in _condition_hits(ts, cond)}


def extract(resources: list[dict[str, Any]], ts: Terminology) -> Extracted:
    """Sort the resources of a request into what the facts read; skip and note invalid ones."""
    out = Extracted()
    resources = _dedupe(resources)
    medications = {r["id"]: r for r in resources if r["resourceType"] == "Medication" and isinstance(r.get("id"), str)}
    reports = pathology_reports(resources, ts, lambda rep: _admit_report(rep, out.notes))
    members = {ref: rep for rep in reports for ref in result_refs(rep)}
    for r in resources:
        try:
            _sort_one(r, ts, medications, members, out)
        except (TypeError, AttributeError, ValueError, KeyError):
            out.notes.append(f"{ref_of(r)} was skipped: not readable FHIR")
    out.report_texts = [(rep, text) for rep in reports if (text := report_text(rep))]
    for rep in reports:
        for kind, obs in conclusion_statements(
            rep, {k for k, lst in out.observations.items() if any(o.get("_report") == rep.get("id") for o in lst)}
        ):
            out.observations[kind].append(obs)
    return out


class Sorting(NamedTuple):
    """How a resource sorts: its value sets (kept by what it reads: see _what_it_reads, Terminology.sorting), and
    what is its own (the status policy, the validation verdict). A named tuple: one is made per resource never seen,
    and a frozen dataclass is several times slower to make."""

    sets: tuple[str, ...] = ()  # Observation: its value set by code; Procedure: its value sets
    condition_hits: tuple[tuple[str, Match], ...] = ()
    drug: Match | None = None  # a medication record's drug, when its own content names it
    drug_elsewhere: bool = False  # it references a Medication resource: the drug is read per request
    aside: bool = False  # the status policy sets it aside
    aside_note: str | None = None
    verdict: Verdict | None = None  # FHIR validation's, when its own content makes it read (else: per request)


SORTED_TYPES = {"Observation", "Condition", "Procedure", "Specimen", *MED_TYPES}


def _status(r: dict[str, Any]) -> tuple[bool, str | None]:
    """The status policy: (set aside, the note it gets when one is worth a line)."""
    decision, status = verdict(r)
    aside = decision in (IGNORE, UNCONFIRMED)
    return aside, status_note(r, decision, status) if aside else None


def _sorting(r: dict[str, Any], ts: Terminology) -> Sorting:
    """How it sorts: the value sets of what it reads (its type and codes, or its drug), kept by those elements'
    bytes, not the resource's (a new result with a known code is not sorted again); the status policy, and the
    validation verdict when that sorting alone makes it read, are the resource's own."""
    reads = content_key(_what_it_reads(r))
    found = ts.sorting(("sorted", reads), lambda: _sorted(r, ts)) if reads is not None else _sorted(r, ts)
    aside, said = _status(r)
    relevant = (
        (found.sets and found.sets != LAZY_SETS)
        or found.condition_hits
        or found.drug is not None
        or (r["resourceType"] == "Specimen" and isinstance(r.get("id"), str))
    )
    return Sorting(  # not _replace: this runs once per resource never seen
        found.sets,
        found.condition_hits,
        found.drug,
        found.drug_elsewhere,
        aside,
        said,
        verdict_of(r) if relevant and not aside else None,
    )


def _what_it_reads(r: dict[str, Any]) -> tuple[Any, ...]:
    """The elements that decide how a resource sorts (what _sorted reads): its type, and its codes or its drug."""
    rtype = r["resourceType"]
    if rtype == "Observation":
        parts = r.get("component")
        codes = [c.get("code") for c in parts if isinstance(c, dict)] if isinstance(parts, list) else None
        return rtype, r.get("code"), codes
    if rtype in ("Condition", "Procedure"):
        return rtype, r.get("code")
    if rtype in MED_TYPES:
        ref = r.get("medicationReference")
        local = isinstance(ref, dict) and str(ref.get("reference", "")).startswith("#")
        return rtype, r.get("medicationCodeableConcept"), ref, r.get("contained") if local else None
    return (rtype,)


def _sorted(r: dict[str, Any], ts: Terminology) -> Sorting:
    """The value sets of what it reads (nothing else: kept by those elements, see _what_it_reads)."""
    rtype = r["resourceType"]
    if rtype == "Observation":
        vs = _observation_set(ts, r)
        return Sorting(sets=(vs,) if vs else ())
    if rtype == "Condition":
        return Sorting(condition_hits=tuple(_condition_hits(ts, r)))
    if rtype == "Procedure":
        sets: tuple[str, ...] = ()
        if ts.group(PROCEDURE_SETS).could_match(r.get("code")):
            sets = tuple(vs for vs in PROCEDURE_SETS if ts.match(vs, r.get("code")))
        return Sorting(sets=sets)
    if rtype in MED_TYPES:
        ref = r.get("medicationReference")
        target = (
            ref.get("reference")
            if isinstance(ref, dict) and not isinstance(r.get("medicationCodeableConcept"), dict)
            else None
        )
        if isinstance(target, str) and not target.startswith("#"):
            return Sorting(drug_elsewhere=True)
        return Sorting(drug=ts.classify_drug(medication_concept(r, {})))
    return Sorting()


def _admit_report(report: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """A pathology report through the status policy, then FHIR validation (None, with a note, if set aside)."""
    aside, said = _status(report)
    return _admit(report, Sorting(aside=aside, aside_note=said), notes)


def _admit(r: dict[str, Any], sorting: Sorting, notes: list[str]) -> dict[str, Any] | None:
    """The status policy, then FHIR validation: the resource to read, or None (with a note)."""
    if sorting.aside:
        if sorting.aside_note:
            notes.append(sorting.aside_note)
        return None
    return apply_verdict(r, sorting.verdict, notes) if sorting.verdict else validated(r, notes)


def _sort_one(
    r: dict[str, Any],
    ts: Terminology,
    medications: dict[str, dict[str, Any]],
    members: dict[str, dict[str, Any]],
    out: Extracted,
) -> None:
    rtype = r["resourceType"]
    if rtype not in SORTED_TYPES:
        return
    # no resource is serialised here: how it sorts is kept by what it reads, a verdict the models gave by validated();
    # a therapy record's bytes are made when it is one (the lines of therapy are kept by them: facts/therapy.py)
    sorting = _sorting(r, ts)
    if rtype == "Observation":
        report = members.get(ref_of(r)) if members else None
        # what a report's result is about, read from its code's words only when a report references it (rare)
        vs = sorting.sets[0] if sorting.sets else (report_member_set(r) if report else None)
        if not vs:
            return
        if sorting.aside:
            _admit(r, sorting, out.notes)  # says why
            return
        if (vs,) == LAZY_SETS:
            out.weights.append(r)
            return
        admitted = _admit(r, sorting, out.notes)
        if admitted is None:  # a result exists but cannot be read: say which
            out.unreadable.setdefault(vs, []).append(ref_of(r))
        else:
            out.observations[vs].append(with_report_context(admitted, report) if report else admitted)
    elif rtype == "Condition":
        if sorting.condition_hits and (admitted := _admit(r, sorting, out.notes)) is not None:
            for vs, m in sorting.condition_hits:
                out.conditions[vs].append((admitted, m))
    elif rtype == "Procedure":
        if sorting.sets and (admitted := _admit(r, sorting, out.notes)) is not None:
            for vs in sorting.sets:
                out.procedures[vs].append(admitted)
                if vs in THERAPY_PROCEDURES and (hit := ts.match(vs, admitted.get("code"))) is not None:
                    out.meds.append(MedRecord(admitted, therapy_match(vs, hit), content_key(admitted)))
    elif rtype in MED_TYPES:
        drug = ts.classify_drug(medication_concept(r, medications)) if sorting.drug_elsewhere else sorting.drug
        if drug and (admitted := _admit(r, sorting, out.notes)) is not None:
            out.meds.append(MedRecord(admitted, drug, content_key(admitted)))
    elif isinstance(r.get("id"), str) and (admitted := _admit(r, sorting, out.notes)) is not None:
        out.specimens[admitted["id"]] = admitted  # a Specimen
