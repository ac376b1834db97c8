"""ild-monitoring: when T-DXd is drafted or active — monitoring, risk factors, label ILD rules, dose check."""

from __future__ import annotations

import copy
from typing import Any

from cds_service.facts.derive import Facts
from cds_service.facts.evidence import Evidence
from cds_service.facts.orders import MG_PER_KG, DraftOrder
from cds_service.facts.thresholds import TDXD_BREAST_DOSE
from cds_service.fhir.primitives import fmt
from cds_service.fhir.validation import validated
from cds_service.rules.context import tdxd_order, unavailable_lines
from cds_service.rules.decision import CardDecision, Suggestion

TOPIC = "ild-monitoring"
BREAST_DOSE = TDXD_BREAST_DOSE.value
CT_CHEST = {"system": "http://snomed.info/sct", "code": "169069000", "display": "CT of chest"}
PULSE_OX = {"system": "http://snomed.info/sct", "code": "252465000", "display": "Pulse oximetry"}


def _request(patient_id: str, code: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [code], "text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": "Baseline before trastuzumab deruxtecan (ILD/pneumonitis monitoring)"}],
    }


def corrected_dose(order: DraftOrder) -> dict[str, Any] | None:
    """The drafted T-DXd order at 5.4 mg/kg (an update action), or None when it cannot be written safely."""
    res = order.resource
    if not isinstance(res, dict) or not isinstance(res.get("id"), str):
        return None
    fixed = copy.deepcopy(res)
    dosage = [d for d in fixed.get("dosageInstruction") or [] if isinstance(d, dict)]
    quantities = [
        dr["doseQuantity"]
        for d in dosage
        for dr in d.get("doseAndRate") or []
        if isinstance(dr, dict) and isinstance(dr.get("doseQuantity"), dict)
    ]
    if len(quantities) != 1:
        return None  # no structured dose, or several: say it, do not rewrite the order
    quantities[0].update(value=BREAST_DOSE, unit="mg/kg", system="http://unitsofmeasure.org", code="mg/kg")
    for d in dosage:
        if isinstance(d.get("text"), str):
            d["text"] = MG_PER_KG.sub(f"{BREAST_DOSE:g} mg/kg", d["text"])
    problems: list[str] = []
    return fixed if validated(fixed, problems) is not None and not problems else None


def why_silent(facts: Facts, hook: str) -> str | None:
    """Why this rule says nothing (None: it has a card)."""
    if tdxd_order(facts, hook) is None and not (hook == "patient-view" and facts.therapy.tdxd_active):
        return "no T-DXd on record as active" if hook == "patient-view" else "the order is not T-DXd"
    return None


def decide(facts: Facts, hook: str, cfg: dict[str, Any], patient_id: str) -> CardDecision | None:
    if not cfg["enabled"] or why_silent(facts, hook) is not None:
        return None
    order = tdxd_order(facts, hook)
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
    exposure = (
        [
            f"T-DXd given: {', '.join(fmt(r.start) for r in given[:6])}{' …' if len(given) > 6 else ''} ("
            + "; ".join(r.ref for r in given[:6])
            + ")"
        ]
        if given
        else []
    )
    evidence = [f"risk factor: {e.line()}" for e in factors] + exposure
    rules_line = (
        "Label ILD rules: asymptomatic (grade 1) ILD — interrupt until resolved, then resume per label; "
        "symptomatic (grade ≥2) ILD — discontinue permanently and start corticosteroids."
    )
    if risk.tdxd_ild_grade2plus:  # the label's answer is to stop: no baseline work-up, offer to remove the order
        evidence = (
            [
                "prior T-DXd-associated ILD/pneumonitis grade ≥2: "
                + "; ".join(e.line() for e in risk.tdxd_ild_grade2plus)
            ]
            + [f"risk factor: {e.line()}" for e in factors if e not in risk.tdxd_ild_grade2plus]
            + exposure
        )
        suggestions = [Suggestion("Remove the drafted T-DXd order", [], deletes=[order.ref])] if order else []
        return CardDecision(
            topic=TOPIC,
            indicator="critical",
            summary="Prior grade ≥2 ILD/pneumonitis on T-DXd: label says discontinue T-DXd permanently",
            evidence=evidence,
            unknowns=unknowns + unavailable_lines(facts),
            advice=[
                "Stop T-DXd: after grade ≥2 (symptomatic) ILD/pneumonitis the label requires permanent "
                "discontinuation; do not re-challenge.",
                rules_line,
            ],
            suggestions=suggestions,
            selection="at-most-one",
            links=["label"],
            overrides=["already-addressed", "ild-risk-accepted", "data-incorrect"],
        )
    indicator, summary = "info", "T-DXd: baseline chest CT and SpO2; teach to report cough, dyspnoea or fever"
    dose_line = None
    fixed = None
    if order is not None:
        if order.dose_mg_per_kg is None:
            unknowns.append(f"drafted dose not readable as mg/kg ({order.dose_text or 'no dose'})")
        elif abs(order.dose_mg_per_kg - BREAST_DOSE) > 0.05:
            dose_line = (
                f"Drafted dose {order.dose_mg_per_kg:g} mg/kg is not the breast-cancer dose of 5.4 mg/kg "
                "(6.4 mg/kg is the gastric dose)."
            )
            fixed = corrected_dose(order)
    if factors:
        indicator = "warning"
        summary = f"T-DXd with ILD risk factors ({len(factors)}): baseline chest CT, SpO2, close monitoring"
    if dose_line and order is not None:
        indicator = "warning"
        summary = f"T-DXd dose {order.dose_mg_per_kg:g} mg/kg: breast-cancer dose is 5.4 mg/kg; plus ILD monitoring"
    why = (
        f"Why: T-DXd is {'being ordered' if order is not None else 'active for this patient'}; its label has a "
        "boxed warning for interstitial lung disease/pneumonitis"
        + (f", and {len(factors)} risk factor(s) are on record." if factors else ".")
    )
    advice = ([dose_line] if dose_line else []) + [
        why,
        "Before starting: baseline chest imaging (CT) and pulse oximetry.",
        "Teach the patient to report new or worsening cough, dyspnoea or fever at once; evaluate symptoms promptly.",
        rules_line,
    ]
    suggestions = []
    if fixed is not None:
        suggestions.append(Suggestion("Change the T-DXd dose to 5.4 mg/kg (breast cancer)", [], updates=[fixed]))
    if order is not None:
        suggestions += [
            Suggestion("Order baseline CT chest", [_request(patient_id, CT_CHEST, "CT chest (baseline before T-DXd)")]),
            Suggestion("Order pulse oximetry", [_request(patient_id, PULSE_OX, "Pulse oximetry (baseline SpO2)")]),
        ]
    return CardDecision(
        topic=TOPIC,
        indicator=indicator,
        summary=summary,
        evidence=evidence
        or [
            "no ILD risk factor recorded (prior ILD/pneumonitis, thoracic radiotherapy, lung metastases, "
            "reduced renal function)"
        ],
        unknowns=unknowns + unavailable_lines(facts),
        advice=advice,
        suggestions=suggestions,
        selection="any",
        links=["label"],
        overrides=["already-addressed", "ild-risk-accepted", "data-incorrect"],
    )
