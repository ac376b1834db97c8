"""Every misreading found on the second set of published records (issue: 'Read the records others write,
round 3'), as a regression test, with fixtures of our own in the same codes and shapes
(tests/fixtures/realworld2.py)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b
from .fixtures import realworld as rw
from .fixtures import realworld2 as rw2
from .test_cards import app, cards_for, draft  # noqa: F401 - the module-scoped app fixture

TS = load_terminology()
TODAY = date(2026, 12, 5)


def facts(*resources):
    return derive(list(resources), TS, TODAY)


def metastatic_breast(*more):
    return [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("bone", "2023-01-10"), *more]


# --- breast cancer the mCODE way, and a man with brain metastases and no HER2 test
def test_mcode_malignant_neoplasm_with_a_breast_body_site_is_breast_cancer():
    f = facts(b.patient(), rw2.mcode_cancer())
    assert [e.ref for e in f.setting.breast_cancer] and f.setting.in_scope
    assert not facts(b.patient(), rw2.mcode_cancer("Structure of ovary", "15497006")).setting.breast_cancer


@pytest.mark.parametrize("hook", ["patient-view", "order-select"])
def test_man_with_brain_metastases_and_no_her2_test_gets_the_rescore_card(app, hook):  # noqa: F811
    man = dict(b.patient(), gender="male")
    brain = b.condition(b.cc(b.SCT, "94225005", "Secondary malignant neoplasm of brain"), "2019-05-01")
    drafts = [draft("paclitaxel")] if hook != "patient-view" else []
    cards = cards_for(app, [man, rw2.mcode_cancer(), brain], hook, drafts)
    assert "no HER2 result" in cards["her2-rescore"]["summary"]


GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"


@pytest.mark.parametrize("system", [GM, "http://hl7.org/fhir/sid/icd-10"])
def test_german_and_who_icd_10_codes_are_read(system):
    breast = b.condition(
        b.cc(system, "C50.9", "Bösartige Neubildung: Brustdrüse, nicht näher bezeichnet"), "2021-06-10"
    )
    assert facts(b.patient(), breast).setting.in_scope
    peritoneum = b.condition(b.cc(system, "C48.2", "Bösartige Neubildung: Peritoneum"), "2021-06-10")
    peritoneum["bodySite"] = [b.cc("http://terminology.hl7.org/CodeSystem/icd-o-3", "C56.9", "Ovar")]
    f = facts(b.patient(), peritoneum, b.her2_ihc(2, "2021-06-22"))
    assert not f.setting.in_scope and "C48.2" in f.setting.other_primary[0].text


def test_an_unspecified_malignancy_with_an_icd_o_3_breast_topography_is_breast_cancer():
    cond = b.condition(b.cc("http://hl7.org/fhir/sid/icd-10", "C80.9", "Malignant neoplasm, unspecified"), "2021-06-10")
    cond["bodySite"] = [
        b.cc("http://terminology.hl7.org/CodeSystem/icd-o-3", "C50.4", "Upper-outer quadrant of breast")
    ]
    assert facts(b.patient(), cond).setting.in_scope


def test_an_unconfirmed_diagnosis_is_said_and_not_counted():
    cond = b.condition(b.cc(GM, "C48.2", "Bösartige Neubildung: Peritoneum"), "2021-06-10", verification="unconfirmed")
    f = facts(b.patient(), cond)
    assert not f.setting.other_primary and any("is unconfirmed" in n for n in f.data_notes)


# --- receptors as SNOMED status findings and as percentages
@pytest.mark.parametrize(
    "er, pr, status",
    [(True, None, "positive"), (False, False, "negative"), (False, True, "positive"), (None, None, "unknown")],
)
def test_receptor_status_findings_are_read_by_code(er, pr, status):
    f = facts(rw2.receptor_status("ER", er), rw2.receptor_status("PR", pr))
    assert f.hr.status == status
    if er is None:
        assert any("ER result could not be read" in n for n in f.hr.notes)


@pytest.mark.parametrize(
    "er, cmp, status, percent",
    [
        (70, None, "positive", 70.0),
        (1, None, "positive", 1.0),
        (0.5, None, "negative", 0.5),
        (1, "<", "negative", None),
    ],
)
def test_receptor_percentages_14228_1_and_14230_7(er, cmp, status, percent):
    f = facts(rw2.receptor_percent("ER", er, cmp), rw2.receptor_percent("PR", 0))
    assert f.hr.status == status and f.hr.er is not None and f.hr.er.percent == percent
    assert f"{cmp or ''}{er:g}%" in f.hr.er.evidence.text


def test_the_new_codes_are_published_by_discovery_and_asked_for_by_the_prefetch(app):  # noqa: F811
    services = app.test_client().get("/cds-services").get_json()["services"]
    prefetch = "\n".join(t for svc in services for t in svc["prefetch"].values())
    for token in (
        "http://loinc.org|14228-1",
        "http://loinc.org|14230-7",
        "http://snomed.info/sct|445028008",
        "http://snomed.info/sct|445029000",
        "http://snomed.info/sct|385380006",
        "http://snomed.info/sct|1365744007",
    ):
        assert token in prefetch


# --- the M category in SNOMED and UICC; what cannot be read is said with its code
@pytest.mark.parametrize(
    "obs, metastatic",
    [
        (rw2.m_category_finding("1229903009", "American Joint Committee on Cancer cM1"), True),
        (rw2.m_category_finding("1229916009", "American Joint Committee on Cancer pM1"), True),
        (rw2.m_category_finding("1229901006", "American Joint Committee on Cancer cM0"), False),
        (rw2.uicc_pm("M1b"), True),
        (rw2.uicc_pm("M1"), True),
        (rw2.uicc_pm("M0"), False),
    ],
)
def test_m_category_in_snomed_and_uicc(obs, metastatic):
    f = facts(b.patient(), b.breast_cancer(), obs)
    assert f.setting.metastatic is metastatic
    if metastatic:
        assert f.setting.start == date(*map(int, obs["effectiveDateTime"].split("-")))


@pytest.mark.parametrize("value", ["MX", "M9"])
def test_an_unreadable_m_value_is_said_with_its_code(value):
    f = facts(b.patient(), b.breast_cancer(), rw2.uicc_pm(value))
    assert not f.setting.metastatic
    assert any(
        f"metastatic status not readable (pM category (observable entity): tnm|{value})" in n for n in f.setting.notes
    )


def test_a_stage_group_without_a_value_is_said_and_a_t_category_is_not():
    stage = b.observation(b.cc(b.LOINC, "21908-9", "Stage group.clinical Cancer"), "2019-04-01")
    t = b.observation(
        b.cc(b.LOINC, "21905-5", "Primary tumor.clinical [Class] Cancer"),
        "2019-04-01",
        valueCodeableConcept=b.cc(b.SCT, "67673008", "T2 category"),
    )
    notes = facts(b.patient(), b.breast_cancer(), stage, t).setting.notes
    assert any("stage recorded without a value (Stage group.clinical Cancer)" in n for n in notes)
    assert not any(t["id"] in n for n in notes)


# --- HER2 ISH coded in SNOMED; HER2-low as a SNOMED finding
def test_ish_ratio_in_snomed_with_its_interpretation_beside_ihc_2_plus_is_her2_low():
    f = facts(rw2.her2_ihc_loinc_answer("2+"), rw2.ish_ratio_snomed(1.2))
    assert f.her2.current.ihc == 2 and f.her2.current.ish == "not-amplified" and f.her2.category == "low"
    assert f.her2.current.ratio == 1.2 and not f.her2.current.by_text  # LA11842-4 "2+" is read by its code


@pytest.mark.parametrize("interpretation, ish", [("Negative", "not-amplified"), ("Positive", "amplified")])
def test_the_interpretation_of_an_ish_result_is_the_call(interpretation, ish):
    # ratio 2.1 with a negative call: the reported call wins over its numbers (as for a stated ISH call)
    f = facts(
        rw2.her2_ihc_loinc_answer("2+"), rw2.ish_ratio_snomed(2.1 if ish == "not-amplified" else 1.5, interpretation)
    )
    assert f.her2.current.ish == ish


def test_her2_low_coded_in_snomed_is_a_category_stated_by_code():
    f = facts(rw2.her2_low_finding())
    assert f.her2.category == "low" and not f.her2.current.by_text
    assert any("as stated in the report" in n for n in f.her2.current.notes)


def test_her2_low_finding_with_its_words_reads_the_score_and_ish_in_them():
    f = facts(rw2.her2_low_finding("HER2-low (IHC 2+/ISH negative)"))
    assert f.her2.current.ihc == 2 and f.her2.current.ish == "not-amplified" and f.her2.category == "low"


def test_her2_negative_carcinoma_finding_is_a_coded_negative():
    obs = b.observation(
        b.cc(b.LOINC, "48676-1", "HER2 [Interpretation] in tissue"),
        "2019-04-10",
        valueCodeableConcept=b.cc(b.SCT, "431396003", "Human epidermal growth factor 2 negative carcinoma of breast"),
    )
    current = facts(obs).her2.current
    assert current.binary == "negative" and not current.by_text and facts(obs).her2.category == "binary-only"


# --- ISH in words on its own date (Synthea)
def test_less_than_1_8_alone_is_not_amplified_and_the_card_asks_for_the_ihc_score(app):  # noqa: F811
    pt = metastatic_breast(rw.synthea_ish("less than 1.8", "2024-06-01"))
    f = facts(*pt)
    assert f.her2.current.ish == "not-amplified" and f.her2.category == "binary-only"
    card = cards_for(app, pt, "patient-view")["her2-rescore"]
    assert "cannot be interpreted" not in card["summary"] and "IHC" in card["summary"]


def test_greater_than_2_2_alone_is_amplified_and_counts_as_her2_positive_history():
    f = facts(*metastatic_breast(rw.synthea_ish("greater than 2.2", "2024-06-01")))
    assert f.her2.current.ish == "amplified" and f.her2.category == "positive"
    assert any("read as amplified" in n for n in f.her2.current.notes)


@pytest.mark.parametrize("text, ish", [("less than 1.8", "not-amplified"), ("greater than 2.2", "equivocal")])
def test_a_ratio_alone_beside_ihc_2_plus_is_still_weighed_with_the_score(text, ish):
    # IHC 2+ with a ratio <2.0 but no copy number: group 3 (amplified with 2+) cannot be ruled out
    f = facts(b.her2_ihc(2, "2024-06-01"), rw.synthea_ish(text, "2024-06-01"))
    assert f.her2.current.ish in (ish, "equivocal")
    assert f.her2.category != "low" or ish == "not-amplified"


# --- a report conclusion with the ISH in its own sentence
@pytest.mark.parametrize(
    "conclusion",
    [
        "HER2 (4B5): IHC 2+ (equivocal). FISH: NOT amplified, HER2/CEP17 ratio 1.4",
        "Invasive ductal carcinoma. ER 90%, PR 20%. HER2: IHC 2+. FISH: NOT amplified.",
        "HER2 IHC 2+\nFISH: not amplified",
    ],
)
def test_report_conclusion_ish_sentence_belongs_to_the_her2_statement(app, conclusion):  # noqa: F811
    pt = metastatic_breast(rw.pathology_report([], "2024-06-01", conclusion))
    f = facts(*pt)
    assert f.her2.current.ihc == 2 and f.her2.current.ish == "not-amplified" and f.her2.category == "low"
    card = cards_for(app, pt, "patient-view").get("her2-rescore")
    assert card is None or "reflex" not in card["summary"].lower()


def test_a_later_sentence_without_an_ish_word_is_not_read_into_the_her2_statement():
    f = facts(rw.pathology_report([], "2024-06-01", "HER2 IHC 2+. Ki-67 30%. FISH pending."))
    assert f.her2.current.ihc == 2 and f.her2.current.ish is None and f.her2.category == "indeterminate"


# --- a local-coded membrane-staining percentage beside IHC 0
@pytest.mark.parametrize("pct, category", [(5, "ultralow"), (10, "ultralow"), (0, "null"), (15, "inconsistent")])
def test_local_membrane_staining_percentage_component_is_read(pct, category):
    f = facts(rw2.membrane_percent_component(b.her2_ihc(0, "2025-01-10"), pct))
    assert f.her2.current.membrane_pct == pct and f.her2.category == category


# --- therapy recorded only as Procedures
@pytest.mark.parametrize(
    "system, code, display, drug_class",
    [
        (b.SCT, "385786002", "Chemotherapy care", "chemotherapy"),
        (b.SCT, "367336001", "Chemotherapy (procedure)", "chemotherapy"),
        (rw2.OPS, "8-54", "Chemotherapie ", "chemotherapy"),
        (rw2.MII_THERAPY, "CH", None, "chemotherapy"),
        (b.SCT, "169413002", "Hormone therapy", "endocrine-therapy"),
        (b.SCT, "83152002", "Oophorectomy", "endocrine-therapy"),
    ],
)
def test_therapy_recorded_as_a_procedure_is_exposure(system, code, display, drug_class):
    proc = rw2.therapy_procedure(system, code, display, "2023-03-01", "2023-08-01")
    lines = facts(*metastatic_breast(proc)).therapy.lines
    assert len(lines) == 1 and lines[0].classes == {drug_class} and lines[0].setting == "metastatic"
    assert (lines[0].start, lines[0].end) == (date(2023, 3, 1), date(2023, 8, 1))
    assert lines[0].drugs == (
        ["oophorectomy"] if code == "83152002" else [f"{drug_class.replace('-', ' ')} (drugs not named)"]
    )


def test_chemotherapy_procedures_beside_the_named_drug_show_the_drug():
    pt = metastatic_breast(
        b.med_statement("paclitaxel", "2023-03-01", "2023-08-01", status="completed"),
        *(
            rw2.therapy_procedure(b.SCT, "367336001", "Chemotherapy (procedure)", d)
            for d in ("2023-03-01", "2023-03-22")
        ),
    )
    (line,) = facts(*pt).therapy.lines
    assert line.drugs == ["paclitaxel"] and sum(r.startswith("Procedure/") for r in line.refs) == 2


def test_a_procedure_reason_is_why_it_was_done_never_why_it_stopped():
    proc = rw2.therapy_procedure(
        b.SCT, "385786002", "Chemotherapy care", "2023-03-01", "2023-08-01",
        reasonCode=[b.cc(b.SCT, "266721009", "Absent response to treatment")],
    )  # fmt: skip
    (line,) = facts(*metastatic_breast(proc)).therapy.lines
    assert line.outcome == "ended-reason-unknown"


def test_chemotherapy_as_a_procedure_counts_for_db04(app):  # noqa: F811
    pt = [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("liver", "2023-01-10"),
        b.receptor("ER", "negative", "2023-01-20"),
        b.receptor("PR", "negative", "2023-01-20"),
        b.her2_ihc(1, "2023-01-15"),
        rw2.therapy_procedure(b.SCT, "385786002", "Chemotherapy care", "2023-02-01", "2023-07-01"),
    ]
    card = cards_for(app, pt, "order-select", [draft("eribulin")])["tdxd-consideration"]
    assert "DB-04" in card["summary"] and "meets" in card["summary"]


# --- an undated MedicationRequest (its date in a non-FHIR effectiveDateTime)
def test_a_request_with_an_element_it_does_not_have_is_exposure_with_an_unknown_date():
    mr = rw2.request_with_effective("fulvestrant", "2024-01-01")
    f = facts(*metastatic_breast(mr))
    (line,) = f.therapy.lines
    assert line.drugs == ["fulvestrant"] and line.start is None and line.setting == "unknown"
    assert any("does not have (effectiveDateTime)" in n and mr["id"] in n for n in f.data_notes)


def test_a_misspelt_modifier_extension_still_leaves_the_record_out():
    mr = rw2.request_with_effective("fulvestrant", "2024-01-01")
    mr["modifierExtensions"] = [{"url": "http://example.org/x", "valueBoolean": True}]
    f = facts(*metastatic_breast(mr))
    assert not f.therapy.lines and any("could not be read" in n for n in f.data_notes)


# --- drugs coded with ATC
@pytest.mark.parametrize("system", [rw2.ATC_WHO, rw2.ATC_BFARM])
@pytest.mark.parametrize(
    "code, display, drug_class, name",
    [
        ("L02BG04", "Letrozol", "endocrine-therapy", "letrozole"),  # a listed code: its ingredient, in English
        ("L02BA03", None, "endocrine-therapy", "fulvestrant"),
        ("L01CD01", "Paclitaxel", "chemotherapy", "paclitaxel"),
        ("L01XA02", None, "chemotherapy", "carboplatin"),
        ("L01BC05", "Gemcitabin", "chemotherapy", "gemcitabine"),
        ("L01DB01", None, "chemotherapy", "doxorubicin"),  # the same line as RxNorm's doxorubicin
        ("L01XA03", "Oxaliplatin", "chemotherapy", "Oxaliplatin"),  # under a class only: its own display
        ("L01XA03", None, "chemotherapy", "L01XA03"),  # and without one: its code
        ("L01XX41", None, "chemotherapy", "eribulin"),
        ("L01EF01", None, "cdk46-inhibitor", "palbociclib"),
        ("L01FD01", None, "her2-directed-antibody", "trastuzumab"),
        ("L01FD04", None, "tdxd", "fam-trastuzumab deruxtecan"),
    ],
)
def test_atc_coded_drugs_are_classed(system, code, display, drug_class, name):
    hit = TS.classify_drug(b.cc(system, code, display))
    assert hit is not None and (hit.value_set, hit.by, hit.canonical) == (drug_class, "code", name)


@pytest.mark.parametrize("code", ["L01XK02", "L01FX26", "L02", "L01"])
def test_atc_codes_outside_the_classes_are_not_cancer_drugs_of_ours(code):
    assert TS.classify_drug(b.cc(rw2.ATC_BFARM, code)) is None


def test_atc_endocrine_line_with_progression_counts_as_metastatic_endocrine_therapy():
    ms = rw2.atc_statement("L02BG04", "Letrozol", "2023-02-01", "2025-03-01", status="stopped", reason="progression")
    f = facts(*metastatic_breast(ms))
    assert f.therapy.metastatic("is_endocrine") and f.therapy.lines[0].outcome == "progressed"


@pytest.mark.parametrize(
    "text, ish",
    [
        ("HER2-low (IHC 2+/ISH negative)", "not-amplified"),
        ("IHC 2+, FISH negative", "not-amplified"),
        ("IHC 2+; FISH: positive", "amplified"),
        ("IHC 2+, FISH negative for amplification", "not-amplified"),
        ("IHC 2+. FISH pending; ER positive", None),  # a sign further on is not the ISH's
    ],
)
def test_negative_or_positive_right_after_the_ish_word_is_its_call(text, ish):
    from cds_service.facts.her2.text import ish_in_ihc_text

    assert ish_in_ihc_text(text) == ish
