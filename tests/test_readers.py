"""The readers one value shape at a time, with the exact evidence text a card shows (the words an
oncologist reads are part of the result)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.facts.evidence import Evidence
from cds_service.facts.ild_risk import Egfr, latest_egfr
from cds_service.facts.receptors import positive_at, read_receptor
from cds_service.facts.setting import stage_reading
from cds_service.facts.therapy import duration_days
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b
from .fixtures import realworld as rw

TS = load_terminology()
TODAY = date(2026, 11, 25)
ER = b.cc(b.LOINC, "85337-4", "Estrogen receptor Ag [Presence] in Breast cancer specimen by Immune stain")


def facts(*resources):
    return derive(list(resources), TS, TODAY)


def er(**value):
    return b.observation(ER, "2024-02-01", id="er1", **value)


# --- receptors
@pytest.mark.parametrize(
    "value, positive, label",
    [
        ({"valueCodeableConcept": b.cc(b.SCT, "10828004", "Positive")}, True, "ER positive"),
        ({"valueCodeableConcept": b.cc(b.SCT, "260385009", "Negative")}, False, "ER negative"),
        ({"valueCodeableConcept": {"text": "Negative"}}, False, "ER negative"),
        ({"valueCodeableConcept": {"text": "Positive"}}, True, "ER positive"),
        ({"valueString": "negative"}, False, "ER negative"),
        ({"valueString": "positive"}, True, "ER positive"),
        ({"valueString": "<1%"}, False, "ER negative (<1%)"),
        ({"valueString": "0%"}, False, "ER negative (0%)"),
        ({"valueString": "95%"}, True, "ER positive (95%)"),
        ({"valueString": "≥ 1%"}, True, "ER positive (>=1%)"),
        ({"valueQuantity": {"value": 0.5, "unit": "%"}}, False, "ER negative (0.5%)"),
        ({"valueQuantity": {"value": 1, "unit": "%", "comparator": "<"}}, False, "ER negative (<1%)"),
        ({"valueQuantity": {"value": 40, "code": "%"}}, True, "ER positive (40%)"),
        (
            {"valueCodeableConcept": {**b.cc(b.SCT, "10828004", "Positive"), "text": "Positive (80%)"}},
            True,
            "ER positive (80%)",
        ),
        (
            {"valueCodeableConcept": {**b.cc(b.SCT, "260385009", "Negative"), "text": "Negative (5%)"}},
            False,
            "ER negative (5%) [the percentage 5% disagrees with the coded negative result; the coded result is used]",
        ),
        (
            {"valueCodeableConcept": {**b.cc(b.SCT, "10828004", "Positive"), "text": "Positive (<1%)"}},
            True,
            "ER positive (<1%) [the percentage <1% disagrees with the coded positive result; the coded result is used]",
        ),
        (
            {"interpretation": [b.cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS")]},
            True,
            "ER positive",
        ),
        (
            {"interpretation": [b.cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "NEG")]},
            False,
            "ER negative",
        ),
    ],
)
def test_receptor_value_shapes(value, positive, label):
    r = read_receptor(er(**value), "ER", TS)
    assert r.positive is positive and r.receptor == "ER"
    assert r.evidence == Evidence("Observation/er1", date(2024, 2, 1), label)


def test_unreadable_receptor_is_none_and_said():
    assert read_receptor(er(valueString="see report"), "ER", TS) is None
    assert read_receptor(er(valueString="<5%"), "ER", TS) is None  # under 5 %: ≥1 % or not cannot be told
    hr = facts(er(valueString="see report")).hr
    assert hr.status == "unknown"
    assert hr.notes == [
        "Observation/er1: ER result could not be read",
        "no readable ER or PR result: hormone-receptor status unknown",
    ]


def test_percent_component_is_read():
    obs = er(component=[{"code": {"text": "ER % nuclei"}, "valueQuantity": {"value": 30, "unit": "%"}}])
    assert read_receptor(obs, "ER", TS).evidence.text == "ER positive (30%)"


@pytest.mark.parametrize(
    "pct, cmp, positive",
    [
        (1, None, True),
        (0.99, None, False),
        (1, "<", False),
        (1.5, "<", None),
        (0.5, "<=", False),
        (1, "<=", None),
        (1, ">", True),
        (0.5, ">", None),
        (1, ">=", True),
        (0.5, ">=", None),
    ],
)
def test_positive_at_comparators(pct, cmp, positive):
    assert positive_at(pct, cmp) is positive


def test_latest_receptor_result_wins_and_er_low_is_said():
    old = b.receptor("ER", "negative", "2020-01-01")
    new = b.receptor("ER", 5, "2024-01-01")
    hr = facts(old, new, b.receptor("PR", 0, "2024-01-01")).hr
    assert hr.status == "positive" and hr.er.percent == 5
    assert hr.notes == ["ER-low (5%): counted as HR-positive; endocrine sensitivity may be limited"]


def test_hr_negative_needs_both():
    assert facts(b.receptor("ER", 0)).hr.status == "unknown"
    assert facts(b.receptor("ER", 0)).hr.notes == ["no readable PR result: hormone-receptor status unknown"]
    assert facts(b.receptor("ER", 0), b.receptor("PR", 0)).hr.status == "negative"


def test_combined_er_pr_stands_for_both_only_when_neither_is_reported():
    both = b.observation(b.cc(b.LOINC, "10480-2"), "2024-01-01", valueCodeableConcept=b.cc(b.SCT, "10828004"))
    hr = facts(both).hr
    assert hr.status == "positive" and hr.er is hr.pr
    assert "ER and PR reported as one result (ER+PR)" in hr.notes
    assert len(hr.evidence()) == 1
    alone = facts(both, b.receptor("ER", 0), b.receptor("PR", 0)).hr
    assert alone.status == "negative"  # separate ER and PR results are more specific


# --- staging words and codes
@pytest.mark.parametrize(
    "cc, reading",
    [
        (b.cc("http://cancerstaging.org", "4B", "IVB"), "distant"),
        (b.cc("http://cancerstaging.org", "3C"), "none"),
        (b.cc(b.SCT, "1229901006"), "none"),
        (b.cc(b.SCT, "55440008"), "distant"),
        ({"text": "Stage IV"}, "distant"),
        ({"text": "stage 4"}, "distant"),
        ({"text": "IVA"}, "distant"),
        ({"text": "cM1"}, "distant"),
        ({"text": "pM1a"}, "distant"),
        ({"text": "M1"}, "distant"),
        ({"text": "cM0"}, "none"),
        ({"text": "Stage IIB"}, "none"),
        ({"text": "IIIA"}, "none"),
        ({"text": "Stage 0"}, "none"),
        ({"text": "American Joint Committee on Cancer cM0 (qualifier value)"}, "none"),
        ({"text": "American Joint Committee on Cancer stage IV (qualifier value)"}, "distant"),
        ({"text": "cM0(i+)"}, "none"),
        ({"text": "T4 N2 M0"}, "none"),
        ({"text": "not assessed"}, None),
        ({"text": "MX"}, None),
        (None, None),
        ({"coding": [{"system": "http://cancerstaging.org", "code": "99", "display": "Stage IV"}]}, "distant"),
    ],
)
def test_stage_reading(cc, reading):
    assert stage_reading(cc, TS) == reading


def test_stage_evidence_text():
    s = facts(rw.stage_group("4A", "IVA", "2024-02-01")).setting
    assert [e.text for e in s.evidence] == ["stage IV / M1 staging (Stage group.clinical Cancer: IVA)"]
    four = {"coding": [{"system": "http://cancerstaging.org", "code": "4"}]}
    s = facts(b.observation(b.cc(b.LOINC, "21908-9"), "2024-02-01", valueCodeableConcept=four)).setting
    assert [e.text for e in s.evidence] == ["stage IV / M1 staging (loinc.org|21908-9: cancerstaging.org|4)"]


# --- eGFR
@pytest.mark.parametrize(
    "value, cmp, threshold, below",
    [
        (59, None, 60, True),
        (60, None, 60, False),
        (61, None, 60, False),
        (60, ">", 60, False),
        (90, ">", 60, False),
        (30, ">", 60, None),
        (59, ">=", 60, None),
        (60, ">=", 60, False),
        (30, "<", 60, True),
        (60, "<", 60, True),
        (90, "<", 60, None),
        (60, "<=", 60, True),
        (61, "≤", 60, None),
        (60, "≥", 60, False),
    ],
)
def test_egfr_below(value, cmp, threshold, below):
    assert Egfr(value, cmp, Evidence("Observation/e", None, "eGFR")).below(threshold) is below


def test_latest_egfr_reading_and_text():
    old = b.observation(b.cc(b.LOINC, "33914-3"), "2024-01-01", valueQuantity={"value": 40, "unit": "mL/min"})
    new = b.observation(b.cc(b.LOINC, "33914-3"), "2025-01-01", id="eg2", valueString=">60")
    bad = b.observation(b.cc(b.LOINC, "33914-3"), "2026-01-01", valueString="pending")
    egfr = latest_egfr([old, new, bad])
    assert (egfr.value, egfr.comparator) == (60, ">")
    assert egfr.evidence == Evidence("Observation/eg2", date(2025, 1, 1), "eGFR >60 mL/min/1.73 m2")
    assert latest_egfr([old]).evidence.text == "eGFR 40 mL/min"
    assert latest_egfr([bad]) is None


# --- refill durations and request periods
@pytest.mark.parametrize(
    "duration, days",
    [
        ({"value": 30, "code": "d"}, 30),
        ({"value": 2, "code": "wk"}, 14),
        ({"value": 3, "unit": "months"}, 90),
        ({"value": 1, "code": "a"}, 365),
        ({"value": 1, "unit": "Week"}, 7),
        ({"value": 0, "code": "d"}, None),
        ({"value": 5, "code": "h"}, None),
        ({"value": "30", "code": "d"}, None),
        (None, None),
        ({"code": "d"}, None),
    ],
)
def test_supply_duration_in_days(duration, days):
    assert duration_days(duration) == days


def _line(*resources):
    [line] = facts(b.breast_cancer("2020-01-01"), *resources).therapy.lines
    return line


def test_request_periods():
    mr = b.med_request("letrozole", "2024-01-10", status="completed")
    mr["dispenseRequest"] = {"validityPeriod": {"start": "2024-01-15", "end": "2024-07-15"}}
    line = _line(mr)
    assert (line.start, line.end) == (date(2024, 1, 10), date(2024, 7, 15))
    mr = b.med_request("letrozole", "2024-01-10", status="completed", end="2024-05-01")
    line = _line(mr)
    assert (line.start, line.end) == (date(2024, 1, 10), date(2024, 5, 1))
    no_authored = b.med_request("letrozole", "2024-01-10", status="completed")
    del no_authored["authoredOn"]
    no_authored["dispenseRequest"] = {"validityPeriod": {"start": "2024-02-01", "end": "2024-03-01"}}
    assert (_line(no_authored).start, _line(no_authored).end) == (date(2024, 2, 1), date(2024, 3, 1))


@pytest.mark.parametrize("repeats, end", [(0, date(2024, 1, 31)), (2, date(2024, 3, 31)), (None, date(2024, 1, 31))])
def test_refill_repeats(repeats, end):
    mr = rw.refill("letrozole", "2024-01-01", days=30)
    if repeats is None:
        del mr["dispenseRequest"]["numberOfRepeatsAllowed"]
    else:
        mr["dispenseRequest"]["numberOfRepeatsAllowed"] = repeats
    assert _line(mr).end == end


def test_administration_is_one_day_and_statement_without_end_is_open():
    assert _line(b.administration("paclitaxel", "2024-03-01")).end == date(2024, 3, 1)
    line = _line(b.med_statement("letrozole", "2024-03-01", status="completed"))
    assert line.end is None and line.notes == ["end date not recorded"]
    assert line.outcome == "ended-reason-unknown"


def test_ongoing_line_has_no_end_and_no_note():
    line = _line(b.med_statement("letrozole", "2024-03-01"))
    assert line.ongoing and line.end is None and line.notes == [] and line.outcome == "ongoing"


def test_line_describe():
    line = _line(b.med_statement("letrozole", "2024-03-01", "2025-01-01", status="stopped", reason="progression"))
    assert line.describe() == (
        "letrozole (2024-03-01 to 2025-01-01, early setting): progressed — stopped for "
        "progression: Absent response to treatment (sct|266721009) (2025-01-01; "
        f"{line.refs[0]})"
    )
    tox = _line(b.med_statement("letrozole", "2024-03-01", "2025-01-01", status="stopped", reason="toxicity"))
    assert tox.describe() == (
        "letrozole (2024-03-01 to 2025-01-01, early setting): stopped for toxicity (not progression)"
    )
    assert tox.outcome == "stopped-toxicity"


def test_drug_matched_by_text_is_said():
    rec = facts(b.med_statement("letrozole", "2024-03-01", by="text")).therapy.lines[0]
    assert rec.drugs == ["letrozole"]


def test_drug_named_in_free_text_is_said_on_the_line():
    [line] = facts(b.med_statement("letrozole", "2024-03-01", by="text")).therapy.lines
    assert line.notes == ["drug named in free text, not coded: letrozole"]
    assert line.describe().endswith("[drug named in free text, not coded: letrozole]")


def test_line_refs_name_the_records():
    ms = b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped", reason="progression")
    [line] = facts(ms).therapy.lines
    assert line.refs == [f"MedicationStatement/{ms['id']}"]
    assert line.progression[0].ref == f"MedicationStatement/{ms['id']}"


def test_request_dosage_bounds_start_and_reason_codes():
    mr = b.med_request("letrozole", "2024-01-10", status="stopped", end="2024-06-01")
    mr["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] = "2024-02-01"
    mr["reasonCode"] = [b.cc(b.SCT, "271299001", "Patient's condition worsened")]
    [line] = facts(mr).therapy.lines
    assert (line.start, line.end, line.outcome) == (date(2024, 2, 1), date(2024, 6, 1), "progressed")
    assert line.progression[0].text == "stopped for progression: Patient's condition worsened (sct|271299001)"


@pytest.mark.parametrize("gap, lines", [(90, 1), (91, 2)])
def test_episode_gap_boundary(gap, lines):
    second = date.fromordinal(date(2024, 3, 1).toordinal() + gap).isoformat()
    f = facts(
        b.med_statement("letrozole", "2024-01-01", "2024-03-01", status="completed"),
        b.med_statement("letrozole", second, "2024-12-01", status="completed"),
    )
    assert len(f.therapy.lines) == lines


def test_toxicity_counts_only_when_it_ended_the_line():
    early_tox = facts(
        b.med_statement("letrozole", "2020-01-01", "2024-01-01", status="completed"),
        b.med_statement("abemaciclib", "2020-01-01", "2022-01-01", status="stopped", reason="toxicity"),
    )
    assert early_tox.therapy.lines[0].outcome == "ended-reason-unknown"
    last_tox = facts(
        b.med_statement("letrozole", "2020-01-01", "2022-01-01", status="completed"),
        b.med_statement("abemaciclib", "2020-01-01", "2024-01-01", status="stopped", reason="toxicity"),
    )
    assert last_tox.therapy.lines[0].outcome == "stopped-toxicity"


def test_receptor_latest_by_date_whatever_the_order_and_er_low_boundary():
    new, old = b.receptor("ER", "positive", "2024-01-01"), b.receptor("ER", "negative", "2020-01-01")
    assert facts(new, old, b.receptor("PR", 0)).hr.status == "positive"
    assert facts(b.receptor("ER", 11), b.receptor("PR", 0)).hr.notes == []
    assert facts(b.receptor("ER", 10), b.receptor("PR", 0)).hr.notes[0].startswith("ER-low (10%)")


def test_combined_result_is_not_used_when_one_receptor_is_reported():
    both = b.observation(b.cc(b.LOINC, "10480-2"), "2024-01-01", valueCodeableConcept=b.cc(b.SCT, "10828004"))
    hr = facts(both, b.receptor("ER", "negative")).hr
    assert hr.status == "unknown" and hr.pr is None
    assert facts(both).hr.er.evidence.text == "ER+PR positive"


def test_condition_recorded_date_and_codes_without_words():
    cond = b.condition({"coding": [{"system": b.ICD, "code": "C78.7"}]}, None, recordedDate="2023-05-01")
    s = facts(cond).setting
    assert s.start == date(2023, 5, 1)
    assert s.evidence[0].text == "metastatic disease: C78.7"
    regional = b.condition({"coding": [{"system": b.ICD, "code": "C77.3"}]}, "2023-05-01", id="rx")
    assert facts(regional).setting.notes[0].startswith("Condition/rx (icd-10-cm|C77.3): regional")
