"""Metastatic setting (DESIGN §6.2): secondary malignancy, metastatic breast cancer, or stage IV / M1."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .evidence import Evidence, effective_date, parse_date, ref_of
from .terminology import Match, Terminology, first_text, texts, verification_codes

_STAGE_IV = re.compile(r"(?<![a-z0-9])(?:stage\s*(?:iv|4)|m1[a-c]?|c?m1)(?![a-z0-9])", re.I)
_INACTIVE = {"entered-in-error", "refuted"}


@dataclass
class Setting:
    """Whether the disease is metastatic, since when, where, and the breast cancer diagnosis."""

    metastatic: bool
    start: date | None
    evidence: list[Evidence] = field(default_factory=list)
    lung_metastases: list[Evidence] = field(default_factory=list)
    breast_cancer: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _valid(cond: dict[str, Any]) -> bool:
    return not (verification_codes(cond) & _INACTIVE)


def _onset(cond: dict[str, Any]) -> date | None:
    return effective_date(cond) or parse_date(cond.get("recordedDate"))


def _stage_iv(cond: dict[str, Any]) -> bool:
    for stage in cond.get("stage") or []:
        if isinstance(stage, dict) and any(_STAGE_IV.search(t) for t in texts(stage.get("summary"))):
            return True
    return False


def derive_setting(conditions: dict[str, list[tuple[dict[str, Any], Match]]],
                   staging: list[dict[str, Any]], ts: Terminology) -> Setting:
    s = Setting(metastatic=False, start=None)
    seen: set[str] = set()
    for cond, match in conditions.get("metastatic-disease", []):
        if not _valid(cond):
            s.notes.append(f"{ref_of(cond)} ignored (entered in error or refuted)")
            continue
        seen.add(ref_of(cond))
        label = match.describe() if match.by == "text" else first_text(cond.get("code"), match.what)
        s.evidence.append(Evidence(ref_of(cond), _onset(cond), f"metastatic disease: {label}"))
    for cond, _ in conditions.get("breast-cancer", []):
        if not _valid(cond):
            continue
        s.breast_cancer.append(Evidence(ref_of(cond), _onset(cond), "breast cancer"))
        if _stage_iv(cond) and ref_of(cond) not in seen:
            s.evidence.append(Evidence(ref_of(cond), _onset(cond), "breast cancer, stage IV"))
    for obs in staging:
        if obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        if any(_STAGE_IV.search(t) for t in texts(obs.get("valueCodeableConcept"))):
            s.evidence.append(Evidence(ref_of(obs), effective_date(obs), "stage IV / M1 staging"))
    for cond, _ in conditions.get("lung-metastasis", []):
        if _valid(cond):
            s.lung_metastases.append(Evidence(ref_of(cond), _onset(cond), "lung/pleural metastasis"))
    s.metastatic = bool(s.evidence)
    dated = [e.when for e in s.evidence if e.when]
    s.start = min(dated) if dated else None
    if s.metastatic and s.start is None:
        s.notes.append("metastatic disease is recorded without a date: therapy lines cannot be placed "
                       "before or after it")
    if not s.metastatic:
        s.notes.append("no record of metastatic disease (secondary malignancy, stage IV or M1)")
    return s
