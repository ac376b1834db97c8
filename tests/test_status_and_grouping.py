"""The one status policy on every resource type, and how HER2 readings of one specimen are grouped,
ranked and paired (DESIGN §6.1)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.fhir.status import IGNORE, UNCONFIRMED, USE, note, result_rank, verdict
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b

TS = load_terminology()
TODAY = date(2026, 11, 25)


def facts(*resources):
    return derive(list(resources), TS, TODAY)


@pytest.mark.parametrize(
    "resource, decision",
    [
        ({"resourceType": "Observation", "status": "final"}, USE),
        ({"resourceType": "Observation", "status": "preliminary"}, USE),
        ({"resourceType": "Observation", "status": "amended"}, USE),
        ({"resourceType": "Observation", "status": "cancelled"}, IGNORE),
        ({"resourceType": "Observation", "status": "registered"}, IGNORE),
        ({"resourceType": "Observation", "status": "entered-in-error"}, IGNORE),
        ({"resourceType": "DiagnosticReport", "status": "cancelled"}, IGNORE),
        ({"resourceType": "DiagnosticReport", "status": "partial"}, USE),
        ({"resourceType": "Procedure", "status": "not-done"}, IGNORE),
        ({"resourceType": "Procedure", "status": "preparation"}, IGNORE),
        ({"resourceType": "Procedure", "status": "completed"}, USE),
        ({"resourceType": "MedicationStatement", "status": "not-taken"}, IGNORE),
        ({"resourceType": "MedicationRequest", "status": "draft"}, IGNORE),
        ({"resourceType": "MedicationAdministration", "status": "completed"}, USE),
        ({"resourceType": "Specimen", "status": "entered-in-error"}, IGNORE),
        ({"resourceType": "Specimen", "status": "available"}, USE),
    ],
)
def test_verdict_by_type_and_status(resource, decision):
    assert verdict(resource)[0] == decision


@pytest.mark.parametrize(
    "ver, decision",
    [
        ("confirmed", USE),
        ("refuted", IGNORE),
        ("entered-in-error", IGNORE),
        ("unconfirmed", UNCONFIRMED),
        ("provisional", UNCONFIRMED),
        ("differential", UNCONFIRMED),
    ],
)
def test_condition_verification(ver, decision):
    cond = b.condition(b.cc(b.SCT, "94381002"), "2024-01-01", verification=ver, id="c1")
    assert verdict(cond) == (decision, None if decision == USE else ver)
    said = {
        USE: None,
        IGNORE: f"Condition/c1 ignored (status {ver})",
        UNCONFIRMED: f"Condition/c1 is {ver}: said here, not counted",
    }[decision]
    if said:
        assert note(cond, decision, ver) == said


def test_statuses_reach_every_fact():
    cancelled = b.her2_ihc(3, "2025-06-01", status="cancelled", id="h3")
    registered = b.her2_ihc(3, "2025-06-02", status="registered", id="h4")
    not_done = b.procedure(b.cc(b.SCT, "108290001", "Radiotherapy"), "2024-01-01", body_site="chest wall")
    not_done["status"] = "not-done"
    f = facts(b.her2_ihc(1, "2025-01-01"), cancelled, registered, not_done)
    assert f.her2.category == "low" and not f.her2.ever_positive
    assert f.ild.thoracic_rt == []
    assert {
        "Observation/h3 ignored (status cancelled)",
        "Observation/h4 ignored (status registered)",
        f"Procedure/{not_done['id']} ignored (status not-done)",
    } <= set(f.data_notes)


@pytest.mark.parametrize(
    "resource, rank",
    [
        ({"status": "final", "issued": "2025-01-02T10:00:00Z"}, (2, "2025-01-02T10:00:00Z")),
        ({"status": "corrected"}, (2, "")),
        ({"status": "appended"}, (2, "")),
        ({"status": "preliminary"}, (1, "")),
        ({"status": "unknown"}, (1, "")),
        ({"issued": 5}, (1, "")),
    ],
)
def test_result_rank(resource, rank):
    assert result_rank(resource) == rank


# --- one specimen: final over preliminary, later issued over earlier, amended replaces
def ihc(score, **kw):
    kw.setdefault("specimen", "s1")
    return b.her2_ihc(score, "2025-03-01", **kw)


def test_later_issued_final_wins_in_either_order():
    first = ihc(0, membrane="absent", issued="2025-03-02T10:00:00Z")
    second = ihc("1+", issued="2025-03-09T10:00:00Z")
    assert facts(first, second).her2.category == "low"
    assert facts(second, first).her2.category == "low"


def test_final_outranks_an_unknown_status_reading():
    final = ihc(0, membrane="absent", issued="2025-03-02T10:00:00Z")
    unknown = ihc("1+", status="unknown", issued="2025-03-09T10:00:00Z")
    assert facts(unknown, final).her2.category == "null"


def test_amended_by_derived_from_and_by_same_specimen():
    original = ihc(0, id="orig", issued="2025-03-03T10:00:00Z")
    amended = ihc(
        "1+", status="amended", issued="2025-03-10T10:00:00Z", derivedFrom=[{"reference": "Observation/orig"}]
    )
    pic = facts(original, amended).her2
    assert pic.category == "low" and pic.current.refs == [f"Observation/{amended['id']}"]
    assert "Observation/orig was replaced by an amended/corrected result" in pic.notes
    other_day = ihc(0, id="other", specimen="s2", issued="2025-03-03T10:00:00Z")
    amended_elsewhere = ihc("1+", status="corrected", issued="2025-03-10T10:00:00Z")
    assert len(facts(other_day, amended_elsewhere).her2.results) == 2


def test_an_amendment_issued_before_the_original_does_not_replace_it():
    original = ihc(0, membrane="absent", id="orig", issued="2025-03-12T10:00:00Z")
    amended = ihc("1+", status="amended", issued="2025-03-10T10:00:00Z")
    pic = facts(original, amended).her2
    assert not any("replaced" in n for n in pic.notes)


def test_two_readings_of_one_specimen_on_different_days_are_two_results():
    old = b.her2_interpretation("Negative", "2016-05-20", specimen={"reference": "Specimen/s1"})
    reread = b.her2_ihc("1+", "2024-05-02", specimen="s1")
    ish = b.her2_ish("not amplified", "2016-06-01", specimen="s1")
    pic = facts(old, reread, ish).her2
    assert [(r.when, r.category) for r in pic.results] == [(date(2016, 6, 1), "binary-only"), (date(2024, 5, 2), "low")]
    assert pic.results[0].ish == "not-amplified" and pic.results[1].ish is None


# --- an ISH result without a specimen joins the nearest earlier IHC of the same site within 60 days
@pytest.mark.parametrize(
    "ish_day, ihc_site, ish_site, joined",
    [
        ("2025-06-01", None, None, True),
        ("2025-07-31", None, None, True),
        ("2025-08-01", None, None, False),
        ("2025-05-31", None, None, False),
        ("2025-06-10", "liver", "liver", True),
        ("2025-06-10", "liver", None, True),
        ("2025-06-10", "liver", "left breast", False),
    ],
)
def test_ish_pairing(ish_day, ihc_site, ish_site, joined):
    pic = facts(b.her2_ihc(2, "2025-06-01", site=ihc_site), b.her2_ish("not amplified", ish_day, site=ish_site)).her2
    assert (len(pic.results) == 1) is joined
    if joined:
        assert pic.category == "low"


def test_ish_joins_the_latest_earlier_ihc():
    pic = facts(b.her2_ihc(2, "2025-05-01"), b.her2_ihc("1+", "2025-05-20"), b.her2_ish("amplified", "2025-06-01")).her2
    assert [(r.when, r.category) for r in pic.results] == [
        (date(2025, 5, 1), "indeterminate"),
        (date(2025, 6, 1), "positive"),
    ]


def test_picture_notes():
    pic = facts(b.her2_ihc(1, "2023-01-20"), b.her2_ihc(0, "2025-04-01", membrane="absent")).her2
    assert pic.discordant and pic.earlier_low.when == date(2023, 1, 20)
    assert (
        "the latest result (HER2-null (IHC 0, no staining), 2025-04-01) differs from an earlier sample "
        "(HER2-low, 2023-01-20)"
    ) in pic.notes
    undated = b.her2_ihc(1)
    del undated["effectiveDateTime"]
    assert "no HER2 result has a date: the current result cannot be told from older ones" in facts(undated).her2.notes
    blank = b.observation(b.cc(b.LOINC, "85319-2"), "2025-01-01", id="blank")
    assert (
        "HER2 result Observation/blank could not be read: no score, ISH or interpretation found"
        in facts(blank).her2.notes
    )
    assert not facts(b.her2_ihc(3, "2022-01-01"), b.her2_ihc(0, "2025-01-01", membrane="absent")).her2.earlier_low


def test_ihc_0_with_amplified_ish_is_positive_and_interpretation_codes():
    assert (
        facts(
            b.her2_ihc(0, "2025-06-01", specimen="s1", membrane="faint-le-10"),
            b.her2_ish("amplified", "2025-06-03", specimen="s1"),
        ).her2.category
        == "positive"
    )
    code = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    for interp, category in (
        ("H", "positive"),
        ("POS", "positive"),
        ("NEG", "binary-only"),
        ("N", "binary-only"),
        ("A", None),
    ):
        obs = b.observation(b.cc(b.LOINC, "48676-1"), "2025-01-01", interpretation=[b.cc(code, interp)])
        assert facts(obs).her2.category == category, interp


def test_score_ranges_in_text():
    pic = facts(b.her2_ihc({"valueString": "0-1+"}, id="r1")).her2
    assert pic.category == "binary-only" and pic.current.by_text
    assert "latest HER2 result: Observation/r1 gives the IHC score as a range (0-1+), not a single score" in pic.notes
    assert facts(b.her2_ihc({"valueString": "1+/2+"})).her2.category is None


def test_membrane_statement_in_the_ihc_text_and_component_words():
    assert facts(b.her2_ihc({"valueString": "0, no staining"})).her2.category == "null"
    assert facts(b.her2_ihc({"valueString": "0 (faint staining in 4% of cells)"})).her2.current.membrane_pct == 4
    comp = b.her2_ihc(0)
    comp["component"] = [
        {
            "code": b.cc(b.LOCAL, "membrane-staining"),
            "valueCodeableConcept": {"text": "faint incomplete staining in ≤10% of cells"},
        }
    ]
    assert facts(comp).her2.category == "ultralow"
    comp["component"][0]["valueCodeableConcept"] = b.cc(b.LOCAL, "membrane-staining-absent")
    assert facts(comp).her2.category == "null"


def test_specimen_sites():
    spec = {
        "resourceType": "Specimen",
        "id": "sp1",
        "collection": {"bodySite": b.cc(b.SCT, "80248007", "Left breast structure")},
    }
    obs = b.her2_ihc(1, specimen="sp1")
    obs["specimen"] = {"reference": "https://fhir.example.org/Specimen/sp1"}
    cur = facts(spec, obs).her2.current
    assert (cur.site_kind, cur.site) == ("primary", "Left breast structure")
    shown = b.her2_ihc(1)
    shown["specimen"] = {"display": "Liver core biopsy"}
    assert facts(shown).her2.current.site_kind == "metastatic"
