"""ild-monitoring: for every T-DXd order or active T-DXd, whatever the HER2 category, setting or tumour (DESIGN §6.5).

First dose: baseline work-up. Continuing therapy: a card only when something needs doing (ILD/pneumonitis or
respiratory symptoms since the first dose, a dose problem, chest imaging overdue). Prior T-DXd-associated ILD of
grade ≥2: critical, stop. The label's ILD table is quoted in full."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from cds_service.facts.derive import Facts, tdxd_exposure
from cds_service.facts.evidence import Evidence
from cds_service.facts.ild_risk import IldEvent
from cds_service.facts.label import ILD_RESOLVED_WITHIN_DAYS, LABEL_SHORT, ild_table_lines
from cds_service.facts.request import RequestContext
from cds_service.fhir.primitives import fmt
from cds_service.rules.decision import CardDecision, Suggestion
from cds_service.rules.dose import DoseCheck, check_dose, dose_update

TOPIC = "ild-monitoring"
CT_CHEST = {"system": "http://snomed.info/sct", "code": "169069000", "display": "CT of chest"}
PULSE_OX = {"system": "http://snomed.info/sct", "code": "252465000", "display": "Pulse oximetry"}
OVERRIDES = ["already-addressed", "ild-risk-accepted", "data-incorrect"]


def _request(patient_id: str, code: dict[str, Any], text: str, reason: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [code], "text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": reason}],
    }


def imaging_overdue(facts: Facts, first: date, weeks: int) -> str | None:
    """No chest imaging for longer than the site's interval (counted from the first dose when none is recorded)."""
    dated = [e for e in facts.chest_imaging if e.when]
    last = max(dated, key=lambda e: e.when or date.min) if dated else None
    since = last.when if last and last.when else first
    days = (facts.today - since).days
    if days <= weeks * 7:
        return None
    what = (
        f"last chest imaging {fmt(since)} ({last.ref})"
        if last
        else f"no chest imaging since the first dose ({fmt(first)})"
    )
    return f"{what}: {days} days ago, longer than this site's interval of {weeks} weeks ({weeks * 7} days)"


def _no_tdxd(facts: Facts, request: RequestContext) -> str | None:
    """Why there is no T-DXd to stand beside (None: there is)."""
    if request.tdxd_order() is None and not (request.hook == "patient-view" and facts.therapy.tdxd_active):
        return "no T-DXd on record as active" if request.hook == "patient-view" else "the order is not T-DXd"
    return None


def why_silent(facts: Facts, request: RequestContext, cfg: Mapping[str, Any]) -> str | None:
    """Why this rule says nothing (None: it has a card)."""
    if (no_tdxd := _no_tdxd(facts, request)) is not None:
        return no_tdxd
    if decide(facts, request, cfg) is None:
        return "continuing T-DXd: no ILD event or symptom since the first dose, dose as allowed, chest imaging current"
    return None


def _event_line(e: IldEvent) -> str:
    grade = f"grade {e.grade}" if e.grade else "grade not recorded"
    if e.resolved:
        state = f"resolved {fmt(e.resolved)} ({e.days_to_resolution} days after onset)"
    elif e.resolved_undated:
        state = "recorded as resolved, date not recorded"
    else:
        state = "not recorded as resolved"
    return f"ILD/pneumonitis since the first T-DXd dose, {grade}, onset {fmt(e.onset)}, {state}: {e.evidence.line()}"


def _event_advice(e: IldEvent) -> str:
    """What the label says for this event."""
    if e.grade is None:
        return (
            "Grade the ILD/pneumonitis: grade 1 — interrupt until resolved to grade 0; grade ≥2 — discontinue "
            "permanently and start systemic corticosteroids."
        )
    if e.grade >= 2:
        return "Grade ≥2: discontinue T-DXd permanently and promptly start systemic corticosteroids."
    if e.resolved is None and not e.resolved_undated:
        return (
            "Grade 1, not recorded as resolved: interrupt T-DXd until resolved to grade 0; consider corticosteroids "
            "(≥0.5 mg/kg/day prednisolone or equivalent)."
        )
    days = e.days_to_resolution
    if days is None:
        return (
            "Grade 1, resolution date not recorded: the dose to resume depends on it "
            f"({ILD_RESOLVED_WITHIN_DAYS} days from onset)."
        )
    if days <= ILD_RESOLVED_WITHIN_DAYS:
        return f"Grade 1 resolved in {days} days (≤{ILD_RESOLVED_WITHIN_DAYS}): the label maintains the dose."
    return f"Grade 1 resolved in {days} days (>{ILD_RESOLVED_WITHIN_DAYS}): the label reduces the dose one level."


