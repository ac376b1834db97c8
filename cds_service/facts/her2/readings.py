"""Reading one HER2 Observation, whatever the encoding: coded answers first, then numbers, then words."""

from __future__ import annotations

from typing import Any

from cds_service.facts.her2.model import Partial
from cds_service.facts.her2.text import (
    ISH_WORD,
    STATED,
    ZERO_PLUS,
    ihc_score_from_text,
    ish_from_text,
    ish_in_ihc_text,
    membrane_from_text,
    membrane_pct_from_text,
    score_range_in_text,
)
from cds_service.fhir.primitives import effective_date, ref_of
from cds_service.fhir.read import concept, items, string, value_bound
from cds_service.fhir.terminology import HER2_SETS, Terminology, codings, note_texts, texts

LOCAL_CS = "http://her2-cds.org/fhir/CodeSystem/her2-ihc"

SCORE_SETS = {f"her2-ihc-score-{n}": n for n in range(4)}
_BINARY_SETS = (("result-equivocal", "equivocal"), ("result-negative", "negative"), ("result-positive", "positive"))
ANSWER_SETS = (*SCORE_SETS, *(vs for vs, _ in _BINARY_SETS), "ihc-membrane-staining-answer", "her2-stated-low")
# component codes, in the order a text-only component name is tried (a coded name always wins)
COMPONENT_SETS = ("ihc-membrane-percent", "ihc-membrane-staining", *HER2_SETS)
_MEMBRANE_CODES = {"membrane-staining-absent": "absent", "membrane-staining-faint-le-10": "faint-le-10"}


def _value_texts(holder: dict[str, Any], ts: Terminology) -> list[str]:
    """The words of value[x] that may be read: CodeableConcept text, displays of codings that matched no
    answer value set, valueString."""
    out = ts.unmatched_texts(ANSWER_SETS, concept(holder, "valueCodeableConcept"))
    found = string(holder, "valueString")
    return out + ([found] if found is not None else [])


def read_bound(holder: dict[str, Any], ts: Terminology) -> tuple[float, str | None] | None:
    """A number and its comparator from value[x] (integer, Quantity with comparator, Ratio, or words such as
    "less than 1.8" / "<1%"); None when there is none."""
    b = value_bound(holder, _value_texts(holder, ts))
    return (b.value, b.cmp) if b else None


def _number(holder: dict[str, Any], ts: Terminology) -> float | None:
    b = read_bound(holder, ts)
    return b[0] if b and b[1] is None else None


def _binary(ts: Terminology, holder: dict[str, Any], key: str = "valueCodeableConcept") -> str | None:
    """positive / negative / equivocal: by answer code first, then by the readable words."""
    value = holder.get(key)
    values = value if isinstance(value, list) else [value]
    for cc in values:
        hit = next((label for vs, label in _BINARY_SETS if ts.match_code(vs, cc)), None)
        if hit:
            return hit
    words = _value_texts(holder, ts) if key == "valueCodeableConcept" else [t for cc in values for t in texts(cc)]
    for t in words:
        hit = next((label for vs, label in _BINARY_SETS if ts.match(vs, {"text": t})), None)
        if hit:
            return hit
    return None


def _coded_score(holder: dict[str, Any], ts: Terminology) -> int | None:
    cc = concept(holder, "valueCodeableConcept")
    return next((n for vs, n in SCORE_SETS.items() if ts.match_code(vs, cc)), None)


def _read_ihc_value(p: Partial, holder: dict[str, Any], ts: Terminology) -> None:
    if ts.match_code("her2-stated-low", concept(holder, "valueCodeableConcept")):
        p.stated = "low"  # the category by code; a score in the same value (its text) is still read below
    coded = _coded_score(holder, ts)
    if coded is not None:
        p.ihc = coded
        p.binary = p.binary or _binary(ts, holder)
        return
    if "valueInteger" in holder or "valueQuantity" in holder:
        b = read_bound(holder, ts)
        if b is not None and b[1] is None and b[0] in (0, 1, 2, 3):
            p.ihc = int(b[0])
            return
    for t in _value_texts(holder, ts):
        if rng := score_range_in_text(t):  # never pick one end of "0-1+": unscored, re-scoring needed
            p.notes.append(
                f"{ref_of(p.resource)} gives the IHC score as a range ({rng[0]}-{rng[1]}+), not a single score"
            )
            p.binary, p.by_text = ("negative" if rng[1] <= 1 else p.binary or _binary(ts, holder)), True
            return
        score = ihc_score_from_text(t)
        if score is not None:
            p.ihc, p.by_text = score, True
            if score == 0 and p.membrane is None:
                p.membrane = membrane_from_text(t)
                p.membrane_pct = p.membrane_pct if p.membrane else membrane_pct_from_text(t)
                if p.membrane is None and p.membrane_pct is None and ZERO_PLUS.search(t):
                    p.membrane = "notation"  # the 2026 consensus term for ultralow: never asserted
            p.ish = p.ish or ish_in_ihc_text(t)
            return
    for t in _value_texts(holder, ts):
        for regex, cat in STATED:
            if regex.search(t.lower()):
                p.stated, p.by_text = cat, True
                return
        if ISH_WORD.search(t.lower()) and (call := ish_from_text(t)):
            p.ish, p.by_text = call, True
    if p.binary is None:
        p.binary = _binary(ts, holder)
        if p.binary and not any(ts.match_code(vs, concept(holder, "valueCodeableConcept")) for vs, _ in _BINARY_SETS):
            p.by_text = True


