"""How a resource sorts into the value sets is kept by what the sorting reads (its type and codes, or its drug),
not by the resource's bytes (issue 26): a new result with a known code is not sorted again; what is the
resource's own (its status, its validity) is still decided for each resource."""

from __future__ import annotations

from datetime import date

from cds_service.facts.derive import derive
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b

TODAY = date(2026, 12, 5)


def _ihc(score: str, when: str, **kw):
    return {**b.her2_ihc(score, when, site="liver"), **kw}


def test_a_new_result_with_a_known_code_is_not_sorted_again():
    ts = load_terminology()
    base = [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("liver", "2023-01-10")]
    derive([*base, _ihc("1+", "2024-01-10")], ts, TODAY)
    sortings = len(ts._sortings)
    derive([*base, _ihc("1+", "2024-01-10"), _ihc("2+", "2025-03-01", id="new-result")], ts, TODAY)
    assert len(ts._sortings) == sortings  # the same code: the same sorting, kept


def test_its_status_and_its_validity_are_still_each_resources_own():
    ts = load_terminology()
    base = [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("liver", "2023-01-10")]
    first = derive([*base, _ihc("1+", "2024-01-10", id="a")], ts, TODAY)
    assert first.her2.current is not None and first.her2.current.ihc == 1
    voided = derive([*base, _ihc("1+", "2024-01-10", id="a", status="entered-in-error")], ts, TODAY)
    assert voided.her2.current is None  # set aside by its status, though its code sorted before
    broken = derive([*base, _ihc("1+", "2024-01-10", id="a", effectiveDateTime="2024-02-30")], ts, TODAY)
    assert broken.her2.current is None and broken.her2.unreadable == ["Observation/a"]
    assert any("not valid FHIR R4 (effectiveDateTime)" in n for n in broken.data_notes)
