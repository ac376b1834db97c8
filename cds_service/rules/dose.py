"""The T-DXd dose check (DESIGN §6.4-6.5): a drafted dose against the label's breast-cancer levels and the doses on
record. Never suggests a dose the label forbids: no re-escalation after a reduction, nothing below the lowest
level (the label says discontinue), no check for a patient with another T-DXd indication."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from cds_service.facts.derive import Facts
from cds_service.facts.ild_risk import IldEvent
from cds_service.facts.label import (
    DOSE_LEVELS,
    GASTRIC_DOSE,
    ILD_RESOLVED_WITHIN_DAYS,
    LOWEST_LEVEL,
    STARTING_DOSE,
    below,
    level_of,
    one_level_below,
    within,
)
from cds_service.facts.orders import MG, MG_PER_KG, DraftOrder
from cds_service.fhir.primitives import fmt
from cds_service.fhir.read import dose_quantities, items, string
from cds_service.fhir.validation import validated

LEVELS_TEXT = " / ".join(f"{lv.mg_per_kg:g}" for lv in DOSE_LEVELS) + " mg/kg"


@dataclass(frozen=True)
class DoseCheck:
    """What the dose check found: a problem (warning), an unknown, or a note; and the level to suggest, if any."""

    problem: str | None = None
    unknown: str | None = None
    note: str | None = None
    suggest: float | None = None
    dose: float | None = None


def drafted_mg_per_kg(facts: Facts, order: DraftOrder) -> tuple[float | None, str | None]:
    """The drafted dose in mg/kg (a flat dose converted with the latest weight), or None and why not."""
    if order.dose_mg_per_kg is not None:
        return order.dose_mg_per_kg, None
    if order.dose_mg is not None:
        weight = facts.doses.weight_on(None)
        if weight is None:
            return None, f"drafted flat dose {order.dose_mg:g} mg: no body weight on record, not checkable in mg/kg"
        return round(order.dose_mg / weight.kg, 2), None
    return None, f"drafted dose not readable as mg/kg ({order.dose_text or 'no dose'})"


def ceiling(facts: Facts, drafted: frozenset[str] = frozenset()) -> tuple[float | None, str | None]:
    """The highest level the label allows now (None: the starting dose), and why: the lowest level given since a
    reduction; or one level below the dose before a grade 1 ILD that took more than 28 days to resolve. The doses
    on record are those given, not the drafted orders (refs in drafted) the chart may hold too."""
    history = facts.doses.without(drafted)
    lowest = history.lowest_since_reduction
    why = None
    if lowest is not None:
        first = history.reduced[0]
        why = f"dose reduced to {lowest:g} mg/kg on record (first reduction {first.ref}, {fmt(first.when)})"
    for event in late_resolved_grade1(facts):
        before = [
            d.mg_per_kg for d in history.doses if d.mg_per_kg and d.when and event.onset and d.when <= event.onset
        ]
        required = one_level_below(before[-1]) if before else None
        if required is not None and (lowest is None or below(required, lowest)):
            lowest = required
            why = (
                f"grade 1 ILD/pneumonitis ({event.evidence.ref}) resolved {event.days_to_resolution} days after onset: "
                f"the label reduces the dose one level, from {before[-1]:g} to {required:g} mg/kg"
            )
    return lowest, why


def late_resolved_grade1(facts: Facts) -> list[IldEvent]:
    """T-DXd-associated grade 1 events resolved more than 28 days after onset (the label: reduce one level)."""
    return [
        e
        for e in facts.ild.events
        if e.tdxd_associated
        and e.grade == 1
        and (days := e.days_to_resolution) is not None
        and days > ILD_RESOLVED_WITHIN_DAYS
    ]


def check_dose(facts: Facts, order: DraftOrder, drafted: frozenset[str] = frozenset()) -> DoseCheck:
    """The drafted T-DXd dose against the label's breast-cancer levels and the doses on record (but the drafted
    orders, refs in drafted)."""
    if facts.setting.other_primary:
        others = "; ".join(e.text for e in facts.setting.other_primary)
        return DoseCheck(
            note=f"dose not checked against the breast-cancer levels ({others}): "
            f"T-DXd has other doses there ({GASTRIC_DOSE:g} mg/kg in gastric cancer)"
        )
    dose, why_not = drafted_mg_per_kg(facts, order)
    if dose is None:
        return DoseCheck(unknown=why_not)
    note = None if facts.setting.in_scope else "no cancer diagnosis on record: checked against the breast-cancer levels"
    top, why = ceiling(facts, drafted)
    if below(dose, LOWEST_LEVEL):
        return DoseCheck(
            problem=f"Drafted dose {dose:g} mg/kg is below the lowest label level ({LOWEST_LEVEL:g} mg/kg): if a "
            "further dose reduction is needed, the label says discontinue T-DXd.",
            note=note,
            dose=dose,
        )
    level = level_of(dose)
    if level is None:
        gastric = f" ({GASTRIC_DOSE:g} mg/kg is the gastric cancer dose)" if within(dose, GASTRIC_DOSE) else ""
        suggest = STARTING_DOSE if top is None else top
        return DoseCheck(
            problem=f"Drafted dose {dose:g} mg/kg is not a breast-cancer dose level ({LEVELS_TEXT}){gastric}"
            + (f"; {why}: the label says do not re-escalate." if why else "."),
            note=note,
            suggest=suggest,
            dose=dose,
        )
    if top is not None and below(top, dose):
        return DoseCheck(
            problem=f"Drafted dose {dose:g} mg/kg is a re-escalation: {why}. The label says do not re-escalate "
            "after a dose reduction.",
            note=note,
            suggest=top,
            dose=dose,
        )
    said = f"drafted dose {dose:g} mg/kg: label level ({level.name})" if level.mg_per_kg != STARTING_DOSE else None
    return DoseCheck(note="; ".join(x for x in (said, note) if x) or None, dose=dose)


def dose_update(order: DraftOrder, level: float) -> dict[str, Any] | None:
    """The drafted T-DXd order at `level` mg/kg (an update action), or None when it cannot be written safely."""
    res = order.resource
    if not isinstance(res, dict) or string(res, "id") is None:
        return None
    fixed = copy.deepcopy(res)
    quantities = dose_quantities(fixed)
    if len(quantities) != 1:
        return None  # no structured dose, or several: say it, do not rewrite the order
    quantities[0].clear()
    quantities[0].update(value=level, unit="mg/kg", system="http://unitsofmeasure.org", code="mg/kg")
    for d in items(fixed, "dosageInstruction"):  # the words say the same dose as the quantity ("324 mg" too)
        if (text := string(d, "text")) is not None:
            d["text"] = MG.sub(f"{level:g} mg/kg", MG_PER_KG.sub(f"{level:g} mg/kg", text))
    problems: list[str] = []
    return fixed if validated(fixed, problems) is not None and not problems else None