def _read_ish_value(p: Partial, holder: dict[str, Any], ts: Terminology) -> None:
    for c in codings(concept(holder, "valueCodeableConcept")):
        if string(c, "system") == LOCAL_CS and string(c, "code") in ("ish-amplified", "ish-not-amplified"):
            p.ish = c["code"].removeprefix("ish-")
            return
    b = _binary(ts, holder)
    if b and ts.match_code(
        {"positive": "result-positive", "negative": "result-negative", "equivocal": "result-equivocal"}[b],
        concept(holder, "valueCodeableConcept"),
    ):
        p.ish = {"positive": "amplified", "negative": "not-amplified", "equivocal": "equivocal"}[b]
        return
    for t in _value_texts(holder, ts):
        found = ish_from_text(t)
        if found:
            p.ish, p.by_text = found, True
            return
    bound = read_bound(holder, ts)
    if bound is not None:  # "less than 1.8", "greater than 2.2": a HER2/CEP17 ratio (Synthea)
        p.ratio, p.ratio_cmp = bound
        p.notes.append(f"{ref_of(p.resource)} gives ISH as a ratio only ({_bound_text(bound)})")
        return
    if b:
        p.ish, p.by_text = {"positive": "amplified", "negative": "not-amplified", "equivocal": "equivocal"}[b], True


def _bound_text(bound: tuple[float, str | None]) -> str:
    return f"{bound[1] or ''}{bound[0]:g}"


def _membrane_answer(comp: dict[str, Any], ts: Terminology) -> str | None:
    for c in codings(concept(comp, "valueCodeableConcept")):
        if string(c, "system") == LOCAL_CS and string(c, "code") in _MEMBRANE_CODES:
            return _MEMBRANE_CODES[c["code"]]
    return next((m for t in _value_texts(comp, ts) if (m := membrane_from_text(t))), None)


def read_observation(obs: dict[str, Any], kind: str, ts: Terminology) -> Partial:
    """Everything one HER2 Observation says, whatever the encoding."""
    p = Partial(resource=obs, when=effective_date(obs), by_text=bool(obs.get("_from_text")))
    _read_slot(p, obs, kind, ts)
    for comp in items(obs, "component"):
        if not isinstance(comp, dict):
            continue
        hit = ts.match_any(COMPONENT_SETS, concept(comp, "code"))
        if hit is not None:
            _read_slot(p, comp, hit.value_set, ts)
    if p.ihc == 0 and p.membrane is None and p.membrane_pct is None:
        for t in texts(concept(obs, "valueCodeableConcept")) + note_texts(obs):
            if membrane_from_text(t):
                p.membrane, p.by_text = membrane_from_text(t), True
                break
            if (pct := membrane_pct_from_text(t)) is not None:
                p.membrane_pct, p.by_text = pct, True
                break
    if p.ihc is None and p.binary is None and p.stated is None and not p.has_ish:
        p.binary = _interpretation(obs, ts, {"POS", "H"}, {"NEG", "N"})
    elif p.ish is None and p.has_ish and kind in ISH_KINDS:  # numbers with the pathologist's call beside them
        call = _interpretation(obs, ts, {"POS"}, {"NEG"})
        p.ish = {"positive": "amplified", "negative": "not-amplified", "equivocal": "equivocal"}.get(call or "")
    return p


ISH_KINDS = ("her2-ish", "her2-ish-ratio", "her2-ish-copy-number", "her2-cep17-copy-number")


def _interpretation(obs: dict[str, Any], ts: Terminology, positive: set[str], negative: set[str]) -> str | None:
    """positive / negative / equivocal from Observation.interpretation: a result answer code, or the v3
    interpretation codes given (a ratio's "H" or "N" says nothing about amplification)."""
    found = _binary(ts, obs, "interpretation") if obs.get("interpretation") else None
    for interp in items(obs, "interpretation"):
        code = {string(c, "code") for c in codings(interp)}
        if code & positive:
            found = "positive"
        elif code & negative:
            found = "negative"
    return found


def _read_slot(p: Partial, holder: dict[str, Any], kind: str, ts: Terminology) -> None:
    """Read one Observation or component as the value set its code belongs to says."""
    if kind == "her2-ish-ratio":
        b = read_bound(holder, ts)
        if b:
            p.ratio, p.ratio_cmp = b
    elif kind == "her2-ish-copy-number":
        p.copy_number = _number(holder, ts)
    elif kind == "her2-cep17-copy-number":
        p.cep17 = _number(holder, ts)
    elif kind == "her2-ish":
        _read_ish_value(p, holder, ts)
    elif kind == "ihc-membrane-percent":
        b = read_bound(holder, ts)
        if b:
            p.membrane_pct, p.membrane_pct_cmp = b
    elif kind == "ihc-membrane-staining":
        p.membrane = _membrane_answer(holder, ts) or p.membrane
    elif any(k in holder for k in ("valueCodeableConcept", "valueString", "valueInteger", "valueQuantity")):
        _read_ihc_value(p, holder, ts)
        if p.ihc is None and kind == "her2-interpretation" and p.binary is None:
            p.binary = _binary(ts, holder)
