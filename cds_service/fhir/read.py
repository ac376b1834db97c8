"""The reading layer: how the facts read raw FHIR JSON, whatever a sender put where.

Every accessor takes what a record holds (a resource, a component, a CodeableConcept), never fails on a
wrong shape (a string where an object belongs, a list where one value belongs), and returns plain values:
a number with its comparator and unit (`Bound`), codings, words, dates. Facts read records through these
accessors only, so that a new encoding is taught here once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any, NamedTuple

from cds_service.fhir.primitives import effective_date, parse_date

__all__ = [
    "Bound",
    "bound_in_text",
    "codings",
    "components",
    "concept",
    "dose_quantities",
    "draft_resources",
    "names_medication",
    "effective_date",
    "items",
    "number",
    "obj",
    "parse_date",
    "percent",
    "period",
    "quantity",
    "ratio",
    "reference",
    "string",
    "texts",
    "value_bound",
    "value_words",
]

_CMP = {
    "less than or equal to": "<=",
    "greater than or equal to": ">=",
    "less than": "<",
    "greater than": ">",
    "more than": ">",
    "below": "<",
    "under": "<",
    "above": ">",
    "over": ">",
    "up to": "<=",
    "at least": ">=",
    "≤": "<=",
    "≥": ">=",
    "=<": "<=",
    "=>": ">=",
    "<=": "<=",
    ">=": ">=",
    "<": "<",
    ">": ">",
}
_CMP_WORDS = "|".join(re.escape(k) for k in sorted(_CMP, key=len, reverse=True))
# a number with a decimal comma or a thousands separator ("1,8", "1,000") is neither read as 1 nor as 8
_NUMBER_IN_TEXT = re.compile(rf"(?<![\w.,])(?:({_CMP_WORDS})\s*)?(\d+(?:\.\d+)?)(?!\.?\d)(?!,\d)\s*(%)?", re.IGNORECASE)
_PERCENT_UNITS = ("%", "percent", "/100")


class Bound(NamedTuple):
    """A number as a record states it: its comparator ("<", "<=", ">", ">=" or None for an exact value) and
    unit (None when not stated)."""

    value: float
    cmp: str | None = None
    unit: str | None = None

    @property
    def exact(self) -> float | None:
        """The value when it is exact (no comparator)."""
        return self.value if self.cmp is None else None

    def text(self, unit: str = "") -> str:
        """As a card shows it: `<1.8`, `>=60 mL/min`, `5%`.

        >>> Bound(1.8, "<").text()
        '<1.8'
        >>> Bound(5.0, None, "%").text()
        '5%'
        """
        shown = self.unit if self.unit is not None else unit
        space = "" if shown in ("", "%") else " "
        return f"{self.cmp or ''}{self.value:g}{space}{shown}"


def obj(holder: Any, key: str) -> dict[str, Any]:
    """holder[key] when it is an object, else {} (a wrong shape reads as absent).

    >>> obj({"code": {"text": "x"}}, "code")
    {'text': 'x'}
    >>> obj({"code": "x"}, "code"), obj(None, "code")
    ({}, {})
    """
    value = holder.get(key) if isinstance(holder, dict) else None
    return value if isinstance(value, dict) else {}


def items(holder: Any, key: str) -> list[dict[str, Any]]:
    """The objects of a list element (one object standing alone counts as a list of one; other shapes drop).

    >>> items({"component": [{"a": 1}, "junk", None]}, "component")
    [{'a': 1}]
    >>> items({"bodySite": {"text": "breast"}}, "bodySite")
    [{'text': 'breast'}]
    """
    value = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def string(holder: Any, key: str) -> str | None:
    """holder[key] when it is a string.

    >>> string({"valueString": "less than 1.8"}, "valueString")
    'less than 1.8'
    >>> string({"valueString": 1.8}, "valueString") is None
    True
    """
    value = holder.get(key) if isinstance(holder, dict) else None
    return value if isinstance(value, str) else None


def number(value: Any) -> float | None:
    """A JSON number as a float; booleans and strings are not numbers.

    >>> number(3), number(2.5), number(True), number("3")
    (3.0, 2.5, None, None)
    """
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cmp(word: Any) -> str | None:
    """A comparator in symbols; one this layer does not know stays as written (never read as exact)."""
    if not isinstance(word, str) or not word.strip():
        return None
    return _CMP.get(word.strip().lower(), word.strip())


def quantity(q: Any) -> Bound | None:
    """A Quantity (or SimpleQuantity): value, comparator, unit (`unit`, else its UCUM `code`).

    >>> quantity({"value": 60, "comparator": ">", "unit": "mL/min/{1.73_m2}"})
    Bound(value=60.0, cmp='>', unit='mL/min/{1.73_m2}')
    >>> quantity({"value": 70, "unit": "%", "code": "/100"})
    Bound(value=70.0, cmp=None, unit='%')
    >>> quantity({"value": "70"}) is None
    True
    """
    if not isinstance(q, dict):
        return None
    value = number(q.get("value"))
    if value is None:
        return None
    unit = q.get("unit") if isinstance(q.get("unit"), str) else q.get("code")
    return Bound(value, _cmp(q.get("comparator")), unit if isinstance(unit, str) else None)


def ratio(r: Any) -> Bound | None:
    """A Ratio as one number (numerator / denominator); None when a part is missing, zero or bounded.

    >>> ratio({"numerator": {"value": 9}, "denominator": {"value": 4}})
    Bound(value=2.25, cmp=None, unit=None)
    >>> ratio({"numerator": {"value": 9, "comparator": ">"}, "denominator": {"value": 4}}) is None
    True
    """
    num, den = quantity(obj(r, "numerator")), quantity(obj(r, "denominator"))
    if num is None or den is None or not den.value or num.cmp or den.cmp:
        return None
    return Bound(num.value / den.value)


def bound_in_text(text: Any, *, unit: str | None = None, anchored: bool = False) -> Bound | None:
    """The first number a text states, with its comparator in symbols or words; `unit="%"` takes only a
    percentage; `anchored` only a number at the start.

    >>> bound_in_text("less than 1.8")
    Bound(value=1.8, cmp='<', unit=None)
    >>> bound_in_text("greater than 2.2"), bound_in_text("≥ 2.0")
    (Bound(value=2.2, cmp='>', unit=None), Bound(value=2.0, cmp='>=', unit=None))
    >>> bound_in_text("<1%", unit="%"), bound_in_text("5 %", unit="%")
    (Bound(value=1.0, cmp='<', unit='%'), Bound(value=5.0, cmp=None, unit='%'))
    >>> bound_in_text("ER 90 (strong)", unit="%") is None
    True
    >>> bound_in_text("see note 3", anchored=True) is None, bound_in_text(">60 mL/min", anchored=True)
    (True, Bound(value=60.0, cmp='>', unit=None))
    >>> bound_in_text("ratio 1,8") is None, bound_in_text("1,000 cells") is None
    (True, True)
    >>> bound_in_text("ER 90%, PR 5%", unit="%")
    Bound(value=90.0, cmp=None, unit='%')
    """
    if not isinstance(text, str):
        return None
    for m in _NUMBER_IN_TEXT.finditer(text):
        if anchored and text[: m.start()].strip():
            return None
        if unit == "%" and not m.group(3):
            continue
        return Bound(float(m.group(2)), _cmp(m.group(1)), "%" if m.group(3) else None)
    return None


def value_bound(holder: Any, words: Iterable[str] = ()) -> Bound | None:
    """The number of a value[x]: valueInteger, valueQuantity (comparator kept), valueRatio; failing those, the
    first of `words` (the value's readable text) that states one. A valueRatio that cannot be read is None.

    >>> value_bound({"valueInteger": 2})
    Bound(value=2.0, cmp=None, unit=None)
    >>> value_bound({"valueQuantity": {"value": 1.8, "comparator": "<"}})
    Bound(value=1.8, cmp='<', unit=None)
    >>> value_bound({"valueString": "less than 1.8"}, ["less than 1.8"])
    Bound(value=1.8, cmp='<', unit=None)
    """
    if not isinstance(holder, dict):
        return None
    integer = holder.get("valueInteger")
    if number(integer) is not None and isinstance(integer, int):
        return Bound(float(integer))
    found = quantity(holder.get("valueQuantity"))
    if found is not None:
        return found
    if isinstance(holder.get("valueRatio"), dict):
        return ratio(holder["valueRatio"])
    return next((b for t in words if (b := bound_in_text(t)) is not None), None)


def percent(holder: Any, words: Iterable[str] = ()) -> Bound | None:
    """A percentage: a valueQuantity in % (unit "%" or "percent", UCUM "%" or "/100"), else the first of
    `words` that states one ("<1%", "5 %").

    >>> percent({"valueQuantity": {"value": 70, "unit": "%", "code": "/100"}})
    Bound(value=70.0, cmp=None, unit='%')
    >>> percent({"valueQuantity": {"value": 70, "unit": "mg"}}) is None
    True
    >>> percent({}, ["<1% of nuclei"])
    Bound(value=1.0, cmp='<', unit='%')
    """
    q = obj(holder, "valueQuantity")
    if q.get("unit") in _PERCENT_UNITS or q.get("code") in _PERCENT_UNITS:
        found = quantity(q)
        if found is not None:
            return Bound(found.value, found.cmp, "%")
    return next((b for t in words if (b := bound_in_text(t, unit="%")) is not None), None)


def codings(cc: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept that are objects.

    >>> codings({"coding": [{"code": "x"}, "junk"]})
    [{'code': 'x'}]
    """
    return items(cc, "coding") if isinstance(cc, dict) else []


def texts(cc: Any) -> list[str]:
    """The human words of a CodeableConcept: its text, then each coding's display (a bare string is its own).

    >>> texts({"text": "HER2 2+", "coding": [{"display": "2+"}]})
    ['HER2 2+', '2+']
    """
    if isinstance(cc, str):
        return [cc]
    if not isinstance(cc, dict):
        return []
    out = [cc["text"]] if isinstance(cc.get("text"), str) else []
    out += [c["display"] for c in codings(cc) if isinstance(c.get("display"), str)]
    return out


def value_words(holder: Any) -> list[str]:
    """The words of value[x]: its CodeableConcept's text and displays, then valueString.

    >>> value_words({"valueCodeableConcept": {"text": "Grade 2"}}), value_words({"valueString": "M1"})
    (['Grade 2'], ['M1'])
    """
    found = string(holder, "valueString")
    return texts(obj(holder, "valueCodeableConcept")) + ([found] if found is not None else [])


def concept(holder: Any, key: str) -> dict[str, Any] | None:
    """A CodeableConcept element, when it is one.

    >>> concept({"code": {"text": "x"}}, "code"), concept({"code": "x"}, "code")
    ({'text': 'x'}, None)
    """
    return obj(holder, key) or None


def components(resource: Any) -> list[dict[str, Any]]:
    """An Observation's components (objects only).

    >>> components({"component": [{"code": {"text": "ratio"}}, None]})
    [{'code': {'text': 'ratio'}}]
    """
    return items(resource, "component")


def reference(holder: Any, key: str) -> str | None:
    """The `reference` string of a Reference element.

    >>> reference({"subject": {"reference": "Patient/1"}}, "subject")
    'Patient/1'
    >>> reference({"subject": "Patient/1"}, "subject") is None
    True
    """
    return string(obj(holder, key), "reference")


def period(holder: Any, key: str) -> tuple[date | None, date | None]:
    """(start, end) of a Period element; either may be missing.

    >>> period({"effectivePeriod": {"start": "2024-01-05"}}, "effectivePeriod")
    (datetime.date(2024, 1, 5), None)
    """
    p = obj(holder, key)
    return parse_date(p.get("start")), parse_date(p.get("end"))


def draft_resources(context: Any) -> list[dict[str, Any]]:
    """The resources of a CDS Hooks context's draftOrders Bundle, defensively (sandboxes send non-R4 shapes).

    >>> draft_resources({"draftOrders": {"entry": [{"resource": {"resourceType": "MedicationRequest"}}, "junk"]}})
    [{'resourceType': 'MedicationRequest'}]
    >>> draft_resources({"draftOrders": []}), draft_resources(None)
    ([], [])
    """
    return [r for e in items(obj(context, "draftOrders"), "entry") if (r := obj(e, "resource"))]


def dose_quantities(resource: Any) -> list[dict[str, Any]]:
    """The doseQuantity of each dosageInstruction.doseAndRate (the objects themselves, so that a copy of the
    resource can be rewritten in place).

    >>> dose_quantities({"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 5.4}}]}]})
    [{'value': 5.4}]
    """
    return [
        q
        for d in items(resource, "dosageInstruction")
        for dr in items(d, "doseAndRate")
        if (q := obj(dr, "doseQuantity"))
    ]


def names_medication(resource: Any) -> bool:
    """Whether a (drafted) record names a medication at all, in any shape.

    >>> names_medication({"medicationCodeableConcept": {"text": "T-DXd"}}), names_medication({"code": {}})
    (True, False)
    """
    return isinstance(resource, dict) and bool(
        resource.get("medicationCodeableConcept") or resource.get("medicationReference")
    )
