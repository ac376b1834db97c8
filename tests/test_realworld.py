"""Every misreading and false card found on published records (issue: 'Read real records right'), as a
regression test, with fixtures written in the same codes and shapes (tests/fixtures/realworld.py)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b
from .fixtures import realworld as rw
from .test_cards import app, cards_for, draft  # noqa: F401 - the module-scoped app fixture

TS = load_terminology()
TODAY = date(2026, 11, 25)


def facts(*resources):
    return derive(list(resources), TS, TODAY)


def hr_positive_mbc_after_et_progression(her2: list) -> list:
    """Metastatic HR+ disease, letrozole progressed in the metastatic setting, no chemotherapy."""
    return [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("bone", "2023-01-10"),
        b.receptor("ER", "positive", "2023-01-20"),
        b.receptor("PR", "positive", "2023-01-20"),
        b.med_statement("letrozole", "2023-02-01", "2025-03-01", status="stopped", reason="progression"),
        *her2,
    ]


# --- CAP eCC HER2: fetched (prefetch from value sets) and read
@pytest.mark.parametrize("system", ["https://cap.org/eCC", "http://cap.org/eCC"])
def test_cap_ecc_her2_negative_score_1_is_her2_low_and_qualifies(app, system):  # noqa: F811
    pt = hr_positive_mbc_after_et_progression([rw.cap_her2("31016.100004300", "Negative (Score 1+)", system=system)])
    assert facts(*pt).her2.category == "low"
    cards = cards_for(app, pt, "order-select", [draft("capecitabine")])
    assert "her2-rescore" not in cards
    assert "meets" in cards["tdxd-consideration"]["summary"] and "DB-06" in cards["tdxd-consideration"]["summary"]


def test_cap_ecc_negative_score_0_is_ihc_0_not_binary():
    pic = facts(rw.cap_her2("40505.100004300", "Negative (Score 0)")).her2
    assert pic.current.ihc == 0 and pic.category == "zero-unspecified" and not pic.current.by_text


def test_loinc_answer_codes_are_read_by_code():
    f = facts(
        rw.loinc_answer("85337-4", "ER", "Positive"),
        rw.loinc_answer("85339-0", "PR", "Negative"),
        rw.loinc_answer("85319-2", "HER2 IHC", "3+"),
    )
    assert f.hr.status == "positive" and f.her2.category == "positive"
    assert facts(rw.loinc_answer("48676-1", "HER2 [Interpretation]", "Negative")).her2.category == "binary-only"


# --- staging: Synthea stage IVA, pathological stage group, SNOMED TNM M category
@pytest.mark.parametrize(
    "resource, metastatic",
    [
        (rw.stage_group("4A", "IVA", "2024-02-01"), True),
        (rw.stage_group("4", "IV", "2024-02-01", loinc="21902-2"), True),
        (rw.stage_group("258228008", "Stage 4", "2024-02-01", system=b.SCT), True),
        (rw.stage_group("2B", "IIB", "2024-02-01"), False),
        (rw.tnm_m("1229901006", "American Joint Committee on Cancer cM0 (qualifier value)", "2024-02-01"), False),
        (rw.tnm_m("55440008", "M1 category", "2024-02-01"), True),
        (rw.breast_cancer_stage("4A", "IVA", "2024-02-01"), True),
        (rw.breast_cancer_stage("3A", "IIIA", "2024-02-01"), False),
        (b.observation(b.cc(b.LOINC, "21908-9"), "2024-02-01", valueCodeableConcept={"text": "Stage IVB"}), True),
    ],
)
def test_stage_iv_in_every_encoding(resource, metastatic):
    s = facts(resource).setting
    assert s.metastatic is metastatic, s.evidence
    if metastatic:
        assert s.start == date(2024, 2, 1)


def test_synthea_stage_iva_patient_gets_the_rescore_card(app):  # noqa: F811
    pt = [
        b.patient(),
        rw.breast_cancer_stage("4A", "IVA", "2024-02-01", snomed="254837009"),
        b.observation(
            b.cc(b.LOINC, "85319-2"), "2024-02-05", valueCodeableConcept=b.cc(b.SCT, "260385009", "Negative")
        ),
        rw.synthea_ish("less than 1.8", "2024-02-05"),
    ]
    cards = cards_for(app, pt, "patient-view")
    assert cards["her2-rescore"]["summary"].startswith("HER2 reported only as 'negative'")


# --- regional nodes are N, never M
@pytest.mark.parametrize(
    "code",
    [
        b.cc(b.ICD, "C77.3", "Metastasis to left axillary lymph node"),
        b.cc(b.SCT, "94181007", "Secondary malignant neoplasm of axillary lymph nodes"),
        {"text": "Metastasis to left axillary lymph node"},
        {"text": "metastatic carcinoma in 2 of 14 lymph nodes"},  # region not said: not distant either
    ],
)
def test_regional_lymph_node_is_never_metastatic(code):
    s = facts(b.condition(code, "2024-02-01")).setting
    assert not s.metastatic
    assert any("regional" in n or "region" in n for n in s.notes)


def test_distant_nodes_are_metastatic():
    assert facts(
        b.condition(b.cc(b.ICD, "C77.2", "Secondary malignant neoplasm of intra-abdominal lymph nodes"), "2024-02-01")
    ).setting.metastatic
    assert facts(b.condition({"text": "metastasis to mediastinal lymph nodes"}, "2024-02-01")).setting.metastatic


def test_axillary_node_does_not_make_neoadjuvant_chemo_metastatic_no_false_db04_card(app):  # noqa: F811
    pt = [
        b.patient(),
        b.breast_cancer("2025-01-10"),
        b.condition(b.cc(b.ICD, "C77.3", "Metastasis to left axillary lymph node"), "2025-01-10"),
        rw.tnm_m("1229901006", "American Joint Committee on Cancer cM0", "2025-01-12"),
        b.receptor("ER", 0, "2025-01-12"),
        b.receptor("PR", 0, "2025-01-12"),
        b.her2_ihc("1+", "2025-01-12"),
        b.med_statement("paclitaxel", "2025-02-01", "2025-05-01"),
        b.med_statement("doxorubicin", "2025-05-15", "2025-07-15"),
    ]
    f = facts(*pt)
    assert not f.setting.metastatic and all(ln.setting == "early" for ln in f.therapy.lines)
    assert cards_for(app, pt, "order-select", [draft("capecitabine")]) == {}


def test_m0_staging_newer_than_a_text_only_metastasis_wins():
    text_met = b.condition({"text": "metastatic disease"}, "2024-01-01")
    assert facts(text_met).setting.metastatic
    s = facts(text_met, rw.tnm_m("1229901006", "cM0", "2024-03-01")).setting
    assert not s.metastatic and any("newer staging" in n for n in s.notes)
    coded = b.metastasis("liver", "2024-01-01")  # a coded metastasis is never overridden by text rules
    assert facts(coded, rw.tnm_m("1229901006", "cM0", "2024-03-01")).setting.metastatic
    older = rw.tnm_m("1229901006", "cM0", "2023-06-01")  # staging older than the statement: the statement stands
    assert facts(text_met, older).setting.metastatic


# --- preliminary vs final of the same specimen
def test_final_ihc_0_outranks_a_preliminary_1_plus_no_false_card(app):  # noqa: F811
    prelim = b.her2_ihc("1+", "2025-04-01", specimen="s9", status="preliminary", issued="2025-04-02T09:00:00Z")
    final = b.her2_ihc(
        {"valueCodeableConcept": {"text": "0, no staining"}}, "2025-04-01", specimen="s9", issued="2025-04-05T09:00:00Z"
    )
    pt = hr_positive_mbc_after_et_progression([prelim, final])
    f = facts(*pt)
    assert f.her2.category == "null"
    assert any("outranked by the final" in n for n in f.her2.current.notes)
    assert "tdxd-consideration" not in cards_for(app, pt, "order-select", [draft("capecitabine")])
    # listed the other way round, the answer is the same
    assert facts(*reversed(pt)).her2.category == "null"


def test_preliminary_alone_is_used_and_called_preliminary():
    f = facts(b.her2_ihc("1+", "2025-04-01", status="preliminary"))
    assert f.her2.category == "low" and any("preliminary" in n for n in f.her2.notes)


# --- receptor comparators: ER "Negative (<1%)" coded Negative is negative
def test_er_negative_below_1_percent_no_false_db06_card(app):  # noqa: F811
    er = b.observation(
        b.cc(b.LOINC, "85337-4"),
        "2024-02-01",
        valueCodeableConcept={**b.cc(b.SCT, "260385009", "Negative"), "text": "Negative (<1%)"},
    )
    pr = b.receptor("PR", "negative", "2024-02-01")
    pt = [
        b.patient(),
        b.breast_cancer("2020-01-01"),
        b.metastasis("liver", "2024-01-15"),
        er,
        pr,
        b.her2_ihc(0, "2024-02-01", membrane="faint-le-10"),
        b.med_statement("letrozole", "2024-02-10", "2025-01-10", status="stopped", reason="progression"),
    ]
    f = facts(*pt)
    assert f.hr.status == "negative" and f.triple_negative
    assert "tdxd-consideration" not in cards_for(app, pt, "order-select", [draft("capecitabine")])


@pytest.mark.parametrize(
    "text, positive",
    [("<1%", False), ("less than 1%", False), ("1%", True), (">10%", True), ("0%", False), ("<5%", None)],
)
def test_receptor_percent_keeps_its_comparator(text, positive):
    hr = facts(b.observation(b.cc(b.LOINC, "85337-4"), "2024-02-01", valueString=text)).hr
    assert (hr.er.positive if hr.er else None) is positive


def test_number_contradicting_the_coded_result_is_said():
    er = b.observation(
        b.cc(b.LOINC, "85337-4"),
        "2024-02-01",
        valueCodeableConcept={**b.cc(b.SCT, "260385009", "Negative"), "text": "Negative (5%)"},
    )
    hr = facts(er).hr
    assert hr.er.positive is False and "disagrees" in hr.er.evidence.text


def test_pr_40557_1_er_pr_combined_and_cap_receptors():
    pr = b.observation(b.cc(b.LOINC, "40557-1"), "2024-02-01", valueCodeableConcept=b.cc(b.SCT, "10828004", "Positive"))
    assert facts(pr).hr.pr.positive
    both = b.observation(b.cc(b.LOINC, "10480-2"), "2024-02-01", valueCodeableConcept=b.cc(b.SCT, "260385009", "Neg"))
    assert facts(both).hr.status == "negative"
    assert facts(rw.cap_receptor("ER"), rw.cap_receptor("PR")).hr.status == "positive"


# --- ultralow from the documented percentage component
def test_ihc_0_with_membrane_percent_component_is_ultralow_and_opens_db06(app):  # noqa: F811
    pt = hr_positive_mbc_after_et_progression([b.her2_ihc(0, "2025-04-01", pct=5)])
    assert facts(*pt).her2.category == "ultralow"
    assert "DB-06" in cards_for(app, pt, "order-select", [draft("capecitabine")])["tdxd-consideration"]["summary"]


@pytest.mark.parametrize(
    "pct, category", [(0, "null"), (0.5, "ultralow"), (10, "ultralow"), (10.5, "inconsistent"), (30, "inconsistent")]
)
def test_membrane_percent_boundaries(pct, category):
    assert facts(b.her2_ihc(0, "2025-04-01", pct=pct)).her2.category == category


# --- ISH from numbers
@pytest.mark.parametrize(
    "ratio, copies, cep17, ihc, category",
    [
        (2.5, 6.0, None, None, "positive"),  # group 1
        (2.4, 3.5, None, 2, "low"),  # group 2 with IHC 2+: not amplified
        (2.4, 3.5, None, 3, "positive"),  # group 2 with IHC 3+
        (1.5, 6.5, None, 2, "positive"),  # group 3 with IHC 2+
        (1.5, 6.5, None, 1, "low"),  # group 3 with IHC 1+: not amplified
        (1.6, 4.5, None, 2, "low"),  # group 4 with IHC 2+: not amplified with a comment
        (1.2, 2.5, None, 2, "low"),  # group 5
        (2.0, 4.0, None, 2, "positive"),  # boundary: ratio 2.0 and 4.0 copies are group 1
        (1.99, 3.99, None, 2, "low"),  # just under: group 5
        (None, 5.0, 2.0, 2, "positive"),  # ratio computed 2.5 from copies, 5 copies: group 1
        (None, 5.0, 2.6, 2, "low"),  # ratio 1.92, 5 copies: group 4
    ],
)
def test_ish_groups_from_loinc_numbers(ratio, copies, cep17, ihc, category):
    res = rw.ish_numbers(ratio, copies, cep17)
    if ihc is not None:
        res.append(b.her2_ihc(ihc, "2025-06-01", specimen="s1"))
    assert facts(*res).her2.category == category


@pytest.mark.parametrize(
    "text, ihc, category",
    [
        ("less than 1.8", 2, "indeterminate"),  # ratio <2 without copies: group 3 possible with IHC 2+
        ("less than 1.8", 1, "low"),
        ("greater than 2.2", 2, "indeterminate"),  # group 1 or 2 needs the copy number
        ("greater than 2.2", 3, "positive"),
        ("greater than 1.8", 2, "indeterminate"),
    ],
)
def test_synthea_ish_strings(text, ihc, category):
    res = [rw.synthea_ish(text, "2025-06-05"), b.her2_ihc(ihc, "2025-06-01")]
    f = facts(*res)
    assert f.her2.category == category
    assert f.her2.current.ratio is not None


def test_stated_ish_call_wins_over_disagreeing_numbers_with_a_note():
    res = [
        b.her2_ish("not amplified", "2025-06-05", ratio=2.6, copies=7.0, specimen="s1"),
        b.her2_ihc(2, "2025-06-01", specimen="s1"),
    ]
    f = facts(*res)
    assert f.her2.category == "low" and any("disagrees" in n for n in f.her2.current.notes)


# --- pathology reports
def test_results_referenced_by_a_pathology_report_are_read_whatever_their_code(app):  # noqa: F811
    her2 = rw.local_result("HER2 IHC", {"valueString": "1+"}, "2025-04-01")
    er = rw.local_result("ER", {"valueString": "Positive, 90%"}, "2025-04-01")
    pr = rw.local_result("PR", {"valueString": "Positive, 20%"}, "2025-04-01")
    rep = rw.pathology_report([her2, er, pr], "2025-04-01")
    pt = [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("liver", "2023-01-10"),
        rep,
        her2,
        er,
        pr,
        b.med_statement("letrozole", "2023-02-01", "2025-03-01", status="stopped", reason="progression"),
    ]
    f = facts(*pt)
    assert f.her2.category == "low" and f.hr.status == "positive"
    unrelated = rw.local_result("Ki-67", {"valueString": "20%"}, "2025-04-01")
    assert facts(rw.pathology_report([unrelated], "2025-04-01"), unrelated).her2.current is None
    assert "tdxd-consideration" in cards_for(app, pt, "order-select", [draft("capecitabine")])


def test_report_conclusion_is_read_when_no_structured_result():
    conclusion = (
        "Invasive ductal carcinoma, liver biopsy. ER positive (95%), PR negative (<1%), "
        "HER2 IHC 0 with faint incomplete membrane staining in 5% of cells (ultralow)."
    )
    rep = rw.pathology_report([], "2025-04-01", conclusion=conclusion)
    f = facts(rep)
    assert f.her2.category == "ultralow" and f.her2.current.by_text
    assert f.her2.current.refs == ["DiagnosticReport/path-1"]
    assert f.hr.er.positive and f.hr.pr.positive is False


def test_structured_result_beats_the_report_conclusion():
    her2 = rw.local_result("HER2 IHC", {"valueString": "2+"}, "2025-04-01")
    rep = rw.pathology_report([her2], "2025-04-01", conclusion="HER2 3+ (positive)")
    assert facts(rep, her2).her2.category == "indeterminate"


def test_invalid_resource_with_two_values_is_named_on_the_card(app):  # noqa: F811
    bad = b.her2_ihc("1+", "2025-04-01")
    bad["valueString"] = "Positive"
    pt = [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("liver", "2023-01-10"),
        bad,
        b.receptor("ER", "positive", "2023-01-20"),
    ]
    card = cards_for(app, pt, "patient-view")["her2-rescore"]
    said = "One Observation could not be read and was left out: not valid FHIR R4 (more than one value\\[x\\])"
    assert said in card["detail"] and f"Observation/{bad['id']}" in card["detail"].split("Sources: ")[1]


# --- progression from a new distant metastasis; refill orders
def test_new_liver_metastasis_during_endocrine_line_is_progression(app):  # noqa: F811
    pt = [
        b.patient(),
        b.breast_cancer("2018-01-01"),
        b.metastasis("bone", "2022-01-10"),
        b.receptor("ER", "positive", "2022-01-20"),
        b.receptor("PR", "positive", "2022-01-20"),
        b.her2_ihc("1+", "2022-01-20"),
        b.med_statement("letrozole", "2022-02-01", "2024-06-01", status="stopped"),
        b.metastasis("liver", "2024-05-10"),
    ]
    f = facts(*pt)
    line = f.therapy.lines[0]
    assert line.outcome == "progressed" and "new distant metastasis" in line.progression[0].text
    assert "meets" in cards_for(app, pt, "order-select", [draft("capecitabine")])["tdxd-consideration"]["summary"]


def test_the_diagnosis_that_starts_the_metastatic_setting_is_not_progression():
    f = facts(
        b.breast_cancer("2018-01-01"),
        b.metastasis("bone", "2022-01-10"),
        b.med_statement("letrozole", "2022-01-10", "2024-06-01", status="stopped"),
    )
    assert f.therapy.lines[0].outcome == "ended-reason-unknown"


def test_a_second_record_of_a_known_site_is_not_progression():
    f = facts(
        b.breast_cancer("2018-01-01"),
        b.metastasis("liver", "2022-01-10"),
        b.med_statement("letrozole", "2022-02-01", "2024-06-01", status="stopped"),
        b.metastasis("icd-liver", "2023-05-01"),
    )
    assert f.therapy.lines[0].outcome == "ended-reason-unknown"


def test_monthly_refills_end_and_their_progression_counts(app):  # noqa: F811
    refills = [rw.refill("letrozole", f"2023-{m:02d}-01", days=30) for m in range(2, 13)]
    pt = [
        b.patient(),
        b.breast_cancer("2018-01-01"),
        b.metastasis("bone", "2023-01-10"),
        b.receptor("ER", "positive", "2023-01-20"),
        b.receptor("PR", "positive", "2023-01-20"),
        b.her2_ihc("1+", "2023-01-20"),
        *refills,
        b.disease_status("progression", "2024-01-15"),
    ]
    f = facts(*pt)
    line = f.therapy.lines[0]
    assert line.end == date(2023, 12, 31) and line.outcome == "progressed"
    assert "meets" in cards_for(app, pt, "order-select", [draft("capecitabine")])["tdxd-consideration"]["summary"]


def test_refill_count_multiplies_the_supply():
    f = facts(rw.refill("anastrozole", "2024-01-01", days=30, repeats=2))
    assert f.therapy.lines[0].end == date(2024, 3, 31)


# --- ILD by onset during T-DXd exposure; one status policy for every module
def test_pneumonitis_during_tdxd_grade_2_is_critical(app):  # noqa: F811
    pt = [
        b.patient(),
        b.breast_cancer("2018-01-01"),
        b.metastasis("liver", "2023-01-10"),
        b.administration("fam-trastuzumab deruxtecan", "2025-09-01"),
        b.administration("fam-trastuzumab deruxtecan", "2025-09-22"),
        b.ild("2025-10-05", "Pneumonitis", severity=b.cc(b.SCT, "6736007", "Moderate")),
    ]
    card = cards_for(app, pt, "order-sign", [draft("fam-trastuzumab deruxtecan", dose=(5.4, "mg/kg"))])
    assert card["ild-monitoring"]["indicator"] == "critical"


@pytest.mark.parametrize(
    "onset, grade, critical",
    [
        ("2025-10-05", "6736007", True),  # during exposure, grade 2
        ("2025-10-05", "255604002", False),  # grade 1
        ("2025-12-21", "6736007", True),  # 90 days after the last dose: still exposure
        ("2026-01-25", "6736007", False),  # >3 months after the last dose
        ("2025-08-01", "6736007", False),  # before the first dose
    ],
)
def test_tdxd_exposure_window_and_grade(onset, grade, critical):
    f = facts(
        b.administration("fam-trastuzumab deruxtecan", "2025-09-01"),
        b.administration("fam-trastuzumab deruxtecan", "2025-09-22"),
        b.ild(onset, "Pneumonitis", severity=b.cc(b.SCT, grade)),
    )
    assert bool(f.ild.tdxd_ild_grade2plus) is critical


@pytest.mark.parametrize(
    "resource",
    [
        lambda: b.condition(
            b.cc(b.ICD, "N18.4", "Chronic kidney disease, stage 4"), "2024-01-01", verification="entered-in-error"
        ),
        lambda: b.condition(
            b.cc(b.SCT, "233703007", "Interstitial lung disease"), "2024-01-01", verification="refuted"
        ),
        lambda: b.condition(
            b.cc(b.SCT, "233703007", "Interstitial lung disease"), "2024-01-01", verification="provisional"
        ),
    ],
)
def test_status_policy_applies_to_every_ild_risk_factor(resource):
    r = resource()
    f = facts(r)
    assert f.ild.factors == []
    assert any(r["id"] in n for n in f.data_notes)


# --- codes the first release did not know
@pytest.mark.parametrize(
    "code, value_set",
    [
        (b.cc(b.SCT, "353431000119107", "Primary malignant neoplasm of female left breast"), "breast-cancer"),
        (b.cc(b.SCT, "408643008", "Infiltrating duct carcinoma of breast"), "breast-cancer"),
        (b.cc(b.SCT, "372137005", "Primary malignant neoplasm of breast"), "breast-cancer"),
    ],
)
def test_breast_cancer_codes(code, value_set):
    assert facts(b.condition(code, "2024-01-01")).setting.breast_cancer


def test_mcode_radiotherapy_course_without_display_on_chest_wall_is_thoracic():
    rt = b.procedure({"coding": [{"system": b.SCT, "code": "1217123003"}]}, "2024-01-01")
    rt["bodySite"] = [b.cc(b.SCT, "78904004", "Chest Wall Structure (body structure)")]
    assert facts(rt).ild.thoracic_rt


@pytest.mark.parametrize(
    "code, drug_class",
    [
        ("1163443", "endocrine-therapy"),
        ("1156671", "endocrine-therapy"),
        ("1946828", "cdk46-inhibitor"),
        ("1873980", "cdk46-inhibitor"),
        ("2169297", "other-targeted"),
        ("1158877", "chemotherapy"),
        ("1164214", "endocrine-therapy"),
        ("1940648", "her2-directed-antibody"),
    ],
)
def test_rxnorm_product_group_codes(code, drug_class):
    assert TS.classify_drug({"coding": [{"system": b.RX, "code": code}]}).value_set == drug_class


# --- an earlier HER2-low sample when the latest is null
def test_earlier_her2_low_with_latest_null_gives_a_hedged_card_with_retesting(app):  # noqa: F811
    pt = hr_positive_mbc_after_et_progression(
        [b.her2_ihc("1+", "2023-01-20", site="bone"), b.her2_ihc(0, "2025-04-01", membrane="absent", site="liver")]
    )
    card = cards_for(app, pt, "order-select", [draft("capecitabine")])["tdxd-consideration"]
    assert card["summary"].startswith("Latest HER2 null, earlier sample HER2-low (2023-01-20)")
    assert "ESMO 2023" in card["detail"] and "2025-04-01" in card["detail"]
    assert not any(s.get("isRecommended") for s in card["suggestions"])
    assert any(a["resource"]["resourceType"] == "ServiceRequest" for s in card["suggestions"] for a in s["actions"])


def test_no_hedged_card_when_any_result_was_positive(app):  # noqa: F811
    pt = hr_positive_mbc_after_et_progression(
        [b.her2_ihc(3, "2022-01-20"), b.her2_ihc("1+", "2023-01-20"), b.her2_ihc(0, "2025-04-01", membrane="absent")]
    )
    assert "tdxd-consideration" not in cards_for(app, pt, "order-select", [draft("capecitabine")])


def test_medication_statuses_follow_the_same_policy():
    given = b.med_statement("letrozole", "2024-01-01", "2024-06-01")
    mistake = b.med_statement("capecitabine", "2024-07-01", "2024-09-01", status="entered-in-error")
    planned = b.med_request("paclitaxel", "2024-10-01", status="draft")
    f = facts(given, mistake, planned)
    assert [ln.drugs for ln in f.therapy.lines] == [["letrozole"]]
    assert any(mistake["id"] in n and "entered-in-error" in n for n in f.data_notes)
    assert not any(planned["id"] in n for n in f.data_notes)  # a draft order is not worth a line on a card


def test_a_her2_result_that_is_not_valid_fhir_is_never_called_missing(app):  # noqa: F811
    """rw05's shape: a HER2 Observation with two value[x] (it said 'Positive'). It cannot be read, so its
    category is unknown: the card says a result exists, never 'no HER2 result'."""
    bad = b.observation(
        b.cc(b.LOINC, "85319-2"), "2024-02-01", valueCodeableConcept=b.cc(b.SCT, "10828004"), valueString="Positive"
    )
    pt = [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("liver", "2023-01-10"), bad]
    card = cards_for(app, pt, "patient-view")["her2-rescore"]
    assert card["summary"] == (
        "A HER2 result could not be read (invalid record): check the pathology report before re-testing"
    )
    assert "a HER2 result exists but is not valid FHIR" in card["detail"]
    assert f"Observation/{bad['id']}" in card["detail"].split("Sources: ")[1]
    assert "no HER2 result" not in card["detail"]