def _dose_parts(dose: DoseCheck | None, order: Any, unknowns: list[str]) -> tuple[list[str], list[Suggestion]]:
    if dose is None:
        return [], []
    if dose.unknown:
        unknowns.append(dose.unknown)
    advice = [dose.problem] if dose.problem else []
    if dose.note:
        unknowns.append(dose.note)
    suggestions = []
    if dose.problem and dose.suggest is not None and (fixed := dose_update(order, dose.suggest)) is not None:
        suggestions.append(Suggestion(f"Change the T-DXd dose to {dose.suggest:g} mg/kg", [], updates=[fixed]))
    return advice, suggestions


def decide(facts: Facts, request: RequestContext, cfg: Mapping[str, Any]) -> CardDecision | None:
    """The card of this topic for this chart and request (None: silent; why_silent says why)."""
    if _no_tdxd(facts, request) is not None:
        return None
    order = request.tdxd_order()
    risk = facts.ild
    factors = list(risk.factors)
    unknowns = list(risk.notes)
    threshold = float(cfg["egfr_below"])
    if risk.egfr is not None:
        below = risk.egfr.below(threshold)
        ev = risk.egfr.evidence
        if below:
            factors.append(Evidence(ev.ref, ev.when, f"reduced renal function: {ev.text} (under {threshold:g})"))
        elif below is None:
            unknowns.append(f"{ev.line()}: cannot tell whether renal function is under {threshold:g}")
    given = facts.therapy.tdxd
    exposure = tdxd_exposure(facts.therapy)
    first = exposure.first if exposure else None
    exposure_lines = (
        [
            f"T-DXd given: {', '.join(fmt(r.start) for r in given[:6])}{' …' if len(given) > 6 else ''} ("
            + "; ".join(r.ref for r in given[:6])
            + ")"
        ]
        if given
        else []
    )
    table = ild_table_lines()
    if risk.tdxd_ild_grade2plus:  # the label's answer is to stop: no baseline work-up, offer to remove the order
        evidence = (
            [
                "prior T-DXd-associated ILD/pneumonitis grade ≥2: "
                + "; ".join(e.line() for e in risk.tdxd_ild_grade2plus)
            ]
            + [f"risk factor: {e.line()}" for e in factors if e not in risk.tdxd_ild_grade2plus]
            + exposure_lines
        )
        suggestions = [Suggestion("Remove the drafted T-DXd order", [], deletes=[order.ref])] if order else []
        return CardDecision(
            topic=TOPIC,
            reason="discontinue",
            indicator="critical",
            summary="Prior grade ≥2 ILD/pneumonitis on T-DXd: label says discontinue T-DXd permanently",
            evidence=evidence,
            unknowns=unknowns + request.not_available(facts.data_notes),
            advice=[
                "Stop T-DXd: after grade ≥2 (symptomatic) ILD/pneumonitis the label requires permanent "
                "discontinuation; do not re-challenge.",
                *table,
            ],
            suggestions=suggestions,
            selection="at-most-one",
            links=["label"],
            overrides=OVERRIDES,
        )
    dose = check_dose(facts, order, request.draft_refs) if order is not None else None
    dose_advice, dose_suggestions = _dose_parts(dose, order, unknowns)
    risk_lines = [f"risk factor: {e.line()}" for e in factors]
    if first is None:
        return _first_dose(facts, order, request, factors, risk_lines, dose, dose_advice, dose_suggestions, unknowns)
    # continuing therapy: a card only when something needs doing (events and symptoms since the first dose)
    events = [e for e in facts.ild.events if e.onset and e.onset >= first]
    symptoms = [e for e in facts.respiratory if e.when and e.when >= first]
    overdue = imaging_overdue(facts, first, int(cfg["imaging_interval_weeks"]))
    problem = dose is not None and dose.problem is not None
    if not (events or symptoms or overdue or problem):
        return None
    evidence = [_event_line(e) for e in events]
    evidence += [f"respiratory symptom since the first T-DXd dose: {e.line()}" for e in symptoms]
    if overdue:
        evidence.append(f"chest imaging overdue: {overdue}")
    evidence += risk_lines + exposure_lines
    advice = list(dose_advice) + [_event_advice(e) for e in events]
    if symptoms:
        advice.append(
            "New respiratory symptoms on T-DXd: evaluate promptly for ILD/pneumonitis (chest CT, SpO2); if ILD is "
            "suspected, interrupt T-DXd and follow the label's ILD table."
        )
    if overdue:
        advice.append("Chest imaging is overdue by this site's interval (the label sets none): consider a chest CT.")
    advice += table
    suggestions = list(dose_suggestions)
    if symptoms or overdue or any(e.resolved is None and not e.resolved_undated for e in events):
        suggestions.append(
            Suggestion(
                "Order CT chest",
                [
                    _request(
                        request.patient_id,
                        CT_CHEST,
                        "CT chest (ILD surveillance on T-DXd)",
                        "ILD/pneumonitis surveillance on trastuzumab deruxtecan",
                    )
                ],
            )
        )
    if events:
        worst = max((e.grade or 0) for e in events)
        reason, summary = (
            "ild-event",
            (
                f"ILD/pneumonitis since starting T-DXd ({'grade not recorded' if worst == 0 else f'grade {worst}'}): "
                "follow the label's ILD rules"
            ),
        )
    elif problem and order is not None and dose is not None:
        reason, summary = "dose", f"T-DXd dose {dose.dose:g} mg/kg: not allowed by the label here (see dose)"
    elif symptoms:
        reason, summary = "symptoms", "New respiratory symptoms on T-DXd: evaluate promptly for ILD/pneumonitis"
    else:
        reason, summary = "imaging-overdue", "T-DXd: chest imaging overdue for ILD surveillance"
    indicator = "warning" if events or symptoms or problem or factors else "info"
    return _card(
        request.not_available(facts.data_notes), indicator, summary, evidence, unknowns, advice, suggestions, reason
    )


