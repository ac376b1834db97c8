"""DESIGN §6.1 row by row, the encodings real labs use, amended/entered-in-error, and invariants."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.facts.derive import derive
from cds_service.facts.her2 import ihc_score_from_text, ish_group
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b

TS = load_terminology()
TODAY = date(2026, 11, 25)


def picture(*resources):
    return derive(list(resources), TS, TODAY).her2


def category(*resources):
    return picture(*resources).category


# --- DESIGN §6.1, one row at a time (IHC and ISH as separate Observations on the same specimen)
@pytest.mark.parametrize(
    "ihc, ish, expected",
    [
        (3, None, "positive"),
        (3, "not amplified", "positive"),
        (2, "amplified", "positive"),
        (2, "positive", "positive"),
        (2, "not amplified", "low"),
        (2, "negative", "low"),
        (2, None, "indeterminate"),
        (2, "equivocal", "indeterminate"),
        (1, None, "low"),
        (1, "not amplified", "low"),
        (1, "amplified", "positive"),
    ],
)
def test_table_ihc_with_ish(ihc, ish, expected):
    resources = [b.her2_ihc(ihc, "2025-06-01", specimen="s1")]
    if ish:
        resources.append(b.her2_ish(ish, "2025-06-08", specimen="s1"))
    assert category(*resources) == expected


@pytest.mark.parametrize(
    "ihc0, ish, expected",
    [
        ({"membrane": "faint-le-10"}, None, "ultralow"),
        ({"membrane": "faint-le-10"}, "not amplified", "ultralow"),
        ({"membrane": "absent"}, None, "null"),
        ({"membrane": "absent"}, "not amplified", "null"),
        ({}, None, "zero-unspecified"),
        ({}, "not amplified", "zero-unspecified"),
        ({"pct": 5}, None, "ultralow"),
        ({"pct": 0}, None, "null"),
        ({"pct": 30}, None, "inconsistent"),  # >10% is the definition of 1+: re-score, never low by guess
    ],
)
def test_table_ihc_zero(ihc0, ish, expected):
    resources = [b.her2_ihc(0, "2025-06-01", specimen="s1", **ihc0)]
    if ish:
        resources.append(b.her2_ish(ish, "2025-06-08", specimen="s1"))
    assert category(*resources) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Negative", "binary-only"),
        ("HER2 negative", "binary-only"),
        ("Positive", "positive"),
    ],
)
def test_table_binary_only(text, expected):
    assert category(b.her2_interpretation(text)) == expected


@pytest.mark.parametrize("ish, expected", [("amplified", "positive"), ("not amplified", "binary-only")])
def test_table_ish_without_ihc(ish, expected):
    assert category(b.her2_ish(ish)) == expected


# --- encodings
@pytest.mark.parametrize(
    "value, expected",
    [
        ({"valueCodeableConcept": {"text": "1+"}}, "low"),
        ({"valueCodeableConcept": {"text": "Score 1+ (HER2-low)"}}, "low"),
        ({"valueCodeableConcept": {"text": "Negative (Score 0)"}}, "zero-unspecified"),
        ({"valueCodeableConcept": {"text": "0 (ultralow)"}}, "ultralow"),
        ({"valueCodeableConcept": {"text": "IHC 0, faint incomplete membrane staining in <=10% of cells"}}, "ultralow"),
        ({"valueCodeableConcept": {"text": "0, no membrane staining"}}, "null"),
        ({"valueCodeableConcept": {"text": "score 0"}}, "zero-unspecified"),
        ({"valueString": "3+"}, "positive"),
        ({"valueString": "2 +"}, "indeterminate"),
        ({"valueInteger": 1}, "low"),
        ({"valueQuantity": {"value": 3}}, "positive"),
        ({"valueCodeableConcept": b.cc(b.LOCAL, "score-1", "IHC 1+")}, "low"),
        ({"valueCodeableConcept": b.cc(b.SCT, "260385009", "Negative")}, "binary-only"),
        ({"valueCodeableConcept": {"text": "HER2-low"}}, "low"),
    ],
)
def test_ihc_encodings(value, expected):
    assert category(b.her2_ihc(value)) == expected


@pytest.mark.parametrize(
    "text, expected, note",
    [
        ("Negative (0-1+)", "binary-only", "range (0-1+)"),  # the old report style: never read as 1+
        ("HER2 1+/2+", None, "range (1-2+)"),
        ("2+ equivocal; FISH not amplified (ratio 1.3)", "low", None),
        ("2+ (equivocal), reflex to FISH", "indeterminate", None),
        ("3+; FISH amplified", "positive", None),
        ("Score 0, faint incomplete membrane staining in 5% of tumour cells", "ultralow", None),
        ("Score 0, faint incomplete membrane staining in 30% of cells", "inconsistent", "contradictory"),
    ],
)
def test_free_text_reports_real_labs_write(text, expected, note):
    pic = picture(b.metastasis("liver", "2024-01-01"), b.her2_ihc({"valueString": text}))
    assert pic.category == expected
    assert note is None or any(note in n for n in pic.notes), pic.notes  # picture notes reach the cards


def test_score_in_a_component():
    obs = b.observation(
        b.cc(text="HER2 panel"),
        "2025-01-01",
        component=[
            {"code": b.cc(b.LOINC, "85319-2"), "valueCodeableConcept": {"text": "2+"}},
            {"code": b.cc(b.LOINC, "85318-4"), "valueCodeableConcept": {"text": "Not amplified"}},
        ],
    )
    assert category(obs) == "low"


def test_text_coded_observation_matched_by_name():
    obs = b.observation({"text": "HER2 IHC"}, "2025-01-01", valueString="1+")
    pic = picture(obs)
    assert pic.category == "low" and pic.current.by_text


@pytest.mark.parametrize(
    "ratio, copies, ihc, expected",
    [
        (2.5, 6.0, None, "positive"),  # group 1
        (1.2, 2.0, None, "binary-only"),  # group 5
        (2.2, 3.0, 2, "low"),  # group 2 with IHC 2+ → negative
        (1.5, 7.0, 2, "positive"),  # group 3 with IHC 2+ → positive
        (1.5, 4.5, 2, "low"),  # group 4 with IHC 2+ → negative
        (1.5, 4.5, None, "indeterminate"),  # group 4 without IHC cannot be called
    ],
)
def test_ish_groups(ratio, copies, ihc, expected):
    resources = [b.her2_ish(None, ratio=ratio, copies=copies, specimen="s1")]
    if ihc is not None:
        resources.append(b.her2_ihc(ihc, "2025-06-01", specimen="s1"))
    assert category(*resources) == expected


def test_ish_pairs_with_ihc_without_specimen_within_60_days():
    assert category(b.her2_ihc(2, "2025-06-01"), b.her2_ish("not amplified", "2025-06-20")) == "low"
    pic = picture(b.her2_ihc(2, "2025-01-01"), b.her2_ish("not amplified", "2025-06-20"))
    assert [r.category for r in pic.results] == ["indeterminate", "binary-only"]


# --- status, amendment, history
def test_entered_in_error_is_ignored():
    facts = derive([b.her2_ihc(1, "2025-01-01"), b.her2_ihc(3, "2025-06-01", status="entered-in-error")], TS, TODAY)
    assert facts.her2.category == "low" and not facts.her2.ever_positive
    assert any("entered-in-error" in n for n in facts.data_notes)


def test_amended_result_replaces_the_original():
    original = b.her2_ihc(0, "2025-03-01", specimen="s1", id="orig", issued="2025-03-03T10:00:00Z")
    amended = b.her2_ihc(
        1,
        "2025-03-01",
        specimen="s1",
        status="amended",
        issued="2025-03-10T10:00:00Z",
        derivedFrom=[{"reference": "Observation/orig"}],
    )
    pic = picture(original, amended)
    assert pic.category == "low" and len(pic.results) == 1
    assert any("replaced" in n for n in pic.notes)


def test_newer_version_of_same_resource_wins():
    v1 = b.her2_ihc(0, "2025-03-01", id="same", meta={"versionId": "1"})
    v2 = b.her2_ihc(2, "2025-03-01", id="same", meta={"versionId": "2"})
    v2["valueInteger"] = 1
    assert category(v1, v2) == "low"


def test_current_is_latest_and_positive_history_is_discordance():
    pic = picture(b.her2_ihc(3, "2014-01-01"), b.her2_ihc(1, "2024-01-01"))
    assert pic.category == "low" and pic.ever_positive and pic.discordant
    assert [r.when.year for r in pic.results] == [2014, 2024]


def test_site_and_specimen_are_kept():
    spec = {
        "resourceType": "Specimen",
        "id": "sp9",
        "type": {"text": "Liver core biopsy"},
        "collection": {"bodySite": b.cc(b.SCT, "10200004", "Liver structure")},
    }
    pic = picture(spec, b.her2_ihc(1, "2016-06-01", specimen="sp9"))
    assert pic.current.site_kind == "metastatic" and "Liver" in pic.current.site
    assert "Observation/" in pic.current.describe() and "2016-06-01" in pic.current.describe()


def test_unreadable_result_is_reported_not_guessed():
    pic = picture(b.her2_ihc({"valueCodeableConcept": {"text": "see report"}}))
    assert pic.category is None and any("could not be read" in n for n in pic.notes)


def test_invalid_resource_is_skipped_with_a_note():
    bad = b.her2_ihc(1)
    bad["status"] = 42
    facts = derive([bad], TS, TODAY)
    assert facts.her2.category is None
    assert any("could not be read and was left out" in n for n in facts.data_notes)


def test_ish_group_boundaries():
    assert [
        ish_group(2.0, 4.0),
        ish_group(2.0, 3.9),
        ish_group(1.9, 6.0),
        ish_group(1.9, 4.0),
        ish_group(1.9, 3.9),
    ] == [1, 2, 3, 4, 5]


# --- invariants (hypothesis)
SCORE_TEXTS = st.sampled_from(
    [
        "0",
        "1+",
        "2+",
        "3+",
        "score 0",
        "Negative (0)",
        "IHC 0",
        "0 (ultralow)",
        "HER2 0, no staining",
        "negative",
        "positive",
        "equivocal",
        "1 +",
        "see report",
    ]
)
ISH_TEXTS = st.sampled_from([None, "amplified", "not amplified", "equivocal", "negative", "positive"])


@settings(max_examples=300, deadline=None)
@given(
    score=SCORE_TEXTS,
    ish=ISH_TEXTS,
    membrane=st.sampled_from([None, "absent", "faint-le-10"]),
    pct=st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
)
def test_never_positive_without_3plus_or_amplified_ish(score, ish, membrane, pct):
    resources = [b.her2_ihc(score, "2025-06-01", specimen="s1", membrane=membrane, pct=pct)]
    if ish:
        resources.append(b.her2_ish(ish, "2025-06-05", specimen="s1"))
    pic = picture(*resources)
    for r in pic.results:
        if r.category == "positive":
            assert r.ihc == 3 or r.ish == "amplified" or (r.ihc is None and r.binary == "positive")


@settings(max_examples=200, deadline=None)
@given(
    text=st.sampled_from(["0", "score 0", "IHC 0", "Negative (Score 0)", "0/3"]),
    ish=st.sampled_from([None, "not amplified", "negative"]),
)
def test_unspecified_zero_is_never_ultralow(text, ish):
    resources = [b.her2_ihc(text, "2025-06-01", specimen="s1")]
    if ish:
        resources.append(b.her2_ish(ish, "2025-06-05", specimen="s1"))
    assert category(*resources) != "ultralow"


@given(st.text(max_size=40))
def test_score_parser_total(text):
    score = ihc_score_from_text(text)
    assert score is None or score in (0, 1, 2, 3)


@pytest.mark.parametrize("display", ["HER2 [Mass/volume] in Serum", "HER2 [Mass/volume] in Serum or Plasma"])
def test_serum_her2_is_not_a_tumour_her2_result(display):
    """LOINC 32996-1 is a blood test (shed HER2 extracellular domain): a high value is no ISH amplification."""
    serum = b.observation(
        b.cc(b.LOINC, "32996-1", display),
        "2025-06-01",
        valueQuantity={"value": 25, "unit": "ng/mL"},
        interpretation=[b.cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H", "High")],
    )
    pic = picture(b.metastasis("liver", "2024-01-01"), serum)
    assert pic.results == [] and pic.category is None
