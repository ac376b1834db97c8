"""Hormone-receptor status (DESIGN §6.2): ER/PR positive at ≥1% staining; ER-low 1-10% noted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from cds_service.facts.evidence import Evidence
from cds_service.facts.thresholds import ER_LOW_MAX, RECEPTOR_POSITIVE
from cds_service.fhir.primitives import effective_date, ref_of
from cds_service.fhir.read import Bound, codings, components, concept, items, percent, string
from cds_service.fhir.terminology import Terminology

HrState = Literal["positive", "negative", "unknown"]


@dataclass
class ReceptorResult:
    receptor: str  # ER | PR
    positive: bool | None
    percent: float | None
    evidence: Evidence


@dataclass
class HrStatus:
    """HR-positive / HR-negative / unknown, with the ER and PR results it stands on."""

    status: HrState
    er: ReceptorResult | None
    pr: ReceptorResult | None
    notes: list[str] = field(default_factory=list)

    def evidence(self) -> list[Evidence]:
        return list(dict.fromkeys(r.evidence for r in (self.er, self.pr) if r))


_ANSWERS = ("result-positive", "result-negative")


def _words(obs: dict[str, Any], ts: Terminology) -> list[str]:
    """The words of the value that may be read: its text and the displays of codings that are no answer."""
    value_string = string(obs, "valueString")
    return ts.unmatched_texts(_ANSWERS, concept(obs, "valueCodeableConcept")) + ([value_string] if value_string else [])


def _percent(obs: dict[str, Any], ts: Terminology) -> Bound | None:
    """The percentage of stained nuclei and its comparator ("<1%" stays below 1), from the value or a
    component's value."""
    for holder in [obs, *components(obs)]:
        found = percent(holder)
        if found is not None:
            return found
    return percent({}, _words(obs, ts))


def positive_at(pct: float, cmp: str | None) -> bool | None:
    """≥1% is positive; a bound keeps its comparator ("<1%" negative, ">5%" positive); None when open."""
    cut = RECEPTOR_POSITIVE.value
    if cmp is None:
        return pct >= cut
    if cmp == "<":
        return False if pct <= cut else None
    if cmp == "<=":
        return False if pct < cut else None
    return True if pct >= cut else None  # ">", ">="


def read_receptor(obs: dict[str, Any], receptor: str, ts: Terminology) -> ReceptorResult | None:
    """A coded answer decides; a number decides when there is no coded answer; a number that
    contradicts the coded answer is said, never silently preferred."""
    value = concept(obs, "valueCodeableConcept")
    coded: bool | None = (
        True
        if ts.match_code("result-positive", value)
        else (False if ts.match_code("result-negative", value) else None)
    )
    bound = _percent(obs, ts)
    by_number = positive_at(bound.value, bound.cmp) if bound else None
    notes = []
    positive = coded
    if positive is None:
        positive = by_number
    elif by_number is not None and by_number != coded:
        notes.append(
            f"the percentage {_bound_text(bound)} disagrees with the coded "
            f"{'positive' if coded else 'negative'} result; the coded result is used"
        )
    if positive is None:
        text_value = {"text": " ".join(_words(obs, ts))}
        if ts.match("result-negative", text_value):
            positive = False
        elif ts.match("result-positive", text_value):
            positive = True
    if positive is None:
        for interp in items(obs, "interpretation"):
            codes = {string(c, "code") for c in codings(interp)}
            positive = True if codes & {"POS"} else False if codes & {"NEG"} else positive
    if positive is None:
        return None
    pct = bound.exact if bound else None
    shown = f" ({_bound_text(bound)})" if bound else ""
    label = f"{receptor} {'positive' if positive else 'negative'}{shown}" + "".join(f" [{n}]" for n in notes)
    return ReceptorResult(receptor, positive, pct, Evidence(ref_of(obs), effective_date(obs), label))


def _bound_text(bound: Bound | None) -> str:
    return bound.text("%") if bound else ""


def hr_status(
    er_obs: list[dict[str, Any]],
    pr_obs: list[dict[str, Any]],
    ts: Terminology,
    combined_obs: Sequence[dict[str, Any]] = (),
) -> HrStatus:
    """The latest readable ER and PR results decide; both needed to call HR-negative. One ER+PR result
    stands for both when neither is reported on its own."""
    notes: list[str] = []

    def latest(obs_list: list[dict[str, Any]], receptor: str) -> ReceptorResult | None:
        results = []
        for o in obs_list:  # the status policy was applied at extraction
            r = read_receptor(o, receptor, ts)
            if r is None:
                notes.append(f"{ref_of(o)}: {receptor} result could not be read")
            else:
                results.append(r)
        results.sort(key=lambda r: r.evidence.when or date.min)
        return results[-1] if results else None

    er, pr = latest(er_obs, "ER"), latest(pr_obs, "PR")
    both = latest(list(combined_obs), "ER+PR") if combined_obs and not (er or pr) else None
    if both is not None:
        er = pr = both
        notes.append("ER and PR reported as one result (ER+PR)")
    if er and er.percent is not None and RECEPTOR_POSITIVE.value <= er.percent <= ER_LOW_MAX.value:
        notes.append(f"ER-low ({er.percent:g}%): counted as HR-positive; endocrine sensitivity may be limited")
    status: HrState
    if (er and er.positive) or (pr and pr.positive):
        status = "positive"
    elif er and pr:
        status = "negative"
    else:
        status = "unknown"
        missing = [n for n, r in (("ER", er), ("PR", pr)) if r is None]
        notes.append(f"no readable {' or '.join(missing)} result: hormone-receptor status unknown")
    return HrStatus(status, er, pr, notes)