def _card(
    not_available: list[str],
    indicator: str,
    summary: str,
    evidence: list[str],
    unknowns: list[str],
    advice: list[str],
    suggestions: list[Suggestion],
    reason: str,
) -> CardDecision:
    return CardDecision(
        topic=TOPIC,
        reason=reason,
        indicator=indicator,
        summary=summary,
        evidence=evidence,
        unknowns=unknowns + not_available,
        advice=advice,
        suggestions=suggestions,
        selection="any",
        links=["label"],
        overrides=OVERRIDES,
    )


def _first_dose(
    facts: Facts,
    order: Any,
    request: RequestContext,
    factors: list[Evidence],
    risk_lines: list[str],
    dose: DoseCheck | None,
    dose_advice: list[str],
    dose_suggestions: list[Suggestion],
    unknowns: list[str],
) -> CardDecision:
    """Before the first dose: baseline chest imaging and pulse oximetry, teaching, the label's ILD table."""
    indicator, summary = (
        "info",
        "T-DXd first dose: baseline chest CT and SpO2; teach to report cough, dyspnoea or fever",
    )
    if factors:
        indicator = "warning"
        summary = f"T-DXd with ILD risk factors ({len(factors)}): baseline chest CT, SpO2, close monitoring"
    if dose is not None and dose.problem and dose.dose is not None:
        indicator = "warning"
        summary = f"T-DXd dose {dose.dose:g} mg/kg is not a breast-cancer dose level; plus ILD monitoring"
    why = (
        f"Why: T-DXd is {'being ordered' if order is not None else 'active for this patient'}, with no earlier dose on "
        f"record; the {LABEL_SHORT} has a boxed warning for interstitial lung disease/pneumonitis"
        + (f", and {len(factors)} risk factor(s) are on record." if factors else ".")
    )
    advice = [
        *dose_advice,
        why,
        "Before the first dose: baseline chest imaging (CT) and pulse oximetry.",
        "Teach the patient to report new or worsening cough, dyspnoea or fever at once; evaluate symptoms promptly.",
        *ild_table_lines(),
    ]
    suggestions = list(dose_suggestions)
    if order is not None:
        reason = "Baseline before trastuzumab deruxtecan (ILD/pneumonitis monitoring)"
        suggestions += [
            Suggestion(
                "Order baseline CT chest",
                [_request(request.patient_id, CT_CHEST, "CT chest (baseline before T-DXd)", reason)],
            ),
            Suggestion(
                "Order pulse oximetry",
                [_request(request.patient_id, PULSE_OX, "Pulse oximetry (baseline SpO2)", reason)],
            ),
        ]
    evidence = risk_lines or [
        "no ILD risk factor recorded (prior ILD/pneumonitis, thoracic radiotherapy, lung metastases, "
        "reduced renal function)"
    ]
    return _card(
        request.not_available(facts.data_notes), indicator, summary, evidence, unknowns, advice, suggestions, "baseline"
    )
