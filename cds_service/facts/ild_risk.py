"""ILD/pneumonitis risk (DESIGN §6.5): prior ILD or pneumonitis (T-DXd-associated, grade),
thoracic radiotherapy, lung metastases, reduced renal function (a Condition, or the latest eGFR)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cds_service.facts.evidence import Evidence
from cds_service.facts.thresholds import ILD_DISCONTINUE_GRADE, TDXD_ILD_WINDOW
from cds_service.fhir.primitives import effective_date, fmt, parse_date, ref_of
from cds_service.fhir.read import bound_in_text, concept, items, quantity, string, value_words
from cds_service.fhir.terminology import Match, Terminology, codings, first_text, note_texts, texts

_GRADE = re.compile(r"grade\s*([1-5])", re.I)
_SEVERITY = {"255604002": 1, "6736007": 2, "24484000": 3}  # SNOMED mild / moderate / severe


@dataclass(frozen=True)
class Egfr:
    """The latest estimated GFR, as reported (a bound such as ">60" keeps its comparator)."""

    value: float
    comparator: str | None
    evidence: Evidence

    def below(self, threshold: float) -> bool | None:
        """Whether it is under threshold; None when a reported bound (">30") leaves it open."""
        if self.comparator in (">", ">=", "≥"):
            return False if self.value >= threshold else None
        if self.comparator in ("<", "<=", "≤"):
            return True if self.value <= threshold else None
        return self.value < threshold


def latest_egfr(observations: list[dict[str, Any]]) -> Egfr | None:
    """The most recent readable eGFR result (the status policy already set aside unusable ones): a Quantity, or
    a string that starts with the number (">60")."""
    readings = []
    for obs in observations:  # the status policy was applied at extraction
        reading = quantity(obs.get("valueQuantity")) or bound_in_text(string(obs, "valueString"), anchored=True)
        if reading:
            readings.append((effective_date(obs) or date.min, reading, obs))
    if not readings:
        return None
    _, reading, obs = max(readings, key=lambda t: t[0])
    text = f"eGFR {reading.text('mL/min/1.73 m2')}"
    return Egfr(reading.value, reading.cmp, Evidence(ref_of(obs), effective_date(obs), text))


@dataclass(frozen=True)
class IldEvent:
    """One ILD/pneumonitis event: onset, grade, resolution (None: not recorded as resolved)."""

    evidence: Evidence
    grade: int | None
    onset: date | None
    resolved: date | None
    resolved_undated: bool
    tdxd_associated: bool

    @property
    def days_to_resolution(self) -> int | None:
        return (self.resolved - self.onset).days if self.resolved and self.onset else None


def _resolution(record: dict[str, Any]) -> tuple[date | None, bool]:
    """(the date it resolved, resolved without a date) from abatement or clinical status."""
    when = parse_date(string(record, "abatementDateTime"))
    period = record.get("abatementPeriod")
    if when is None and isinstance(period, dict):
        when = parse_date(period.get("end")) or parse_date(period.get("start"))
    status = {str(string(c, "code")) for c in codings(concept(record, "clinicalStatus"))}
    resolved = (
        bool(when) or bool(status & {"resolved", "inactive", "remission"}) or bool(string(record, "abatementString"))
    )
    return when, resolved and when is None


@dataclass
class IldRisk:
    prior_ild: list[Evidence] = field(default_factory=list)
    tdxd_ild_grade2plus: list[Evidence] = field(default_factory=list)
    thoracic_rt: list[Evidence] = field(default_factory=list)
    lung_metastases: list[Evidence] = field(default_factory=list)
    renal: list[Evidence] = field(default_factory=list)
    egfr: Egfr | None = None
    notes: list[str] = field(default_factory=list)
    events: list[IldEvent] = field(default_factory=list)

    @property
    def factors(self) -> list[Evidence]:
        return self.prior_ild + self.thoracic_rt + self.lung_metastases + self.renal


def _grade(cond: dict[str, Any]) -> int | None:
    for c in codings(concept(cond, "severity")):
        if string(c, "code") in _SEVERITY:
            return _SEVERITY[c["code"]]
    blobs = texts(concept(cond, "code")) + texts(concept(cond, "severity")) + note_texts(cond)
    for t in blobs:
        m = _GRADE.search(t)
        if m:
            return int(m.group(1))
    return None


@dataclass(frozen=True)
class Exposure:
    """T-DXd exposure: first dose, last dose (None while it continues)."""

    first: date
    last: date | None

    def covers(self, when: date) -> bool:
        return when >= self.first and (self.last is None or when <= self.last + timedelta(days=TDXD_ILD_WINDOW.value))


def _tdxd_associated(cond: dict[str, Any], ts: Terminology, exposure: Exposure | None) -> str | None:
    """Why an ILD/pneumonitis is T-DXd-associated: named as caused by T-DXd, or its onset falls during
    T-DXd exposure (DESIGN §6.5); None when neither."""
    blob = " ".join(texts(concept(cond, "code")) + note_texts(cond))
    if ts.match("tdxd", {"text": blob}):
        return "attributed to T-DXd in the record"
    onset = effective_date(cond)
    if exposure and onset and exposure.covers(onset):
        return f"onset {fmt(onset)} during T-DXd exposure (from {fmt(exposure.first)})"
    return None


def _thoracic(proc: dict[str, Any], ts: Terminology) -> bool:
    sites = list(items(proc, "bodySite"))
    if any(ts.match("thoracic-site", s) for s in sites):
        return True
    return bool(ts.match("thoracic-site", {"text": " ".join(texts(concept(proc, "code")))}))


def observation_grade(obs: dict[str, Any]) -> int | None:
    """The CTCAE grade (1-5) an ILD/pneumonitis Observation reports: an integer, or "grade N" in its value."""
    value = obs.get("valueInteger")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 1 <= value <= 5 else None
    for t in value_words(obs):
        m = _GRADE.search(t)
        if m:
            return int(m.group(1))
    return None


def _add_event(
    risk: IldRisk, record: dict[str, Any], label: str, grade: int | None, ts: Terminology, exposure: Exposure | None
) -> None:
    """One ILD/pneumonitis event: a risk factor, and T-DXd-associated grade ≥2 when it is."""
    why = _tdxd_associated(record, ts, exposure)
    graded = (
        ""
        if grade is None and not why
        else ("" if grade and _GRADE.search(label) else f", grade {grade}" if grade else ", grade not recorded")
    )
    ev = Evidence(ref_of(record), effective_date(record), label + graded + (f"; {why}" if why else ""))
    risk.prior_ild.append(ev)
    resolved, undated = _resolution(record)
    risk.events.append(IldEvent(ev, grade, effective_date(record), resolved, undated, bool(why)))
    if why:
        if grade is None:
            risk.notes.append(f"{ref_of(record)}: T-DXd-associated ILD/pneumonitis without a recorded grade")
        elif grade >= ILD_DISCONTINUE_GRADE.value:
            risk.tdxd_ild_grade2plus.append(ev)


def derive_ild(
    conditions: dict[str, list[tuple[dict[str, Any], Match]]],
    procedures: dict[str, list[dict[str, Any]]],
    lung_metastases: list[Evidence],
    exposure: Exposure | None,
    ts: Terminology,
    renal_observations: Sequence[dict[str, Any]] = (),
    graded_observations: Sequence[dict[str, Any]] = (),
) -> IldRisk:
    """The status policy was applied at extraction: every resource here counts."""
    risk = IldRisk(lung_metastases=list(lung_metastases), egfr=latest_egfr(list(renal_observations)))
    for cond, match in conditions["ild"]:
        _add_event(risk, cond, first_text(concept(cond, "code"), match.what), _grade(cond), ts, exposure)
    for obs in graded_observations:  # a CTCAE-graded ILD/pneumonitis observation is an event of its own
        grade = observation_grade(obs)
        if grade:
            _add_event(risk, obs, first_text(concept(obs, "code"), "ILD/pneumonitis"), grade, ts, exposure)
    for proc in procedures["radiotherapy"]:
        if not proc.get("bodySite") and not ts.match("thoracic-site", {"text": " ".join(texts(concept(proc, "code")))}):
            risk.notes.append(f"{ref_of(proc)}: radiotherapy without a body site: thoracic or not cannot be told")
            continue
        if _thoracic(proc, ts):
            label = first_text(concept(proc, "code"), "radiotherapy")
            risk.thoracic_rt.append(Evidence(ref_of(proc), effective_date(proc), f"thoracic radiotherapy: {label}"))
    for cond, _ in conditions["renal-impairment"]:
        risk.renal.append(
            Evidence(
                ref_of(cond), effective_date(cond), f"reduced renal function: {first_text(cond.get('code'), 'CKD')}"
            )
        )
    return risk
