"""HER2 readers and the §6.1 table at the level of what one result says: the ISH call and group,
the notes, and the exact line a card shows for the result."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.facts.her2 import Her2Result, categorise, ish_group, ratio_at_least_2, read_bound
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b
from .fixtures import realworld as rw

TS = load_terminology()
TODAY = date(2026, 11, 25)


def current(*resources):
    return derive(list(resources), TS, TODAY).her2.current


def result(**kw) -> Her2Result:
    return Her2Result(category=None, when=date(2025, 6, 1), refs=["Observation/h"], **kw)


@pytest.mark.parametrize(
    "ratio, cmp, ge2",
    [
        (2.0, None, True),
        (1.99, None, False),
        (None, None, None),
        (2.0, "<", False),
        (2.1, "<", None),
        (1.8, "<", False),
        (1.99, "<=", False),
        (2.0, "<=", None),
        (2.0, ">", True),
        (1.8, ">", None),
        (2.0, ">=", True),
        (1.99, ">=", None),
    ],
)
def test_ratio_at_least_2(ratio, cmp, ge2):
    assert ratio_at_least_2(ratio, cmp) is ge2


@pytest.mark.parametrize(
    "ratio, copies, group",
    [
        (2.0, 4.0, 1),
        (2.0, 3.99, 2),
        (1.99, 6.0, 3),
        (1.99, 5.99, 4),
        (1.99, 4.0, 4),
        (1.99, 3.99, 5),
        (None, 5.0, None),
        (2.0, None, None),
    ],
)
def test_ish_group_boundaries(ratio, copies, group):
    assert ish_group(ratio, copies) == group


@pytest.mark.parametrize(
    "kw, category, ish, group, notes",
    [
        ({"ihc": 2, "ratio": 2.4, "copy_number": 4.5}, "positive", "amplified", 1, []),
        ({"ihc": 2, "ratio": 2.4, "copy_number": 3.0}, "low", "not-amplified", 2, []),
        ({"ihc": 3, "ratio": 2.4, "copy_number": 3.0}, "positive", "amplified", 2, []),
        ({"ihc": 2, "ratio": 1.5, "copy_number": 6.5}, "positive", "amplified", 3, []),
        ({"ihc": 1, "ratio": 1.5, "copy_number": 6.5}, "low", "not-amplified", 3, []),
        (
            {"ihc": 2, "ratio": 1.5, "copy_number": 5.0},
            "low",
            "not-amplified",
            4,
            ["ISH group 4 (ratio <2.0, 4.0-<6.0 copies): not amplified, with a comment (ASCO/CAP 2018)"],
        ),
        (
            {"ihc": 0, "ratio": 1.5, "copy_number": 5.0, "membrane": "absent"},
            "null",
            "not-amplified",
            4,
            ["ISH group 4 (ratio <2.0, 4.0-<6.0 copies): not amplified, with a comment (ASCO/CAP 2018)"],
        ),
        ({"ihc": 2, "ratio": 1.2, "copy_number": 2.0}, "low", "not-amplified", 5, []),
        (
            {"ratio": 1.5, "copy_number": 5.0},
            "indeterminate",
            "equivocal",
            4,
            ["ISH group 4 needs the concurrent IHC score to be interpreted"],
        ),
        (
            {"ratio": 2.5, "copy_number": 3.0},
            "indeterminate",
            "equivocal",
            2,
            ["ISH group 2 needs the concurrent IHC score to be interpreted"],
        ),
        ({"ratio": 2.5, "copy_number": 5.0}, "positive", "amplified", 1, []),
        ({"ratio": 1.2, "copy_number": 2.0}, "binary-only", "not-amplified", 5, []),
        # ratio only
        (
            {"ihc": 1, "ratio": 1.5},
            "low",
            "not-amplified",
            None,
            ["ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned"],
        ),
        (
            {"ihc": 0, "ratio": 1.5, "membrane": "absent"},
            "null",
            "not-amplified",
            None,
            ["ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned"],
        ),
        (
            {"ihc": 2, "ratio": 1.5},
            "indeterminate",
            "equivocal",
            None,
            ["ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned"],
        ),
        (
            {"ihc": 3, "ratio": 1.5},
            "positive",
            "amplified",
            None,
            ["ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned"],
        ),
        (
            {"binary": "negative", "ratio": 1.5},
            "binary-only",
            "not-amplified",
            None,
            ["ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned"],
        ),
        (
            {"ihc": 1, "ratio": 2.5},
            "low",
            "equivocal",
            None,
            ["ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned"],
        ),
        (
            {"ihc": 2, "ratio": 1.8, "ratio_cmp": ">"},
            "indeterminate",
            "equivocal",
            None,
            ["ISH ratio >1.8 cannot be placed above or below 2.0"],
        ),
        (
            {"ihc": 3, "ratio": 1.8, "ratio_cmp": ">"},
            "positive",
            "amplified",
            None,
            ["ISH ratio >1.8 cannot be placed above or below 2.0"],
        ),
        # copies only (single-probe criteria)
        (
            {"ihc": 2, "copy_number": 6.0},
            "positive",
            "amplified",
            None,
            ["ISH reported as HER2 copies per cell only (single-probe criteria)"],
        ),
        (
            {"ihc": 2, "copy_number": 3.99},
            "low",
            "not-amplified",
            None,
            ["ISH reported as HER2 copies per cell only (single-probe criteria)"],
        ),
        (
            {"ihc": 2, "copy_number": 4.0},
            "indeterminate",
            "equivocal",
            None,
            ["ISH reported as HER2 copies per cell only (single-probe criteria)"],
        ),
        # computed ratio
        (
            {"ihc": 2, "copy_number": 5.0, "cep17": 2.0},
            "positive",
            "amplified",
            1,
            ["HER2/CEP17 ratio 2.5 computed from the copy numbers"],
        ),
        # stated call against numbers
        (
            {"ihc": 2, "ish": "not-amplified", "ratio": 2.6, "copy_number": 7.0},
            "low",
            "not-amplified",
            1,
            ["the reported ISH call (not amplified) disagrees with its numbers (amplified): the reported call is used"],
        ),
        ({"ihc": 2, "ish": "amplified", "ratio": 2.6, "copy_number": 7.0}, "positive", "amplified", 1, []),
        # interpretations without IHC
        ({"binary": "positive"}, "positive", None, None, []),
        ({"binary": "negative"}, "binary-only", None, None, []),
        ({"binary": "equivocal"}, "indeterminate", None, None, []),
        ({"ish": "equivocal", "binary": "negative"}, "binary-only", "equivocal", None, []),
        ({}, None, None, None, []),
    ],
)
def test_categorise_with_ish(kw, category, ish, group, notes):
    r = result(**kw)
    found = categorise(r)
    assert found.category == category
    assert (found.ish, found.ish_group, list(found.notes)) == (ish, group, notes)
    assert r == result(**kw)  # categorise reads the result, never changes it


@pytest.mark.parametrize(
    "kw, category, notes",
    [
        ({"membrane_pct": 10, "membrane_pct_cmp": "<"}, "ultralow", []),
        ({"membrane_pct": 10, "membrane_pct_cmp": "<="}, "ultralow", []),
        ({"membrane_pct": 0, "membrane_pct_cmp": "<="}, "null", []),
        (
            {"membrane_pct": 11, "membrane_pct_cmp": "<"},
            "zero-unspecified",
            ["IHC 0 with membrane staining in <11% of cells: ≤10% or not cannot be told"],
        ),
        (
            {"membrane_pct": 10, "membrane_pct_cmp": ">"},
            "inconsistent",
            [
                "IHC 0 with membrane staining in >10% of cells is contradictory (>10% would be 1+): "
                "pathology review needed"
            ],
        ),
        (
            {"membrane_pct": 10, "membrane_pct_cmp": ">="},
            "zero-unspecified",
            ["IHC 0 with membrane staining in >=10% of cells: ≤10% or not cannot be told"],
        ),
        (
            {"membrane_pct": 5, "membrane_pct_cmp": ">"},
            "zero-unspecified",
            ["IHC 0 with membrane staining in >5% of cells: ≤10% or not cannot be told"],
        ),
        (
            {"membrane_pct": 12},
            "inconsistent",
            [
                "IHC 0 with membrane staining in 12% of cells is contradictory (>10% would be 1+): "
                "pathology review needed"
            ],
        ),
        ({"membrane": "faint-le-10", "membrane_pct": 30}, "ultralow", []),
        ({"membrane": "absent"}, "null", []),
        ({}, "zero-unspecified", []),
    ],
)
def test_ihc_zero(kw, category, notes):
    found = categorise(result(ihc=0, **kw))
    assert found.category == category and list(found.notes) == notes


@pytest.mark.parametrize(
    "resource, line",
    [
        (
            b.her2_ihc(1, "2025-06-01", site="liver biopsy", id="o1"),
            "HER2-low: IHC 1+; liver biopsy; 2025-06-01; Observation/o1",
        ),
        (
            b.her2_ihc(0, "2025-06-01", membrane="absent", id="o1"),
            "HER2-null (IHC 0, no staining): IHC 0, no membrane staining; specimen site not recorded; 2025-06-01; "
            "Observation/o1",
        ),
        (
            b.her2_ihc(0, "2025-06-01", membrane="faint-le-10", id="o1"),
            "HER2-ultralow: IHC 0, faint/incomplete membrane staining ≤10%; specimen site not recorded; 2025-06-01; "
            "Observation/o1",
        ),
        (
            b.her2_ihc(0, "2025-06-01", pct=5, id="o1"),
            "HER2-ultralow: IHC 0, 5% cells with membrane staining; specimen site not recorded; "
            "2025-06-01; Observation/o1",
        ),
        (
            b.her2_ihc(0, "2025-06-01", id="o1"),
            "HER2 IHC 0 without a membrane-staining statement: IHC 0, no membrane-staining statement; "
            "specimen site not "
            "recorded; 2025-06-01; Observation/o1",
        ),
        (
            b.her2_ihc("2+", "2025-06-01", id="o1"),
            "HER2 indeterminate (IHC 2+ without ISH, or ISH that cannot be interpreted): IHC 2+; specimen site not "
            "recorded; 2025-06-01; Observation/o1 (read from free text)",
        ),
        (
            b.her2_interpretation("Negative", "2015-01-10", id="o1"),
            "HER2-negative (no IHC score reported): reported only as negative; specimen site not recorded; 2015-01-10; "
            "Observation/o1 (read from free text)",
        ),
        (b.her2_ish(None, "2025-06-01", ratio=2.5, copies=5.0), None),
    ],
)
def test_result_line(resource, line):
    cur = current(resource)
    if line is not None:
        assert cur.describe() == line
    else:
        assert "ISH amplified (ratio 2.5, 5 copies/cell)" in cur.describe()


def test_result_lines_with_ish_numbers_and_bounds():
    cur = current(rw.synthea_ish("less than 1.8", "2025-06-05"), b.her2_ihc(1, "2025-06-01"))
    assert "IHC 1+, ISH not amplified (ratio <1.8)" in cur.describe()
    assert cur.method == "IHC+ISH"
    assert current(b.her2_ihc(1)).method == "IHC"
    assert current(b.her2_interpretation("Negative")).method == "interpretation only"


@pytest.mark.parametrize(
    "site, kind",
    [
        ("liver", "metastatic"),
        ("Metastatic lesion, chest wall", "metastatic"),
        ("left breast", "primary"),
        ("core biopsy", "unknown"),
    ],
)
def test_specimen_site_kind(site, kind):
    cur = current(b.her2_ihc(1, site=site))
    assert (cur.site_kind, cur.site) == (kind, site)


def test_specimen_resource_gives_the_site():
    spec = {
        "resourceType": "Specimen",
        "id": "sp1",
        "type": {"text": "Core biopsy"},
        "collection": {"bodySite": b.cc(b.SCT, "10200004", "Liver structure")},
    }
    cur = current(spec, b.her2_ihc(1, specimen="sp1"))
    assert (cur.site_kind, cur.specimen_ref) == ("metastatic", "Specimen/sp1")


@pytest.mark.parametrize(
    "value, bound",
    [
        ({"valueInteger": 3}, (3.0, None)),
        ({"valueQuantity": {"value": 2.2, "comparator": ">"}}, (2.2, ">")),
        ({"valueRatio": {"numerator": {"value": 5}, "denominator": {"value": 2}}}, (2.5, None)),
        ({"valueRatio": {"numerator": {"value": 5, "comparator": ">"}, "denominator": {"value": 2}}}, None),
        ({"valueRatio": {"numerator": {"value": 5}, "denominator": {"value": 0}}}, None),
        ({"valueString": "greater than 2.2"}, (2.2, ">")),
        ({"valueString": "less than 1.8"}, (1.8, "<")),
        ({"valueString": "below 2"}, (2.0, "<")),
        ({"valueString": "≥ 4"}, (4.0, ">=")),
        ({"valueString": "<= 3"}, (3.0, "<=")),
        ({"valueString": "1.3"}, (1.3, None)),
        ({"valueString": "n/a"}, None),
        ({"valueBoolean": True}, None),
        ({"valueCodeableConcept": {"text": "ratio 2.4"}}, (2.4, None)),
    ],
)
def test_read_bound(value, bound):
    assert read_bound(value, TS) == bound


@pytest.mark.parametrize(
    "value, score, by_text",
    [
        ({"valueCodeableConcept": b.cc(b.LOCAL, "score-2")}, 2, False),
        ({"valueCodeableConcept": b.cc(b.LOINC, "LA11843-2", "3+")}, 3, False),
        ({"valueCodeableConcept": b.cc(rw.CAP, "40505.100004300", "Negative (Score 0)")}, 0, False),
        ({"valueInteger": 1}, 1, False),
        ({"valueQuantity": {"value": 2}}, 2, False),
        ({"valueInteger": 4}, None, False),
        ({"valueQuantity": {"value": 1, "comparator": "<"}}, None, False),
        ({"valueString": "Score 1+"}, 1, True),
        ({"valueString": "HER2 (1+)"}, 1, True),
    ],
)
def test_ihc_score_sources(value, score, by_text):
    obs = b.her2_ihc(value)
    cur = current(obs)
    assert (cur.ihc if cur else None) == score
    if cur:
        assert cur.by_text is by_text


def test_coded_score_beats_contradicting_words():
    value = {
        "valueCodeableConcept": {
            "coding": [{"system": b.LOCAL, "code": "score-1", "display": "2+"}],
            "text": "Score 1+",
        }
    }
    assert current(b.her2_ihc(value)).ihc == 1


def test_ish_call_by_code_words_and_binary():
    assert current(b.her2_ish(None) | {"valueCodeableConcept": b.cc(b.LOCAL, "ish-amplified")}).ish == "amplified"
    assert current(b.her2_ish(None) | {"valueCodeableConcept": b.cc(b.SCT, "260385009")}).ish == "not-amplified"
    assert current(b.her2_ish(None) | {"valueCodeableConcept": b.cc(b.SCT, "10828004")}).ish == "amplified"
    assert current(b.her2_ish(None) | {"valueCodeableConcept": b.cc(b.SCT, "42425007")}).ish == "equivocal"
    words = current(b.her2_ish("no amplification detected"))
    assert words.ish == "not-amplified" and words.by_text
    assert current(b.her2_ish("Positive")).ish == "amplified"


def test_ihc_text_with_ish_statement_and_stated_category():
    assert current(b.her2_ihc({"valueString": "negative; FISH not amplified"})).ish == "not-amplified"
    stated = current(b.her2_ihc({"valueString": "HER2-low"}))
    assert stated.category == "low" and stated.by_text
    assert "category HER2-low as stated in the report; no score recorded" in stated.notes


def test_notes_membrane_statement_is_read_for_ihc_0():
    obs = b.her2_ihc(0, note=[{"text": "Faint incomplete membrane staining in <10% of tumour cells."}])
    cur = current(obs)
    assert cur.category == "ultralow" and cur.by_text
    obs = b.her2_ihc(0, note=[{"text": "faint staining in 4% of cells"}])
    assert current(obs).membrane_pct == 4


def test_interpretation_codes_without_value():
    code = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    pos = b.her2_interpretation("x") | {"interpretation": [b.cc(code, "POS")]}
    del pos["valueCodeableConcept"]
    assert current(pos).category == "positive"
    neg = b.her2_interpretation("x") | {"interpretation": [b.cc(code, "N")]}
    del neg["valueCodeableConcept"]
    assert current(neg).category == "binary-only"


def test_copy_numbers_given_as_words_and_bounds():
    her2 = b.observation(
        b.cc(b.LOINC, "74860-8"), "2025-06-05", valueString="5.2", specimen={"reference": "Specimen/s1"}
    )
    cep = b.observation(b.cc(b.LOINC, "74861-6"), "2025-06-05", valueString="3", specimen={"reference": "Specimen/s1"})
    cur = current(her2, cep, b.her2_ihc(2, "2025-06-01", specimen="s1"))
    assert (cur.copy_number, cur.ratio, cur.ish_group, cur.category) == (5.2, 1.73, 4, "low")
    assert "HER2/CEP17 ratio 1.73 computed from the copy numbers" in cur.notes
    bounded = b.observation(
        b.cc(b.LOINC, "74860-8"), "2025-06-05", valueString="<4", specimen={"reference": "Specimen/s1"}
    )
    assert current(bounded, b.her2_ihc(2, "2025-06-01", specimen="s1")).copy_number is None


def test_ratio_without_copies_and_a_negative_interpretation_with_ihc_2_stays_open():
    found = categorise(result(ihc=2, binary="negative", ratio=1.5))
    assert found.category == "indeterminate" and found.ish == "equivocal"
