"""ILD/pneumonitis risk (DESIGN §6.5): prior ILD or pneumonitis (T-DXd-associated, grade),
thoracic radiotherapy, lung metastases, reduced renal function."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .evidence import Evidence, effective_date, ref_of
from .terminology import Match, Terminology, codings, first_text, note_texts, texts, verification_codes

_GRADE = re.compile(r"grade\s*([1-5])", re.I)
_SEVERITY = {"255604002": 1, "6736007": 2, "24484000": 3}  # SNOMED mild / moderate / severe
_DRUG_INDUCED_ICD = ("J70.2", "J70.3", "J70.4")


@dataclass
class IldRisk:
    prior_ild: list[Evidence] = field(default_factory=list)
    tdxd_ild_grade2plus: list[Evidence] = field(default_factory=list)
    thoracic_rt: list[Evidence] = field(default_factory=list)
    lung_metastases: list[Evidence] = field(default_factory=list)
    renal: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def factors(self) -> list[Evidence]:
        return self.prior_ild + self.thoracic_rt + self.lung_metastases + self.renal


def _grade(cond: dict[str, Any]) -> int | None:
    for c in (cond.get("severity") or {}).get("coding", []) if isinstance(cond.get("severity"), dict) else []:
        if c.get("code") in _SEVERITY:
            return _SEVERITY[c["code"]]
    blobs = texts(cond.get("code")) + texts(cond.get("severity")) + note_texts(cond)
    for t in blobs:
        m = _GRADE.search(t or "")
        if m:
            return int(m.group(1))
    return None


def _tdxd_associated(cond: dict[str, Any], ts: Terminology, tdxd_start: date | None) -> bool:
    blob = " ".join(texts(cond.get("code")) + note_texts(cond))
    if ts.match("tdxd", {"text": blob}):
        return True
    coded = any(str(c.get("code", "")).startswith(_DRUG_INDUCED_ICD) for c in codings(cond.get("code")))
    drug_induced = coded or "drug-induced" in blob.lower() or "drug induced" in blob.lower()
    onset = effective_date(cond)
    return bool(drug_induced and tdxd_start and onset and onset >= tdxd_start)


def _thoracic(proc: dict[str, Any], ts: Terminology) -> bool:
    sites = list(proc.get("bodySite") or [])
    if any(ts.match("thoracic-site", s) for s in sites):
        return True
    return bool(ts.match("thoracic-site", {"text": " ".join(texts(proc.get("code")))}))


def derive_ild(conditions: dict[str, list[tuple[dict[str, Any], Match]]], procedures: dict[str, list[dict[str, Any]]],
               lung_metastases: list[Evidence], tdxd_start: date | None, ts: Terminology) -> IldRisk:
    risk = IldRisk(lung_metastases=list(lung_metastases))
    for cond, match in conditions.get("ild", []):
        if verification_codes(cond) & {"entered-in-error", "refuted"}:
            continue
        grade = _grade(cond)
        label = first_text(cond.get("code"), match.what)
        ev = Evidence(ref_of(cond), effective_date(cond), f"{label}" + (f", grade {grade}" if grade else ""))
        risk.prior_ild.append(ev)
        if _tdxd_associated(cond, ts, tdxd_start):
            if grade is None:
                risk.notes.append(f"{ref_of(cond)}: T-DXd-associated ILD/pneumonitis without a recorded grade")
            elif grade >= 2:
                risk.tdxd_ild_grade2plus.append(ev)
    for proc in procedures.get("radiotherapy", []):
        if proc.get("status") in ("entered-in-error", "not-done", "preparation"):
            continue
        if _thoracic(proc, ts):
            label = first_text(proc.get("code"), "radiotherapy")
            risk.thoracic_rt.append(Evidence(ref_of(proc), effective_date(proc), f"thoracic radiotherapy: {label}"))
    for cond, _ in conditions.get("renal-impairment", []):
        risk.renal.append(Evidence(ref_of(cond), effective_date(cond),
                                   f"reduced renal function: {first_text(cond.get('code'), 'CKD')}"))
    return risk
