"""The reading layer (cds_service/fhir/read.py): its doctests are the shapes each accessor accepts."""

from __future__ import annotations

import doctest

import pytest

from cds_service.fhir import primitives, read
from cds_service.fhir.read import Bound, bound_in_text, percent, quantity, value_bound


def test_every_accessor_documents_its_shapes_and_the_examples_hold():
    for module in (read, primitives):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted >= 3
    public = [name for name in read.__all__ if callable(getattr(read, name)) and name != "Bound"]
    assert [n for n in public if ">>>" not in (getattr(read, n).__doc__ or "")] == []


@pytest.mark.parametrize(
    "text, found",
    [
        ("less than 1.8", Bound(1.8, "<")),
        ("more than 10%", Bound(10.0, ">", "%")),
        ("at least 4", Bound(4.0, ">=")),
        ("up to 3", Bound(3.0, "<=")),
        ("=< 2", Bound(2.0, "<=")),
        ("HER2/CEP17 ratio 2.5", Bound(2.5)),  # the 17 of CEP17 is part of a word, not a number
        ("1.8.3", None),
        ("", None),
        (None, None),
    ],
)
def test_numbers_in_words(text, found):
    assert bound_in_text(text) == found


def test_a_comparator_this_layer_does_not_know_is_never_read_as_exact():
    assert quantity({"value": 5, "comparator": "ad"}) == Bound(5.0, "ad", None)
    assert quantity({"value": 5, "comparator": "ad"}).exact is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "holder", [{"valueInteger": True}, {"valueQuantity": {"value": "1"}}, {"valueRatio": {"numerator": {"value": 1}}}]
)
def test_wrong_shapes_read_as_nothing(holder):
    assert value_bound(holder, ["7"] if "valueRatio" in holder else []) is None


def test_percent_needs_a_percent_unit_or_sign():
    assert percent({"valueQuantity": {"value": 5, "unit": "percent"}}) == Bound(5.0, None, "%")
    assert percent({"valueQuantity": {"value": 5, "code": "/100"}}) == Bound(5.0, None, "%")
    assert percent({}, ["5 of 100 nuclei"]) is None


@pytest.mark.parametrize("text", ["HER2/CEP17 ratio 2,3", "1,8", "1,000 cells counted"])
def test_a_decimal_comma_or_thousands_separator_is_not_read_as_a_smaller_number(text):
    # "2,3" read as 2 would be a ratio at 2.0; "1,8" read as 8 an amplification
    assert bound_in_text(text) is None
