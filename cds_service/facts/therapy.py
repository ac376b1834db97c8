"""Therapy history (DESIGN §6.3): records → per-drug episodes → regimen lines, with progression,
toxicity stops, setting (metastatic or early) and chemotherapy / T-DXd exposure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any, Literal

from cds_service.facts.evidence import Evidence
from cds_service.facts.kept import kept
from cds_service.facts.setting import Metastasis
from cds_service.facts.thresholds import (
    ADJUVANT_RECURRENCE,
    COMBINATION,
    EPISODE_GAP,
    NEW_LINE_GRACE,
    PROGRESSION_AFTER_END,
    TDXD_ACTIVE,
)
from cds_service.fhir.extraction import MedRecord
from cds_service.fhir.primitives import effective_date, fmt, latest_day, parse_date, ref_of
from cds_service.fhir.read import concept, items, obj, period, string
from cds_service.fhir.terminology import Terminology
from cds_service.fhir.validation import content_key

LineSetting = Literal["metastatic", "early", "unknown"]
Outcome = Literal["progressed", "stopped-toxicity", "ongoing", "ended-reason-unknown"]

ORDER_INTENTS = {"order", "plan", "original-order", "reflex-order", "filler-order", "instance-order"}
ONGOING = {"active", "in-progress", "on-hold"}
NOT_GIVEN = {"draft", "cancelled", "entered-in-error", "not-taken", "not-done", "stopped-before-start", "revoked"}


@dataclass(frozen=True, slots=True)
class Record:
    """One medication record as dates, drug and stop reason (frozen: kept by content and shared)."""

    ref: str
    drug_class: str
    ingredient: str
    start: date | None
    end: date | None
    ongoing: bool
    stop: str | None  # progression | toxicity | None
    stop_text: str | None
    by_text: bool
    given: bool = True  # False: a draft, cancelled or not-taken record (no dose was given)


@dataclass
class Line:
    """One regimen line: drugs started together, with outcome and the evidence for it."""

    drugs: list[str]
    classes: set[str]
    start: date | None
    end: date | None
    ongoing: bool
    refs: list[str]
    setting: LineSetting = "unknown"
    outcome: Outcome = "ended-reason-unknown"
    progression: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_endocrine(self) -> bool:
        return "endocrine-therapy" in self.classes

    @property
    def is_chemo(self) -> bool:
        return "chemotherapy" in self.classes

    @property
    def is_other_adc(self) -> bool:
        return "other-adc" in self.classes

    def describe(self) -> str:
        span = f"{fmt(self.start)} to {'ongoing' if self.ongoing else fmt(self.end) if self.end else 'end unknown'}"
        outcome = {
            "progressed": "progressed",
            "stopped-toxicity": "stopped for toxicity (not progression)",
            "ongoing": "ongoing",
            "ended-reason-unknown": "ended, reason unknown",
        }[self.outcome]
        ev = "; ".join(e.line() for e in self.progression)
        notes = "".join(f" [{n}]" for n in self.notes)
        return (
            f"{' + '.join(self.drugs)} ({span}, {self.setting} setting): {outcome}" + (f" — {ev}" if ev else "") + notes
        )


@dataclass
class TherapyHistory:
    lines: list[Line]
    tdxd: list[Record]
    tdxd_active: bool
    her2_directed: list[Record]
    adjuvant_recurrence: Evidence | None
    notes: list[str] = field(default_factory=list)

    def metastatic(self, pred: str) -> list[Line]:
        return [ln for ln in self.lines if ln.setting == "metastatic" and getattr(ln, pred)]


def _period(r: dict[str, Any]) -> tuple[date | None, date | None]:
    if isinstance(r.get("effectivePeriod"), dict):
        return period(r, "effectivePeriod")
    if r["resourceType"] == "Procedure":  # therapy recorded as a procedure: its period, or its one day
        if isinstance(r.get("performedPeriod"), dict):
            return period(r, "performedPeriod")
        day = parse_date(string(r, "performedDateTime"))
        return day, day
    if r["resourceType"] == "MedicationRequest":
        start, end = parse_date(string(r, "authoredOn")), None
        for dosage in items(r, "dosageInstruction"):
            bound_start, bound_end = period(obj(obj(dosage, "timing"), "repeat"), "boundsPeriod")
            start, end = bound_start or start, bound_end or end
        dispense = obj(r, "dispenseRequest")
        valid_start, valid_end = period(dispense, "validityPeriod")
        start, end = start or valid_start, end or valid_end
        supply = duration_days(dispense.get("expectedSupplyDuration"))
        if end is None and start and supply:  # a refill order: its supply, times (1 + refills)
            repeats = dispense.get("numberOfRepeatsAllowed")
            repeats = repeats if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats >= 0 else 0
            end = start + timedelta(days=round(supply * (1 + repeats)))
        return start, end
    day = effective_date(r)
    return day, (day if r["resourceType"] == "MedicationAdministration" else None)


_UNIT_DAYS = {
    "d": 1,
    "day": 1,
    "days": 1,
    "wk": 7,
    "week": 7,
    "weeks": 7,
    "mo": 30,
    "month": 30,
    "months": 30,
    "a": 365,
    "year": 365,
    "years": 365,
}


def duration_days(duration: Any) -> float | None:
    """A FHIR Duration in days (d, wk, mo, a), or None."""
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), (int, float)):
        return None
    unit = str(string(duration, "code") or string(duration, "unit") or "").lower()
    factor = _UNIT_DAYS.get(unit)
    return float(duration["value"]) * factor if factor and duration["value"] > 0 else None


def _reasons(r: dict[str, Any]) -> list[Any]:
    """Why a record stopped: statusReason, and a medication record's reasonCode (a procedure's reasonCode is
    why it was done, never why it stopped)."""
    out: list[Any] = items(r, "statusReason")
    return out if r["resourceType"] == "Procedure" else out + items(r, "reasonCode")


def read_record(rec: MedRecord, ts: Terminology) -> Record | None:
    """The record as dates, drug and stop reason. Not kept by itself: reading one costs less than keeping it (the
    lines of therapy are kept whole, by every record's bytes)."""
    r = rec.resource
    status = string(r, "status")
    if r["resourceType"] == "MedicationRequest" and string(r, "intent") not in ORDER_INTENTS:
        return None
    start, end = _period(r)
    stop = stop_text = None
    for cc in _reasons(r):
        if hit := ts.match("progression", cc):
            stop, stop_text = "progression", hit.describe()
            break
        if hit := ts.match("toxicity", cc):
            stop, stop_text = "toxicity", hit.describe()
    return Record(
        ref_of(r),
        rec.drug.value_set,
        rec.drug.canonical,
        start,
        end,
        status in ONGOING,
        stop,
        stop_text,
        rec.drug.by == "text",
        status not in NOT_GIVEN,
    )


def _episodes(records: list[Record]) -> list[list[Record]]:
    by_drug: dict[str, list[Record]] = {}
    for r in records:
        by_drug.setdefault(r.ingredient, []).append(r)
    episodes = []
    for recs in by_drug.values():
        recs.sort(key=lambda r: r.start or date.min)
        current: list[Record] = []
        reach: date | None = None
        for r in recs:
            if current and r.start and reach and (r.start - reach).days <= EPISODE_GAP.value:
                current.append(r)
            else:  # a new episode: the furthest date of the last one no longer counts
                if current:
                    episodes.append(current)
                current, reach = [r], None
            reach = max(filter(None, (reach, r.end, r.start)), default=None)
        if current:
            episodes.append(current)
    return episodes


def _line(episodes: list[list[Record]]) -> Line:
    recs = [r for ep in episodes for r in ep]
    starts = [r.start for r in recs if r.start]
    ongoing = any(ep[-1].ongoing for ep in episodes)
    ends = [max(filter(None, (r.end for r in ep)), default=None) for ep in episodes]
    end = None if ongoing or any(e is None for e in ends) else max(e for e in ends if e)
    named = {r.drug_class for r in recs if not r.ref.startswith("Procedure/")}
    line = Line(  # a class recorded as a procedure beside its named drugs shows the drugs only
        drugs=sorted({r.ingredient for r in recs if not r.ref.startswith("Procedure/") or r.drug_class not in named}),
        classes={r.drug_class for r in recs},
        start=min(starts) if starts else None,
        end=end,
        ongoing=ongoing,
        refs=[r.ref for r in recs],
    )
    if not ongoing and end is None:
        line.notes.append("end date not recorded")
    by_text = sorted({r.ingredient for r in recs if r.by_text})
    if by_text:
        line.notes.append(f"drug named in free text, not coded: {', '.join(by_text)}")
    return line


def _outcome(
    line: Line,
    episodes: list[list[Record]],
    status_obs: list[tuple[date, Evidence]],
    previous_end: date | None,
    next_same_class: date | None = None,
) -> None:
    for ep in episodes:
        for r in ep:
            if r.stop == "progression":
                line.progression.append(Evidence(r.ref, r.end or r.start, f"stopped for progression: {r.stop_text}"))
    if line.start:
        horizon = None if line.ongoing or line.end is None else line.end + timedelta(days=PROGRESSION_AFTER_END.value)
        for when, ev in status_obs:
            if when < line.start or (horizon and when > horizon) or (next_same_class and when > next_same_class):
                continue
            if line.end is None and not line.ongoing:
                continue  # an open-ended record without an end cannot claim later progressions
            just_started = (when - line.start).days <= NEW_LINE_GRACE.value
            if previous_end and just_started and (when - previous_end).days <= PROGRESSION_AFTER_END.value:
                continue  # belongs to the line before, which this one replaced
            line.progression.append(ev)
    last = max(episodes, key=lambda ep: max(filter(None, (r.end or r.start for r in ep)), default=date.min))
    if line.progression:
        line.outcome = "progressed"
    elif line.ongoing:
        line.outcome = "ongoing"
    elif any(r.stop == "toxicity" for r in last):
        line.outcome = "stopped-toxicity"
    else:
        line.outcome = "ended-reason-unknown"


def new_metastases(metastases: list[Metastasis], metastatic_start: date | None) -> list[tuple[date, Evidence, bool]]:
    """(onset, evidence, starts the metastatic setting) for each distant site not known before."""
    first: dict[str, date] = {}
    for m in metastases:
        if m.onset and (m.site not in first or m.onset < first[m.site]):
            first[m.site] = m.onset
    out = []
    for m in metastases:
        if m.onset and first.get(m.site) == m.onset:
            initial = metastatic_start is not None and m.onset <= metastatic_start
            out.append((m.onset, Evidence(m.evidence.ref, m.onset, f"new distant metastasis: {m.site}"), initial))
    return out


def _next_same_class(lines: list[Line]) -> list[date | None]:
    """For each line, the earliest start of a later line that shares a drug class with it (None: there is none)."""
    out: list[date | None] = [None] * len(lines)
    earliest: dict[str, date] = {}  # drug class -> earliest start among the lines after the current one
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        starts = [earliest[c] for c in line.classes if c in earliest]
        out[i] = min(starts) if starts else None
        if line.start:
            for c in line.classes:
                earliest[c] = min(earliest[c], line.start) if c in earliest else line.start
    return out


def _into_advanced(line: Line, start: date) -> None:
    """A line begun before the advanced setting and still running at its start (an adjuvant aromatase inhibitor
    joined at recurrence by a CDK4/6 inhibitor) is a line of the advanced setting when its progression is
    documented after that start (DESIGN §6.3)."""
    running = line.ongoing or (line.end is not None and line.end >= start)
    later = [e for e in line.progression if e.when and e.when > start]
    if running and later:
        line.setting = "metastatic"
        line.progression = later
        line.notes.append(
            f"begun before the advanced setting ({fmt(line.start)}), still running at its start ({fmt(start)}), "
            "progressed after it"
        )


def derive_therapy(
    meds: list[MedRecord],
    status_obs: list[dict[str, Any]],
    metastatic_start: date | None,
    metastatic: bool,
    ts: Terminology,
    today: date,
    metastases: Sequence[Metastasis] = (),
) -> TherapyHistory:
    """The lines of therapy; kept by everything they are built from (each record's bytes and drug, each status
    result's bytes, the metastatic setting and sites, the day), so that a chart that changed elsewhere (a new lab
    result) does not rebuild them. Shared by later calls: never changed after it is built."""
    keys = tuple(m.key for m in meds)
    status = tuple(content_key(o) for o in status_obs)
    build = partial(_derive_therapy, meds, status_obs, metastatic_start, metastatic, ts, today, metastases)
    if None in keys or None in status:  # what cannot be written as bytes is built afresh
        return build()
    drugs = tuple((m.drug.value_set, m.drug.canonical, m.drug.by) for m in meds)
    return kept(ts, ("therapy", keys, drugs, status, metastatic_start, metastatic, today, tuple(metastases)), build)


def _derive_therapy(
    meds: list[MedRecord],
    status_obs: list[dict[str, Any]],
    metastatic_start: date | None,
    metastatic: bool,
    ts: Terminology,
    today: date,
    metastases: Sequence[Metastasis] = (),
) -> TherapyHistory:
    notes: list[str] = []
    records = [r for r in (read_record(m, ts) for m in meds) if r]
    progressions = []
    for o in status_obs:  # the status policy was applied at extraction
        hit = ts.match("progression", concept(o, "valueCodeableConcept"))
        when = effective_date(o)
        if hit and when:
            progressions.append((when, Evidence(ref_of(o), when, f"disease status: {hit.describe()}")))
    new_sites = new_metastases(list(metastases), metastatic_start)
    systemic = [r for r in records if r.drug_class not in ("tdxd",)]
    episodes = sorted(_episodes(systemic), key=lambda ep: ep[0].start or date.min)
    lines: list[Line] = []
    clusters: list[list[list[Record]]] = []
    for ep in episodes:
        start, first = ep[0].start, clusters[-1][0][0].start if clusters else None
        if start and first and (start - first).days <= COMBINATION.value:
            clusters[-1].append(ep)
        else:
            clusters.append([ep])
    previous_end: date | None = None
    built = [_line(cl) for cl in clusters]
    next_same_class = _next_same_class(built)
    # the events a line's outcome reads, sorted once: with every new site, and without the sites that start the
    # metastatic setting (those are not progression of a line that began after them)
    events_all = sorted(progressions + [(w, ev) for w, ev, _ in new_sites], key=lambda t: t[0])
    events_later = sorted(progressions + [(w, ev) for w, ev, initial in new_sites if not initial], key=lambda t: t[0])
    for i, (cl, line) in enumerate(zip(clusters, built, strict=True)):
        started_after = bool(line.start and metastatic_start and line.start >= metastatic_start)
        _outcome(line, cl, events_later if started_after else events_all, previous_end, next_same_class[i])
        previous_end = line.end or previous_end
        if metastatic and metastatic_start and line.start:
            if line.start >= latest_day(metastatic_start):
                line.setting = "metastatic"
            elif latest_day(line.start) < metastatic_start:
                line.setting = "early"
                _into_advanced(line, metastatic_start)
            else:  # a year- or month-only date that spans the other one
                line.notes.append(
                    f"setting unknown: started {fmt(line.start)}, metastatic since "
                    f"{fmt(metastatic_start)}; the dates are too coarse to tell which came first"
                )
        elif not metastatic and line.start:
            line.setting = "early"
        else:
            line.notes.append("setting unknown (start date or metastatic date missing)")
        lines.append(line)
    tdxd = [r for r in records if r.drug_class == "tdxd" and r.given]
    recent = today - timedelta(days=TDXD_ACTIVE.value)
    tdxd_active = any(r.ongoing or latest_day(r.end or r.start or date.min) >= recent for r in tdxd)
    her2 = [r for r in records if r.drug_class == "her2-directed-antibody"]
    adjuvant = None
    if metastatic_start:
        for ln in lines:
            if ln.is_chemo and ln.setting == "early" and ln.end:
                gap = (metastatic_start - ln.end).days
                if gap <= ADJUVANT_RECURRENCE.value:
                    drugs = " + ".join(ln.drugs)
                    text = (
                        f"recurrence {gap} days after completing early-stage chemotherapy ({drugs})"
                        if gap >= 0
                        else f"recurrence during early-stage chemotherapy ({drugs}, ended {ln.end.isoformat()})"
                    )
                    adjuvant = Evidence(ln.refs[0], ln.end, text)
    return TherapyHistory(lines, tdxd, tdxd_active, her2, adjuvant, notes)
