"""DESIGN §6.2-6.3 rule by rule, the seed 002 patient stories, and the other patient types."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.facts.derive import derive
from cds_service.facts.request import RequestContext
from cds_service.fhir.terminology import load_terminology

from .fixtures import builders as b
from .fixtures import patients

TS = load_terminology()
TODAY = date(2026, 11, 25)


def facts(*resources, today=TODAY):
    return derive(list(resources), TS, today)


# --- 6.2 receptors
@pytest.mark.parametrize(
    "er, pr, status",
    [
        ("positive", "negative", "positive"),
        ("negative", "positive", "positive"),
        (50, 0, "positive"),
        (0, 0, "negative"),
        ("negative", "negative", "negative"),
        (0.5, 0, "negative"),
        (5, 0, "positive"),
        ("negative", None, "unknown"),
        (None, None, "unknown"),
    ],
)
def test_hr_status(er, pr, status):
    res = [b.receptor("ER", er)] if er is not None else []
    res += [b.receptor("PR", pr)] if pr is not None else []
    hr = facts(*res).hr
    assert hr.status == status
    if status == "unknown":
        assert any("unknown" in n for n in hr.notes)


def test_er_low_is_positive_with_a_note():
    hr = facts(b.receptor("ER", 5), b.receptor("PR", 0)).hr
    assert hr.status == "positive" and any("ER-low" in n for n in hr.notes)


def test_triple_negative_needs_hr_negative_and_her2_non_positive():
    assert facts(*patients.triple_negative()).triple_negative
    assert not facts(*patients.her2_positive()).triple_negative


# --- 6.2 setting
def test_metastatic_from_secondary_neoplasm_with_onset():
    s = facts(b.breast_cancer(), b.metastasis("bone", "2018-02-03"), b.metastasis("icd-liver", "2019-01-01")).setting
    assert s.metastatic and s.start == date(2018, 2, 3) and len(s.evidence) == 2


def test_stage_iv_breast_cancer_counts():
    cond = b.breast_cancer("2020-01-01", stage=[{"summary": {"text": "Stage IV"}}])
    s = facts(cond).setting
    assert s.metastatic and s.start == date(2020, 1, 1)


def test_metastatic_text_only_condition_counts_and_negation_does_not():
    assert facts(b.condition({"text": "Metastatic breast cancer"}, "2021-01-01")).setting.metastatic
    assert not facts(b.condition({"text": "Breast cancer, non-metastatic"}, "2021-01-01")).setting.metastatic
    assert not facts(b.condition({"text": "Breast cancer, no metastatic disease"}, "2021-01-01")).setting.metastatic


def test_entered_in_error_metastasis_is_ignored_and_absence_is_said():
    s = facts(b.breast_cancer(), b.metastasis(verification="entered-in-error")).setting
    assert not s.metastatic
    assert any("no record of metastatic disease" in n for n in s.notes)


# --- 6.3 therapy lines
def test_line_in_metastatic_setting_with_documented_progression():
    f = facts(
        b.metastasis("bone", "2020-01-01"),
        b.med_statement("letrozole", "2020-02-01", "2022-01-01", status="stopped", reason="progression"),
        b.med_statement("palbociclib", "2020-02-10", "2022-01-01", status="stopped", reason="progression"),
    )
    (line,) = f.therapy.lines
    assert line.setting == "metastatic" and line.is_endocrine and "cdk46-inhibitor" in line.classes
    assert line.outcome == "progressed" and line.drugs == ["letrozole", "palbociclib"]


def test_progression_from_disease_status_within_90_days_after_end():
    f = facts(
        b.metastasis("bone", "2020-01-01"),
        b.med_statement("anastrozole", "2020-02-01", "2021-01-01", status="completed"),
        b.disease_status("progression", "2021-03-01"),
    )
    assert f.therapy.lines[0].outcome == "progressed"
    assert f.therapy.lines[0].progression[0].ref.startswith("Observation/")


def test_disease_status_too_late_or_stable_is_not_progression():
    f = facts(
        b.metastasis("bone", "2020-01-01"),
        b.med_statement("anastrozole", "2020-02-01", "2021-01-01", status="completed"),
        b.disease_status("progression", "2021-06-01"),
        b.disease_status("stable", "2020-12-01"),
    )
    assert f.therapy.lines[0].outcome == "ended-reason-unknown"


def test_toxicity_stop_is_not_progression():
    f = facts(
        b.metastasis("bone", "2020-01-01"),
        b.med_statement("exemestane", "2020-02-01", "2020-05-01", status="stopped", reason="toxicity"),
    )
    assert f.therapy.lines[0].outcome == "stopped-toxicity"


def test_consecutive_records_form_one_line_and_gaps_split():
    f = facts(
        b.metastasis("bone", "2020-01-01"),
        b.med_request("letrozole", "2020-02-01", status="completed", end="2020-05-01"),
        b.med_request("letrozole", "2020-05-15", status="completed", end="2020-09-01"),
        b.med_request("letrozole", "2021-06-01", status="active"),
    )
    assert [(ln.start, ln.outcome) for ln in f.therapy.lines] == [
        (date(2020, 2, 1), "ended-reason-unknown"),
        (date(2021, 6, 1), "ongoing"),
    ]


def test_draft_and_cancelled_requests_and_proposals_do_not_count():
    f = facts(
        b.metastasis("bone", "2020-01-01"),
        b.med_request("capecitabine", "2021-01-01", status="draft"),
        b.med_request("capecitabine", "2021-01-01", status="cancelled"),
        b.med_request("capecitabine", "2021-01-01", intent="proposal"),
    )
    assert f.therapy.lines == []


def test_line_before_metastasis_is_early_setting_and_adjuvant_recurrence():
    f = facts(
        b.metastasis("liver", "2021-03-01"),
        b.med_statement("doxorubicin", "2020-01-01", "2020-04-01"),
        b.med_statement("cyclophosphamide", "2020-01-01", "2020-04-01"),
        b.med_statement("paclitaxel", "2020-04-15", "2020-10-01"),
    )
    assert {ln.setting for ln in f.therapy.lines} == {"early"}
    assert f.therapy.adjuvant_recurrence is not None and "151 days" in f.therapy.adjuvant_recurrence.text


def test_rxnorm_at_any_level_and_medication_reference():
    med = {"resourceType": "Medication", "id": "m1", "code": b.cc(b.RX, "200328", "capecitabine 500 MG Oral Tablet")}
    ref = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "completed",
        "intent": "order",
        "subject": b.subject(),
        "medicationReference": {"reference": "Medication/m1"},
        "authoredOn": "2021-02-01",
    }
    scd = b.med_statement("capecitabine", "2021-02-01", "2021-06-01")
    scd["medicationCodeableConcept"] = b.cc(b.RX, "999999", "capecitabine 150 MG Oral Tablet [Xeloda]")
    brand = b.med_statement("capecitabine", "2022-01-01", "2022-03-01", by="text")
    brand["medicationCodeableConcept"] = {"text": "Xeloda 500mg tabs"}
    f = facts(b.metastasis("bone", "2020-01-01"), med, ref, scd, brand)
    assert all(ln.is_chemo and ln.drugs == ["capecitabine"] for ln in f.therapy.lines)
    assert sum(len(ln.refs) for ln in f.therapy.lines) == 3


def test_tdxd_exposure_and_active():
    f = facts(b.administration("fam-trastuzumab deruxtecan", "2026-11-01"))
    assert f.therapy.tdxd and f.therapy.tdxd_active
    old = facts(b.administration("fam-trastuzumab deruxtecan", "2024-01-01"))
    assert old.therapy.tdxd and not old.therapy.tdxd_active


# --- ILD risk
def test_ild_risk_factors():
    f = facts(
        b.ild("2020-01-01", "Radiation pneumonitis"),
        b.thoracic_rt("2013-01-01"),
        b.metastasis("lung", "2022-01-01"),
        b.condition(b.cc(b.ICD, "N18.4", "CKD stage 4"), "2021-01-01"),
    )
    assert len(f.ild.prior_ild) == 1 and len(f.ild.thoracic_rt) == 1
    assert len(f.ild.lung_metastases) == 1 and len(f.ild.renal) == 1
    assert f.ild.tdxd_ild_grade2plus == []


def test_pelvic_radiotherapy_is_not_thoracic():
    rt = b.procedure(b.cc(b.SCT, "108290001", "Radiotherapy"), "2024-07-01", body_site="pelvis")
    assert facts(rt).ild.thoracic_rt == []


# --- draft orders
def test_draft_tdxd_order_with_dose():
    draft = b.med_request("fam-trastuzumab deruxtecan", "2026-11-25", status="draft", dose=(6.4, "mg/kg"), id="d1")
    request = RequestContext.of(
        "order-select",
        {
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
            "selections": ["MedicationRequest/d1"],
        },
        TS,
    )
    (order,) = request.drafts
    assert order.is_tdxd and order.selected and order.dose_mg_per_kg == 6.4
    assert request.tdxd_order() is order and request.names_medication


def test_sandbox_draft_without_medication():
    draft = {
        "resourceType": "MedicationRequest",
        "id": "x",
        "status": "draft",
        "intent": "order",
        "category": {"text": "outpatient"},
    }
    context = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}, "junk"]}}
    request = RequestContext.of("order-select", context, TS)
    assert len(request.drafts) == 1 and request.drafts[0].drug is None
    assert not request.names_medication  # order-select says nothing until a drug is drafted


# --- seed 002 stories
def test_builta_before_rescoring_is_binary_only_with_metastatic_chemo_and_progressed_et():
    f = facts(*patients.builta_binary_only())
    assert f.her2.category == "binary-only" and len(f.her2.results) == 3
    assert f.hr.status == "positive" and f.setting.start == date(2010, 4, 15)
    assert [ln.outcome for ln in f.therapy.metastatic("is_chemo")] == ["progressed"]
    (et,) = f.therapy.metastatic("is_endocrine")
    assert et.outcome == "progressed" and "abemaciclib" in et.drugs


def test_builta_after_rescoring_is_her2_low_from_metastatic_tissue():
    f = facts(*patients.builta_her2_low())
    assert f.her2.category == "low" and f.her2.current.site_kind == "metastatic"


def test_builta_pneumonitis_on_tdxd():
    f = facts(*patients.builta_pneumonitis())
    assert len(f.therapy.tdxd) == 2 and not f.therapy.tdxd_active
    assert len(f.ild.tdxd_ild_grade2plus) == 1 and "grade 3" in f.ild.tdxd_ild_grade2plus[0].text


def test_bell_reclassified_low_et_progressed_toxicity_stop_kept_apart_and_recurrence_on_capecitabine():
    f = facts(*patients.bell())
    assert f.her2.category == "low" and f.her2.current.site_kind == "metastatic"
    assert any(r.category == "binary-only" for r in f.her2.results)
    first = f.therapy.metastatic("is_endocrine")[0]
    assert first.drugs == ["abemaciclib", "letrozole"] and first.outcome == "progressed"
    assert f.therapy.metastatic("is_chemo") == []
    assert f.therapy.adjuvant_recurrence is not None
    assert f.therapy.adjuvant_recurrence.text == (
        "recurrence during early-stage chemotherapy (capecitabine, ended 2016-06-01)"
    )
    assert f.ild.thoracic_rt == []


def test_her2_positive_patient():
    f = facts(*patients.her2_positive())
    assert f.her2.category == "positive" and f.therapy.her2_directed


def test_early_stage_patient_is_not_metastatic():
    f = facts(*patients.early_stage())
    assert not f.setting.metastatic and all(ln.setting == "early" for ln in f.therapy.lines)
    assert f.her2.category == "zero-unspecified" and f.her2.current.site_kind == "primary"


def _shipped_drug_codes():
    from cds_service.fhir.terminology import DRUG_CLASSES

    for vs_id in DRUG_CLASSES:
        for inc in TS.resources[f"ValueSet/{vs_id}"].get("compose", {}).get("include", []):
            for concept in inc.get("concept", []):
                yield vs_id, inc["system"], concept["code"], concept["display"]


@pytest.mark.parametrize("vs_id, system, code, display", list(_shipped_drug_codes()))
def test_every_shipped_drug_code_alone_maps_to_its_class_and_ingredient(vs_id, system, code, display):
    """An EHR may send only the code (no display): ingredient, clinical-drug and branded codes must
    still map to their class and to an ingredient name (no strength or form) that lines are built on."""
    hit = TS.classify_drug({"coding": [{"system": system, "code": code}]})
    assert hit is not None and hit.value_set == vs_id and hit.by == "code"
    assert hit.canonical and not any(ch.isdigit() for ch in hit.canonical), hit.canonical
    if any(ch.isdigit() for ch in display):  # a clinical or branded drug: its ingredient is named in the display
        assert TS.classify_drug({"text": display}).canonical == hit.canonical


@pytest.mark.parametrize(
    "value, shown, first, last",
    [
        ("2016", "2016", date(2016, 1, 1), date(2016, 12, 31)),
        ("2016-02", "2016-02", date(2016, 2, 1), date(2016, 2, 29)),
        ("2016-12", "2016-12", date(2016, 12, 1), date(2016, 12, 31)),
        ("2016-05-10", "2016-05-10", date(2016, 5, 10), date(2016, 5, 10)),
        ("2016-05-10T23:30:00-05:00", "2016-05-10", date(2016, 5, 10), date(2016, 5, 10)),
    ],
)
def test_partial_dates_keep_their_precision(value, shown, first, last):
    from cds_service.fhir.primitives import fmt, latest_day, parse_date

    d = parse_date(value)
    assert d == first and latest_day(d) == last and fmt(d) == shown


@pytest.mark.parametrize(
    "line_start, metastatic_onset, setting",
    [
        ("2016", "2016-05-10", "unknown"),  # the year spans the diagnosis
        ("2016-05", "2016-05-10", "unknown"),
        ("2016-06", "2016-05-10", "metastatic"),
        ("2016-04", "2016-05-10", "early"),
        ("2017", "2016-05-10", "metastatic"),
        ("2015", "2016-05-10", "early"),
        ("2016-03-01", "2016", "unknown"),  # the diagnosis date is the coarse one
        ("2016-05-10", "2016-05-10", "metastatic"),
    ],
)
def test_coarse_dates_never_guess_the_setting(line_start, metastatic_onset, setting):
    f = facts(b.metastasis("liver", metastatic_onset), b.med_statement("capecitabine", line_start, "2016-12-31"))
    (line,) = f.therapy.lines
    assert line.setting == setting
    if setting == "unknown":
        assert "too coarse" in line.describe()


def test_coarse_chemotherapy_date_is_setting_unknown_and_does_not_touch_db06():
    from cds_service.rules.tdxd import db06

    f = facts(*patients.bell(), b.med_statement("paclitaxel", "2016", "2016-12-31"))
    [pac] = [ln for ln in f.therapy.lines if ln.drugs == ["paclitaxel"]]
    assert pac.setting == "unknown" and "too coarse" in pac.describe()
    assert not any("chemotherapy" in c[0] for c in db06(f).criteria)  # the label's DB-06 has no chemo criterion
