"""her2-rescore: metastatic breast cancer whose HER2 picture cannot support a HER2-low/ultralow decision."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.facts.derive import Facts
from cds_service.facts.her2 import BINARY_ONLY, INCONSISTENT, INDETERMINATE, LOW, ULTRALOW, ZERO_UNSPECIFIED
from cds_service.facts.request import RequestContext
from cds_service.fhir.inert import inert as inert_note
from cds_service.fhir.primitives import fmt, months_between
from cds_service.rules.decision import CardDecision, Suggestion
from cds_service.rules.ordered import order_line

TOPIC = "her2-rescore"
IHC, ISH = "ihc", "ish"  # what the drafted ServiceRequest asks for: IHC re-scoring / review, or reflex ISH
SUMMARIES = {
    None: "Metastatic breast cancer with no HER2 result: order HER2 IHC with low/ultralow scoring",
    BINARY_ONLY: "HER2 reported only as 'negative': re-score IHC for HER2-low/ultralow (T-DXd eligibility)",
    ZERO_UNSPECIFIED: "HER2 IHC 0 without staining statement: request review for HER2-ultralow vs null",
    INDETERMINATE: "HER2 IHC 2+ without ISH: order reflex ISH to decide HER2-low vs positive",
    "ish-unreadable": "HER2 ISH cannot be interpreted as reported: request pathology review",
    INCONSISTENT: "HER2 IHC 0 with staining in >10% of cells is contradictory: request pathology review",
    "stale": "HER2 result is old or from the primary only: consider re-testing metastatic tissue",
    "unreadable": "A HER2 result could not be read (invalid record): check the pathology report before re-testing",
}


def _reasons(facts: Facts, stale_months: int, recheck_actionable: bool) -> tuple[list[str], str | None]:
    """(why the picture is not actionable, the ServiceRequest kind: 'ihc' | 'ish')."""
    her2, hr_pos = facts.her2, facts.hr.status == "positive"
    cur = her2.current
    if cur is None:
        if her2.unreadable:
            return [
                f"a HER2 result exists ({', '.join(her2.unreadable)}) but is not valid FHIR and could not be "
                "read; its category is unknown (it may even be HER2-positive)"
            ], IHC
        return ["no HER2 result on record"], IHC
    why: list[str] = []
    kind: str | None = None
    if cur.category == BINARY_ONLY:
        why.append("the latest HER2 result is reported only as negative, without an IHC score")
        kind = IHC
    elif cur.category == ZERO_UNSPECIFIED:
        why.append(
            "the latest result is IHC 0 without a membrane-staining statement (null vs ultralow)"
            + ("; ultralow would open the DESTINY-Breast06 pathway for this HR-positive disease" if hr_pos else "")
        )
        kind = IHC
    elif cur.category == INDETERMINATE and cur.ihc == 2 and cur.ish is None:
        why.append("the latest result is IHC 2+ without an ISH result")
        kind = ISH
    elif cur.category == INDETERMINATE:
        why.append(
            "the latest ISH result cannot be interpreted as reported (" + ("; ".join(cur.notes) or "equivocal") + ")"
        )
        kind = ISH
    elif cur.category == INCONSISTENT:
        why.append(
            "the latest result is IHC 0 but states membrane staining in more than 10% of cells, which is "
            "the definition of 1+: the report is inconsistent"
        )
        kind = IHC
    if cur.category in (LOW, ULTRALOW) and not recheck_actionable:
        return why, kind  # an old or primary-only HER2-low/ultralow result already qualifies: no noise
    if cur.when is None:
        why.append("the latest HER2 result has no date")
        kind = kind or IHC
    elif months_between(cur.when, facts.today) > stale_months:
        why.append(
            f"the latest HER2 result is {months_between(cur.when, facts.today)} months old (threshold {stale_months})"
        )
        kind = kind or IHC
    if facts.later_metastatic_biopsy:
        why.append(
            f"metastatic tissue was sampled on {fmt(facts.later_metastatic_biopsy.when)} "
            f"({facts.later_metastatic_biopsy.ref}) but HER2 results are from the primary tumour only"
        )
        kind = kind or IHC
    return why, kind


def service_request(facts: Facts, patient_id: str, kind: str) -> dict[str, Any]:
    spec = facts.her2.current.specimen_ref if facts.her2.current else None
    site = facts.her2.current.site if facts.her2.current else None
    code = (
        {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "85318-4",
                    "display": "HER2 [Presence] in Breast cancer specimen by FISH",
                }
            ],
            "text": "Reflex HER2 ISH for IHC 2+",
        }
        if kind == ISH
        else {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "85319-2",
                    "display": "HER2 [Presence] in Breast cancer specimen by Immune stain",
                }
            ],
            "text": "HER2 IHC re-scoring / pathology review (report HER2-low, -ultralow or -null)",
        }
    )
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}
        ],
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [
            {
                "text": "Metastatic breast cancer: HER2-low/ultralow status needed for "
                "trastuzumab deruxtecan eligibility (ASCO/CAP 2023)"
            }
        ],
    }
    if spec:
        sr["specimen"] = [{"reference": spec}]
    if spec or site:
        sr["note"] = [{"text": f"Specimen: {inert_note(site or spec or '')}"}]
    return sr


def why_silent(facts: Facts, request: RequestContext, cfg: Mapping[str, Any]) -> str | None:
    """Why this rule says nothing (None: it has a card)."""
    if not facts.setting.in_scope:
        other = "; ".join(e.text for e in facts.setting.other_primary)
        return "no breast cancer on record (HER2, ER or PR results alone do not make one)" + (
            f"; {other}" if other else ""  # each line reads "other primary cancer: ..."
        )
    if not facts.setting.advanced:
        return "no metastatic or unresectable disease on record"
    if facts.her2.ever_positive or facts.her2_positive_history:
        return "HER2-positive history on record: HER2-positive disease has its own pathways, never a re-scoring card"
    if request.hook != "patient-view" and request.systemic_order() is None:
        return "the order is not a systemic breast-cancer therapy this service recognises"
    why, kind = _reasons(facts, int(cfg["stale_after_months"]), bool(cfg["recheck_actionable"]))
    if not why or kind is None:
        cur = facts.her2.current
        return f"the HER2 picture is actionable as it stands ({cur.describe() if cur else 'no result'})"
    return None


def decide(facts: Facts, request: RequestContext, cfg: Mapping[str, Any]) -> CardDecision | None:
    """The card of this topic for this chart and request (None: silent; why_silent says why)."""
    if why_silent(facts, request, cfg) is not None:
        return None
    why, kind = _reasons(facts, int(cfg["stale_after_months"]), bool(cfg["recheck_actionable"]))
    assert kind is not None  # why_silent said the picture needs re-scoring
    cur = facts.her2.current
    key = cur.category if cur else ("unreadable" if facts.her2.unreadable else None)
    if cur and cur.category == INDETERMINATE and not (cur.ihc == 2 and cur.ish is None):
        key = "ish-unreadable"
    summary = SUMMARIES.get(key, SUMMARIES["stale"])
    reason = "no-result" if key is None else key if key in SUMMARIES else "stale"
    evidence = [f"HER2 history: {r.describe()}" for r in reversed(facts.her2.results)] or [
        "no readable HER2 result" if facts.her2.unreadable else "no HER2 result found"
    ]
    refs = ", ".join(e.ref for e in facts.setting.evidence + facts.setting.unresectable)
    evidence.append(f"{facts.setting.describe()} ({refs})")
    hr_lines = "; ".join(e.line() for e in facts.hr.evidence())
    evidence.append(f"HR status {facts.hr.status}: {hr_lines or 'no ER or PR result'}")
    order = request.systemic_order()
    if order and (line := order_line(facts, order)):
        evidence.append(line)
    label = "Order reflex HER2 ISH" if kind == ISH else "Request HER2 IHC re-scoring / pathology review"
    return CardDecision(
        topic=TOPIC,
        indicator="warning" if cur is None or cur.category != INDETERMINATE else "info",
        summary=summary,
        evidence=evidence,
        advice=[f"Why: {w}." for w in why],
        unknowns=facts.her2.notes + facts.hr.notes[:2] + request.not_available(facts.data_notes),
        suggestions=[Suggestion(label, [service_request(facts, request.patient_id, kind)])],
        links=["asco_cap", "label"],
        overrides=["already-addressed", "not-a-candidate", "data-incorrect"],
        reason=reason,
    )
