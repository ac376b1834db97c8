"""Pathology reports, lymph-node regions, progression windows and ILD attribution, each reader on its own."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.fhir.pathology import (
    conclusion_statements,
    report_member_set,
    result_refs,
    statements,
    with_report_context,
)
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b
from .fixtures import realworld as rw

TS = load_terminology()
TODAY = date(2026, 11, 25)


def facts(*resources):
    return derive(list(resources), TS, TODAY)


# --- pathology reports
@pytest.mark.parametrize(
    "words, kind",
    [
        ("HER2 IHC", "her2-ihc"),
        ("HER-2/neu", "her2-ihc"),
        ("c-erbB-2 immunostain", "her2-ihc"),
        ("HER2 FISH", "her2-ish"),
        ("HER2 in situ hybridisation", "her2-ish"),
        ("ERBB2 amplification", "her2-ish"),
        ("HER2/CEP17 ratio", "her2-ish-ratio"),
        ("HER2 FISH signals per nucleus", "her2-ish-copy-number"),
        ("CEP17 copies per nucleus", "her2-cep17-copy-number"),
        ("Estrogen receptor", "er"),
        ("ER", "er"),
        ("Oestrogen receptor %", "er"),
        ("PR", "pr"),
        ("PgR", "pr"),
        ("Progesterone receptors", "pr"),
        ("Ki-67", None),
        ("Tumour size", None),
        ("Margins", None),
    ],
)
def test_report_member_kind_from_words(words, kind):
    assert report_member_set(rw.local_result(words, {"valueString": "x"}, "2025-01-01")) == kind


def test_report_member_kind_from_a_local_code_without_display():
    obs = b.observation({"coding": [{"system": "urn:oid:9.9", "code": "HER2-IHC"}]}, "2025-01-01", valueString="1+")
    assert report_member_set(obs) == "her2-ihc"


def test_result_refs_read_relative_absolute_and_versioned_references():
    rep = {
        "result": [
            {"reference": "Observation/a"},
            {"reference": "https://fhir.example.org/r4/Observation/b"},
            {"reference": "Observation/c/_history/2"},
            {"reference": "Specimen/s"},
            {"display": "x"},
            "bad",
        ]
    }
    assert result_refs(rep) == ["Observation/a", "Observation/b", "Observation/c"]


def test_report_context_fills_specimen_and_date_only_when_missing():
    rep = {
        "id": "r1",
        "specimen": [{"reference": "Specimen/s1"}, {"reference": "Specimen/s2"}],
        "effectiveDateTime": "2025-04-01",
        "issued": "2025-04-03T00:00:00Z",
    }
    bare = {"resourceType": "Observation", "id": "o"}
    assert with_report_context(bare, rep) == {
        "resourceType": "Observation",
        "id": "o",
        "_report": "r1",
        "specimen": {"reference": "Specimen/s1"},
        "effectiveDateTime": "2025-04-01",
        "issued": "2025-04-03T00:00:00Z",
    }
    own = {
        "resourceType": "Observation",
        "id": "o",
        "specimen": {"reference": "Specimen/own"},
        "effectiveDateTime": "2025-03-30",
    }
    assert with_report_context(own, rep) == {**own, "_report": "r1"}
    assert bare == {"resourceType": "Observation", "id": "o"}  # never modified in place


@pytest.mark.parametrize(
    "text, found",
    [
        (
            "ER positive (95%), PR negative (<1%), HER2 1+",
            [("er", "ER positive (95%)"), ("pr", "PR negative (<1%)"), ("her2-ihc", "HER2 1+")],
        ),
        ("HER2: IHC 0 (ultralow). Ki-67 20%.", [("her2-ihc", "HER2: IHC 0 (ultralow)")]),
        (
            "Estrogen receptor: positive; progesterone receptor: negative",
            [("er", "Estrogen receptor: positive"), ("pr", "progesterone receptor: negative")],
        ),
        ("HER2 status pending", [("her2-ihc", "HER2 status pending")]),
        ("HER2\\nER", []),
        ("Invasive ductal carcinoma, grade 2.", []),
    ],
)
def test_statements_in_free_text(text, found):
    assert statements(text.replace("\\n", "\n")) == found


def test_conclusion_statements_shape():
    rep = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "effectiveDateTime": "2025-04-01",
        "specimen": [{"reference": "Specimen/s1"}],
        "conclusion": "HER2 2+, FISH not amplified. ER 90%.",
        "conclusionCode": [{"text": "PR negative"}],
    }
    readings = conclusion_statements(rep, set())
    assert [k for k, _ in readings] == ["her2-ihc", "er", "pr"]
    her2 = readings[0][1]
    assert her2 == {
        "resourceType": "Observation",
        "id": "r1-her2-ihc",
        "_ref": "DiagnosticReport/r1",
        "_report": "r1",
        "_from_text": True,
        "status": "final",
        "code": {"text": "HER2 (pathology report conclusion)"},
        "valueString": "HER2 2+, FISH not amplified",
        "effectiveDateTime": "2025-04-01",
        "specimen": {"reference": "Specimen/s1"},
    }
    assert readings[2][1]["code"] == {"text": "PR (pathology report conclusion)"}
    assert [k for k, _ in conclusion_statements(rep, {"her2-ish", "er"})] == ["pr"]
    assert conclusion_statements({**rep, "conclusion": None, "conclusionCode": []}, set()) == []
    first_only = {**rep, "conclusion": "HER2 1+. HER2 3+ on recut.", "conclusionCode": []}
    assert [o["valueString"] for _, o in conclusion_statements(first_only, set())] == ["HER2 1+"]


def test_conclusion_read_through_the_whole_path():
    rep = rw.pathology_report([], "2025-04-01", conclusion="HER2 2+, FISH not amplified (ratio 1.3).")
    cur = facts(rep).her2.current
    assert cur.category == "low" and cur.by_text and cur.refs == ["DiagnosticReport/path-1"]


def test_only_pathology_reports_are_read():
    lab = {
        **rw.pathology_report([], "2025-04-01", conclusion="HER2 3+"),
        "category": [b.cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
        "code": b.cc(b.LOINC, "58410-2", "CBC panel"),
    }
    assert facts(lab).her2.current is None
    by_code = {**lab, "code": b.cc(b.LOINC, "22637-3", "Pathology report final diagnosis Narrative")}
    assert facts(by_code).her2.category == "positive"


def test_cancelled_report_and_its_members_are_not_read_as_report_members():
    her2 = rw.local_result("c-erbB-2 immunostain", {"valueString": "1+"}, "2025-04-01")  # no value set names it
    rep = rw.pathology_report([her2], "2025-04-01")
    assert facts(rep, her2).her2.category == "low"
    f = facts({**rep, "status": "cancelled"}, her2)
    assert f.her2.current is None and "DiagnosticReport/path-1 ignored (status cancelled)" in f.data_notes


# --- lymph-node regions
@pytest.mark.parametrize(
    "condition, metastatic",
    [
        ({"code": b.cc(b.ICD, "C77.3")}, False),
        ({"code": b.cc(b.ICD, "C77.2")}, True),
        ({"code": b.cc(b.ICD, "C77.9")}, False),
        (
            {
                "code": b.cc(b.ICD, "C77.9", "Secondary malignant neoplasm of lymph node, unspecified"),
                "bodySite": [{"text": "mediastinal lymph nodes"}],
            },
            True,
        ),
        ({"code": b.cc(b.ICD, "C77.0"), "bodySite": [{"text": "left supraclavicular node"}]}, False),
        (
            {
                "code": b.cc(b.SCT, "128462008", "Secondary malignant neoplastic disease"),
                "bodySite": [b.cc(b.SCT, "68171009", "Axillary lymph node structure")],
            },
            False,
        ),
        (
            {
                "code": b.cc(b.SCT, "128462008", "Secondary malignant neoplastic disease"),
                "bodySite": [{"text": "internal mammary nodes"}],
            },
            False,
        ),
        (
            {
                "code": b.cc(b.SCT, "128462008", "Secondary malignant neoplastic disease"),
                "bodySite": [b.cc(b.SCT, "10200004", "Liver structure")],
            },
            True,
        ),
        ({"code": {"text": "metastasis to cervical lymph nodes"}}, True),
        ({"code": {"text": "nodal metastases"}}, False),
        ({"code": {"text": "liver metastases"}}, True),
    ],
)
def test_lymph_node_region(condition, metastatic):
    cond = b.condition(condition["code"], "2024-01-01")
    if "bodySite" in condition:
        cond["bodySite"] = condition["bodySite"]
    s = facts(cond).setting
    assert s.metastatic is metastatic
    if not metastatic:
        assert any(cond["id"] in n for n in s.notes)


def test_region_notes_say_which():
    s = facts(b.condition(b.cc(b.ICD, "C77.3", "Axillary node metastasis"), "2024-01-01", id="cx")).setting
    assert f"{s.notes[0]}".endswith(
        "(Axillary node metastasis): regional lymph-node disease (N category), not distant metastasis"
    )
    s = facts(b.condition(b.cc(b.ICD, "C77.9", "Node metastasis"), "2024-01-01")).setting
    assert s.notes[0].endswith(
        "(Node metastasis): lymph-node metastasis whose region (regional or distant) is not "
        "recorded; not counted as distant metastasis"
    )


def test_distant_sites_and_keys():
    s = facts(
        b.metastasis("liver", "2024-01-01"), b.metastasis("icd-liver", "2024-06-01"), b.metastasis("bone", "2024-03-01")
    ).setting
    assert [(m.site, m.onset) for m in s.distant] == [
        ("liver", date(2024, 1, 1)),
        ("liver", date(2024, 6, 1)),
        ("bone", date(2024, 3, 1)),
    ]
    cond = b.condition(b.cc(b.SCT, "128462008", "Secondary malignant neoplastic disease"), "2024-01-01")
    cond["bodySite"] = [b.cc(b.SCT, "10200004", "Liver structure")]
    assert facts(cond).setting.distant[0].site == "liver"
    assert s.start == date(2024, 1, 1)
    assert s.evidence[0].text == "metastatic disease: Secondary malignant neoplasm of liver"


# --- progression windows (DESIGN §6.3)
def lines(*resources):
    return facts(b.breast_cancer("2018-01-01"), b.metastasis("bone", "2020-01-01"), *resources).therapy.lines


@pytest.mark.parametrize(
    "when, progressed",
    [
        ("2021-01-01", True),  # the day the line started
        ("2020-12-31", False),  # before it
        ("2022-03-31", True),  # 90 days after the end
        ("2022-04-01", False),  # 91 days after
    ],
)
def test_progression_window_of_a_finished_line(when, progressed):
    [ln] = lines(
        b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped"),
        b.disease_status("progression", when),
    )
    assert (ln.outcome == "progressed") is progressed


def test_progression_after_the_next_line_of_the_same_class_belongs_to_it():
    first, second = lines(
        b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped"),
        b.med_statement("fulvestrant", "2022-02-01", "2023-01-01", status="stopped"),
        b.disease_status("progression", "2022-02-01"),
        b.disease_status("progression", "2022-12-20"),
    )
    assert [e.when for e in first.progression] == [date(2022, 2, 1)]  # the day the next line began
    assert [e.when for e in second.progression] == [date(2022, 12, 20)]


def test_a_line_of_another_class_does_not_cap_the_window():
    et, chemo = lines(
        b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped"),
        b.med_statement("capecitabine", "2022-01-10", "2022-06-01", status="stopped"),
        b.disease_status("progression", "2022-02-15"),
    )
    assert et.outcome == "progressed" and chemo.outcome == "progressed"


@pytest.mark.parametrize("after_start, belongs_to_new", [(30, False), (31, True)])
def test_progression_just_after_a_switch_belongs_to_the_previous_line(after_start, belongs_to_new):
    first, second = lines(
        b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped"),
        b.med_statement("capecitabine", "2022-01-01"),
        b.disease_status("progression", date.fromordinal(date(2022, 1, 1).toordinal() + after_start).isoformat()),
    )
    assert first.outcome == "progressed"
    assert (second.outcome == "progressed") is belongs_to_new


def test_open_ended_and_ongoing_lines():
    [ended] = lines(
        b.med_statement("letrozole", "2021-01-01", status="completed"), b.disease_status("progression", "2021-06-01")
    )
    assert ended.outcome == "ended-reason-unknown" and ended.progression == []
    [ongoing] = lines(b.med_statement("letrozole", "2021-01-01"), b.disease_status("progression", "2025-06-01"))
    assert ongoing.outcome == "progressed"


def test_stop_reason_progression_evidence():
    [ln] = lines(b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped", reason="progression"))
    [ev] = ln.progression
    assert (ev.ref, ev.when) == (ln.refs[0], date(2021, 12, 31))
    assert ev.text == "stopped for progression: Absent response to treatment (sct|266721009)"


def test_new_metastasis_evidence_text_and_window():
    [ln] = lines(
        b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped"), b.metastasis("liver", "2022-03-31")
    )
    assert [e.text for e in ln.progression] == ["new distant metastasis: liver"]
    [late] = lines(
        b.med_statement("letrozole", "2021-01-01", "2021-12-31", status="stopped"), b.metastasis("liver", "2022-04-01")
    )
    assert late.outcome == "ended-reason-unknown"


def test_recurrence_during_adjuvant_endocrine_therapy_is_its_progression():
    [ln] = facts(
        b.breast_cancer("2018-01-01"),
        b.med_statement("letrozole", "2018-03-01", "2020-06-01", status="stopped"),
        b.metastasis("bone", "2020-01-01"),
    ).therapy.lines
    assert ln.setting == "early" and ln.outcome == "progressed"


# --- ILD attribution and grade
def ild_facts(*resources):
    return facts(
        b.administration("fam-trastuzumab deruxtecan", "2025-01-01"),
        b.administration("fam-trastuzumab deruxtecan", "2025-01-22"),
        *resources,
    ).ild


@pytest.mark.parametrize(
    "text, severity, grade",
    [
        ("Pneumonitis, grade 3", None, 3),
        ("Pneumonitis", b.cc(b.SCT, "24484000", "Severe"), 3),
        ("Pneumonitis", {"text": "CTCAE grade 2"}, 2),
        ("ILD", None, None),
    ],
)
def test_ild_grade(text, severity, grade):
    extra = {"severity": severity} if severity else {}
    risk = ild_facts(b.ild("2025-02-01", text, **extra))
    assert risk.prior_ild[0].text.startswith(text)
    assert (
        risk.prior_ild[0].text.endswith(f", grade {grade}; onset 2025-02-01 during T-DXd exposure (from 2025-01-01)")
        if grade
        else risk.notes == [f"{risk.prior_ild[0].ref}: T-DXd-associated ILD/pneumonitis without a recorded grade"]
    )


def test_ild_named_as_caused_by_tdxd_outside_exposure():
    risk = facts(b.ild("2020-01-01", "Pneumonitis due to Enhertu, grade 2")).ild
    assert risk.prior_ild[0].text == "Pneumonitis due to Enhertu, grade 2; attributed to T-DXd in the record"
    assert risk.tdxd_ild_grade2plus


def test_unrelated_ild_is_a_risk_factor_not_tdxd_ild():
    risk = facts(b.ild("2020-01-01", "Interstitial lung disease, grade 2")).ild
    assert risk.prior_ild[0].text == "Interstitial lung disease, grade 2"
    assert not risk.tdxd_ild_grade2plus and risk.factors == risk.prior_ild


@pytest.mark.parametrize(
    "procedure, thoracic",
    [
        (b.procedure(b.cc(b.SCT, "108290001", "Radiotherapy"), "2020-01-01", body_site="left breast"), True),
        (b.procedure(b.cc(b.SCT, "108290001", "Radiotherapy"), "2020-01-01", body_site="pelvis"), False),
        (b.procedure({"text": "SBRT to lung nodule"}, "2020-01-01"), True),
        (b.procedure(b.cc(b.SCT, "108290001", "Radiotherapy"), "2020-01-01"), False),
    ],
)
def test_thoracic_radiotherapy(procedure, thoracic):
    risk = facts(procedure).ild
    assert bool(risk.thoracic_rt) is thoracic
    if not procedure.get("bodySite") and not thoracic:
        assert risk.notes == [
            f"Procedure/{procedure['id']}: radiotherapy without a body site: thoracic or not cannot be told"
        ]


def test_renal_condition_is_a_factor_with_its_label():
    risk = facts(b.condition(b.cc(b.ICD, "N18.4", "Chronic kidney disease, stage 4"), "2023-01-01")).ild
    assert [e.text for e in risk.renal] == ["reduced renal function: Chronic kidney disease, stage 4"]


# --- the remaining edges of the readers
def test_pathology_report_by_category_alone():
    rep = {**rw.pathology_report([], "2025-04-01", conclusion="HER2 1+"), "code": {"text": "Report"}}
    assert facts(rep).her2.category == "low"
    rep_code_only = {**rep, "category": [], "code": b.cc(b.LOINC, "11526-1", "Pathology study")}
    assert facts(rep_code_only).her2.category == "low"


def test_cep17_alone_is_not_a_her2_result():
    assert report_member_set(rw.local_result("CEP17 control", {"valueString": "x"}, "2025-01-01")) is None


def test_report_dates_copied_in_every_form():
    rep = {"id": "r1", "effectivePeriod": {"start": "2025-04-01"}, "issued": "2025-04-03T00:00:00Z"}
    assert with_report_context({"resourceType": "Observation"}, rep) == {
        "resourceType": "Observation",
        "_report": "r1",
        "effectivePeriod": {"start": "2025-04-01"},
        "issued": "2025-04-03T00:00:00Z",
    }
    for own in (
        {"effectivePeriod": {"start": "2025-01-01"}},
        {"effectiveInstant": "2025-01-01T00:00:00Z"},
        {"issued": "2025-01-02T00:00:00Z"},
    ):
        assert with_report_context({"resourceType": "Observation", **own}, rep) == {
            "resourceType": "Observation",
            **own,
            "_report": "r1",
        }


def test_conclusion_reading_dates_and_length():
    rep = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "effectivePeriod": {"start": "2025-04-01"},
        "issued": "2025-04-03T00:00:00Z",
        "conclusion": "HER2 " + "x" * 400,
    }
    [(_, reading)] = conclusion_statements(rep, set())
    assert reading["effectivePeriod"] == {"start": "2025-04-01"} and reading["issued"] == "2025-04-03T00:00:00Z"
    assert len(reading["valueString"]) == 300
    assert "specimen" not in reading
    assert [k for k, _ in conclusion_statements({**rep, "conclusion": "ER: ", "conclusionCode": []}, set())] == []


def test_unconfirmed_condition_note():
    cond = b.condition(
        b.cc(b.SCT, "94381002", "Secondary malignant neoplasm of liver"), "2024-01-01", verification="provisional"
    )
    f = facts(cond)
    assert not f.setting.metastatic
    assert f"Condition/{cond['id']} is provisional: said here, not counted" in f.data_notes


@pytest.mark.parametrize(
    "onset, associated", [("2025-01-01", True), ("2024-12-31", False), ("2025-04-23", True), ("2025-04-24", False)]
)
def test_exposure_window_edges(onset, associated):
    # doses 2025-01-01 and 2025-01-22: exposure to 91 days after the last dose (2025-04-23)
    risk = ild_facts(b.ild(onset, "Pneumonitis", severity=b.cc(b.SCT, "6736007", "Moderate")))
    assert bool(risk.tdxd_ild_grade2plus) is associated


def test_egfr_quantity_comparator_and_unicode_bounds():
    from cds_service.facts.evidence import Evidence
    from cds_service.facts.ild_risk import Egfr, latest_egfr

    obs = b.observation(
        b.cc(b.LOINC, "33914-3"),
        "2025-01-01",
        valueQuantity={"value": 60, "comparator": ">", "unit": "mL/min/{1.73_m2}"},
    )
    egfr = latest_egfr([obs])
    assert (egfr.value, egfr.comparator, egfr.evidence.text) == (60, ">", "eGFR >60 mL/min/{1.73_m2}")
    assert Egfr(30, "≥", Evidence("Observation/e", None, "x")).below(60) is None
    assert Egfr(30, "≤", Evidence("Observation/e", None, "x")).below(60) is True


def test_ctcae_graded_observation_is_an_ild_event():
    graded = b.observation(
        b.cc(b.SCT, "205237003", "Pneumonitis"), "2025-02-10", id="ae1", valueCodeableConcept={"text": "CTCAE grade 2"}
    )
    risk = ild_facts(b.ild("2025-02-01", "Pneumonitis"), graded)
    assert [e.text for e in risk.tdxd_ild_grade2plus] == [
        "Pneumonitis, grade 2; onset 2025-02-10 during T-DXd exposure (from 2025-01-01)"
    ]
    assert ild_facts(b.observation(b.cc(b.SCT, "205237003"), "2025-02-10", valueInteger=1)).tdxd_ild_grade2plus == []
    assert ild_facts(b.observation(b.cc(b.SCT, "205237003"), "2025-02-10", valueInteger=3)).tdxd_ild_grade2plus
    ungraded = ild_facts(b.observation(b.cc(b.SCT, "205237003"), "2025-02-10", valueInteger=0))
    assert ungraded.prior_ild == []


def test_ungraded_ild_outside_tdxd_says_nothing_about_grade():
    risk = facts(b.ild("2020-01-01", "Interstitial lung disease")).ild
    assert [e.text for e in risk.prior_ild] == ["Interstitial lung disease"]


def test_a_regional_node_does_not_hide_a_distant_site_recorded_after_it():
    s = facts(
        b.condition(b.cc(b.ICD, "C77.3", "Axillary nodes"), "2024-01-01"),
        b.condition(b.cc(b.ICD, "C77.9", "Nodes, region not said"), "2024-01-01"),
        b.metastasis("liver", "2024-02-01"),
    ).setting
    assert s.metastatic and s.start == date(2024, 2, 1) and len(s.notes) == 2


def test_setting_evidence_and_notes_word_for_word():
    s = facts(rw.breast_cancer_stage("4", "IV", "2024-02-01")).setting
    assert [e.text for e in s.evidence] == ["breast cancer, stage IV"]
    assert [e.text for e in s.breast_cancer] == ["breast cancer"]
    undated = b.metastasis("liver", None)
    s = facts(undated).setting
    assert s.metastatic and s.start is None
    assert s.notes == [
        "metastatic disease is recorded without a date: therapy lines cannot be placed before or after it"
    ]
    assert facts(b.breast_cancer("2024-01-01")).setting.notes == [
        "no record of metastatic disease (secondary malignancy, stage IV or M1)"
    ]
    text_met = b.condition({"text": "metastatic disease"}, "2024-01-01", id="tm")
    staged = rw.tnm_m("1229901006", "cM0", "2024-03-01")
    s = facts(text_met, staged).setting
    assert s.notes[0] == (
        f'Condition/tm (metastatic disease: "metastatic" (matched by text), 2024-01-01) is a '
        f"text-only statement; the newer staging Observation/{staged['id']} (cM category: cM0, "
        "2024-03-01) says no distant metastasis"
    )
    assert s.distant == []
    s = facts(text_met, rw.breast_cancer_stage("2A", "IIA", "2024-03-01")).setting
    assert not s.metastatic


def test_lung_metastasis_is_listed_for_ild_risk():
    s = facts(b.metastasis("lung", "2024-01-01")).setting
    assert [e.text for e in s.lung_metastases] == ["lung/pleural metastasis"]


# --- a metastatic biopsy after the latest HER2 result; T-DXd exposure; graded observations
def biopsy(when, site):
    return b.procedure(b.cc(b.SCT, "86273004", "Biopsy"), when, body_site=site)


@pytest.mark.parametrize(
    "her2_site, biopsy_day, biopsy_site, later",
    [
        ("left breast", "2024-03-01", "liver", True),
        ("left breast", "2022-01-01", "liver", False),  # same day as the HER2 result: not after it
        ("left breast", "2021-06-01", "liver", False),  # before it
        ("left breast", "2024-03-01", "left breast", False),
        ("liver", "2024-03-01", "bone", False),  # a metastatic sample already has a result
    ],
)
def test_later_metastatic_biopsy(her2_site, biopsy_day, biopsy_site, later):
    proc = biopsy(biopsy_day, biopsy_site)
    f = facts(b.her2_ihc(0, "2022-01-01", membrane="absent", site=her2_site), proc)
    if later:
        assert f.later_metastatic_biopsy.ref == f"Procedure/{proc['id']}"
        assert f.later_metastatic_biopsy.when == date(2024, 3, 1)
        assert f.later_metastatic_biopsy.text == "biopsy of a metastatic site after the latest HER2 result"
    else:
        assert f.later_metastatic_biopsy is None
    assert facts(proc).later_metastatic_biopsy is None  # no HER2 result at all


def test_tdxd_exposure_is_open_while_it_continues():
    ongoing = b.med_statement("fam-trastuzumab deruxtecan", "2025-01-01")
    risk = facts(ongoing, b.ild("2026-09-01", "Pneumonitis", severity=b.cc(b.SCT, "6736007"))).ild
    assert risk.tdxd_ild_grade2plus  # 20 months after the first dose, still on it
    stopped = b.med_statement("fam-trastuzumab deruxtecan", "2025-01-01", "2025-03-01", status="completed")
    moderate = b.cc(b.SCT, "6736007")
    assert not facts(stopped, b.ild("2026-09-01", "Pneumonitis", severity=moderate)).ild.tdxd_ild_grade2plus
    assert facts(stopped, b.ild("2025-05-30", "Pneumonitis", severity=moderate)).ild.tdxd_ild_grade2plus


@pytest.mark.parametrize(
    "value, grade2plus, listed",
    [(1, False, True), (2, True, True), (5, True, True), (6, False, False), (0, False, False)],
)
def test_graded_observation_bounds(value, grade2plus, listed):
    obs = b.observation(b.cc(b.SCT, "205237003", "Pneumonitis"), "2025-02-10", valueInteger=value)
    risk = ild_facts(obs)
    assert bool(risk.tdxd_ild_grade2plus) is grade2plus and bool(risk.prior_ild) is listed
    words = b.observation(b.cc(b.SCT, "205237003", "Pneumonitis"), "2025-02-10", valueString="Grade 3")
    assert ild_facts(words).prior_ild[0].text.startswith("Pneumonitis, grade 3")
    unnamed = b.observation({"coding": [{"system": b.SCT, "code": "205237003"}]}, "2025-02-10", valueInteger=2)
    assert ild_facts(unnamed).prior_ild[0].text.startswith("ILD/pneumonitis, grade 2")


def test_risk_factor_evidence_dates_and_labels():
    rt = b.procedure(
        b.cc(b.SCT, "108290001", "Radiation oncology AND/OR radiotherapy"), "2020-05-01", body_site="chest wall"
    )
    ckd = b.condition({"coding": [{"system": b.ICD, "code": "N18.4"}]}, "2021-01-01")
    risk = facts(rt, ckd).ild
    assert [(e.ref, e.when, e.text) for e in risk.thoracic_rt] == [
        (f"Procedure/{rt['id']}", date(2020, 5, 1), "thoracic radiotherapy: Radiation oncology AND/OR radiotherapy")
    ]
    assert [(e.ref, e.when, e.text) for e in risk.renal] == [
        (f"Condition/{ckd['id']}", date(2021, 1, 1), "reduced renal function: CKD")
    ]
    unnamed_rt = b.procedure({"coding": [{"system": b.SCT, "code": "1217123003"}]}, "2020-05-01", body_site="chest")
    assert facts(unnamed_rt).ild.thoracic_rt[0].text == "thoracic radiotherapy: radiotherapy"
    coded_egfr = b.observation(b.cc(b.LOINC, "33914-3"), "2025-01-01", valueCodeableConcept={"text": "normal"})
    assert facts(coded_egfr).ild.egfr is None
