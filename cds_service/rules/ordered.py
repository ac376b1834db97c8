"""The drug being ordered, set against the patient's history: a card names it with what the record says of it
("not given before", or each earlier line with it and how that line ended)."""

from __future__ import annotations

from cds_service.facts.derive import Facts
from cds_service.facts.orders import DraftOrder
from cds_service.fhir.primitives import fmt

ENDED = {
    "progressed": "progressed",
    "stopped-toxicity": "stopped for toxicity",
    "ongoing": "ongoing",
    "ended-reason-unknown": "ended, reason not recorded",
}


def order_line(facts: Facts, order: DraftOrder) -> str | None:
    """'order in progress: capecitabine — not given before', '... — given before: 2023-08-01 to 2024-02-01
    (metastatic setting), progressed' or '... — taking it now: since 2024-05-01 (metastatic setting)'. None when the
    order names no drug this service knows."""
    if order.drug is None:
        return None
    name = order.drug.canonical
    given = [ln for ln in facts.therapy.lines if name.casefold() in (d.casefold() for d in ln.drugs)]
    if not given:
        return f"order in progress: {name} — not given before (in the record this service read)"
    spans = [
        f"taking it now: since {fmt(ln.start)} ({ln.setting} setting)"
        if ln.ongoing
        else f"given before: {fmt(ln.start)} to {fmt(ln.end) if ln.end else 'end unknown'} "
        f"({ln.setting} setting), {ENDED[ln.outcome]}"
        for ln in given
    ]
    return f"order in progress: {name} — " + "; ".join(spans)
