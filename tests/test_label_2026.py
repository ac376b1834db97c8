"""The Enhertu label as revised in May 2026 (DESIGN §6), read by a clinician: each table is one situation per row,
built from FHIR records in the encodings EHRs send and run through the real fact derivation and rules.

Dose levels 5.4 / 4.4 / 3.2 mg/kg and no re-escalation; the ILD card for first dose and continuing therapy; the
HER2-positive history by each route; breast cancer scope; DB-06 per the label; 0+, imlunestrant, TROP2 ADCs,
ERBB2 by sequencing, unresectable disease and a line running into the advanced setting."""

from __future__ import annotations

import base64
import re
from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.cards.render import render
from cds_service.config import CardSettings, shipped_defaults
from cds_service.facts.derive import Facts, derive
from cds_service.facts.label import DOSE_LEVELS, ILD_TABLE, LABEL_REVISION, ild_table_lines, one_level_below
from cds_service.fhir.terminology import load_terminology
from cds_service.rules import her2_rescore, tdxd
from cds_service.rules import ild_monitoring as ild
from tests.helpers import asked, assert_cds_response, card_cfg

from .fixtures import builders as b

TS = load_terminology()
TODAY = date(2026, 11, 25)


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def facts(resources: list[dict[str, Any]]) -> Facts:
    return derive(list(resources), TS, TODAY)


def tdxd_dose(kind: str, when: str, value: float, unit: str = "mg/kg") -> dict[str, Any]:
    """A T-DXd record with its dose, as each resource type carries it."""
    qty = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    if kind == "administration":
        r = b.administration("fam-trastuzumab deruxtecan", when)
        r["dosage"] = {"dose": qty}
        return r
    if kind == "statement":
        r = b.med_statement("fam-trastuzumab deruxtecan", when, when, status="completed")
        r["dosage"] = [{"doseAndRate": [{"doseQuantity": qty}]}]
        return r
    return b.med_request("fam-trastuzumab deruxtecan", when, status="completed", dose=(value, unit))


def draft(value: float | None = 5.4, unit: str = "mg/kg") -> dict[str, Any]:
    d = b.med_request(
        "fam-trastuzumab deruxtecan",
        TODAY.isoformat(),
        status="draft",
        dose=(value, unit) if value is not None else None,
        id="draft-tdxd",
    )
    return d


def weight(kg: float, when: str) -> dict[str, Any]:
    return b.observation(
        b.cc(b.LOINC, "29463-7", "Body weight"), when, valueQuantity={"value": kg, "unit": "kg", "code": "kg"}
    )


def ct_chest(when: str) -> dict[str, Any]:
    return b.procedure(b.cc(b.SCT, "169069000", "Computed tomography of chest"), when)


def breast() -> list[dict[str, Any]]:
    return [b.patient(), b.breast_cancer("2018-01-01"), b.metastasis("liver", "2023-01-10")]


def rendered(decision):
    """Every card a test decides is also rendered and held to the CDS Hooks rules (and its evidence is cited)."""
    if decision is not None:
        [card] = assert_cds_response({"cards": render([decision], CardSettings.of(shipped_defaults()["cards"]), TS)})
        assert "**Evidence used**" in card["detail"] or "**Not known" in card["detail"]
    return decision


def ild_card(resources: list[dict[str, Any]], dose: float | None = 5.4, unit: str = "mg/kg", **cfg: Any):
    f = facts(resources)
    return rendered(ild.decide(f, asked("order-sign", [draft(dose, unit)]), card_cfg("ild_monitoring", **cfg)))


def dose_update_value(card) -> float | None:
    updates = [u for s in card.suggestions for u in s.updates]
    return updates[0]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] if updates else None


# --- the label data itself
def test_the_label_revision_and_levels_are_data():
    assert LABEL_REVISION == "May 2026"
    assert [lv.mg_per_kg for lv in DOSE_LEVELS] == [5.4, 4.4, 3.2]
    assert (one_level_below(5.4), one_level_below(4.4), one_level_below(3.2)) == (4.4, 3.2, None)
    assert "28 days" in ILD_TABLE[0].action and "0.5 mg/kg/day" in ILD_TABLE[0].action
    assert "Permanently discontinue" in ILD_TABLE[1].action and "1 mg/kg/day" in ILD_TABLE[1].action


# --- dose rule: (doses given before, in order) x (drafted dose) -> verdict, suggested level
@pytest.mark.parametrize(
    "given, drafted, verdict, suggested",
    [
        ([], 5.4, "ok", None),  # first dose at the starting level
        ([], 6.4, "warning", 5.4),  # the gastric dose: 5.4 offered, no reduction on record
        ([], 5.0, "warning", 5.4),  # not a level
        ([], 3.0, "discontinue", None),  # below the lowest level: the label says discontinue
        ([5.4], 5.4, "none", None),  # continuing at the same level: nothing to say
        ([5.4, 4.4], 4.4, "none", None),  # continuing at the reduced level
        ([5.4, 4.4], 3.2, "none", None),  # a further reduction is allowed
        ([5.4, 4.4], 5.4, "warning", 4.4),  # re-escalation after one reduction
        ([5.4, 4.4, 3.2], 4.4, "warning", 3.2),  # re-escalation after two reductions
        ([5.4, 4.4, 3.2], 5.4, "warning", 3.2),
        ([5.4, 4.4, 3.2], 3.2, "none", None),
        ([5.4, 4.4], 6.4, "warning", 4.4),  # not a level, and a reduction is on record: never 5.4
        ([5.4, 4.4, 3.2], 2.4, "discontinue", None),
    ],
)
@pytest.mark.parametrize("kind", ["administration", "statement", "request"])
def test_dose_truth_table(given, drafted, verdict, suggested, kind):
    history = [tdxd_dose(kind, day(21 * (len(given) - i)), v) for i, v in enumerate(given)]
    card = ild_card(breast() + history + [ct_chest(day(10))], drafted)
    if verdict == "none":
        assert card is None
        return
    if verdict == "ok":
        assert card.indicator == "info" and dose_update_value(card) is None
        return
    assert card.indicator == "warning" and dose_update_value(card) == suggested
    detail = " ".join(card.advice)
    if verdict == "discontinue":
        assert "below the lowest label level (3.2 mg/kg)" in detail and "discontinue" in detail
    if given and suggested is not None and drafted in (4.4, 5.4):
        assert "re-escalation" in detail and "do not re-escalate" in detail


def test_a_flat_dose_update_says_the_level_in_its_words_too():
    order = draft(384, "mg")
    order["dosageInstruction"][0]["text"] = "384 mg IV every 3 weeks"
    f = facts(breast() + [weight(60.0, day(30))])
    card = ild.decide(f, asked("order-sign", [order]), card_cfg("ild_monitoring"))
    [fixed] = [u for s in card.suggestions for u in s.updates]
    assert fixed["dosageInstruction"][0]["text"] == "5.4 mg/kg IV every 3 weeks"
    assert fixed["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 5.4


def test_an_invalid_body_weight_never_converts_a_flat_dose():
    """Weights are validated where one is used (not at extraction): an invalid one is passed over."""
    bad = weight(60.0, day(30))
    bad["effectiveDateTime"] = "last week"  # not a FHIR dateTime
    card = ild_card(breast() + [bad], 324, "mg")
    assert any("no body weight on record, not checkable" in u for u in card.unknowns)
    card = ild_card(breast() + [weight(60.0, day(60)), bad], 324, "mg")  # the valid, older one is used
    assert card.indicator == "info" and not any("not checkable" in u for u in card.unknowns)


@pytest.mark.parametrize(
    "weights, drafted_mg, history, expect",
    [
        ([60.0], 324, [], "ok"),  # 324 mg at 60 kg = 5.4 mg/kg
        ([60.0], 384, [], "warning"),  # 6.4 mg/kg
        ([], 324, [], "unknown"),  # no weight: not checkable, never guessed
        ([60.0], 324, [("mg", 264)], "re-escalation"),  # 264 mg at 60 kg = 4.4 mg/kg given before
    ],
)
def test_flat_doses_are_converted_with_a_recorded_weight(weights, drafted_mg, history, expect):
    chart = breast() + [weight(w, day(30)) for w in weights]
    chart += [tdxd_dose("administration", day(21), v, unit) for unit, v in history] + [ct_chest(day(5))]
    card = ild_card(chart, drafted_mg, "mg")
    if expect == "ok":
        assert card.indicator == "info" and dose_update_value(card) is None
    elif expect == "unknown":
        assert any("no body weight on record, not checkable" in u for u in card.unknowns)
        assert dose_update_value(card) is None
    elif expect == "warning":
        assert card.indicator == "warning" and dose_update_value(card) == 5.4
    else:
        assert card.indicator == "warning" and dose_update_value(card) == 4.4


@pytest.mark.parametrize(
    "cancer",
    [
        b.condition(b.cc(b.SCT, "363349007", "Malignant tumor of stomach"), "2024-01-01"),
        b.condition(b.cc(b.ICD, "C16.9", "Malignant neoplasm of stomach, unspecified"), "2024-01-01"),
        b.condition({"text": "Ovarian cancer, high-grade serous"}, "2024-01-01"),
    ],
)
def test_another_t_dxd_indication_is_not_dose_checked(cancer):
    card = ild_card([b.patient(), cancer], 6.4)
    assert card is not None  # the ILD card is about the drug, whatever the tumour
    assert dose_update_value(card) is None and "6.4 mg/kg is not" not in " ".join(card.advice)
    assert any("dose not checked against the breast-cancer levels" in u for u in card.unknowns)


# --- the ILD card: first dose and continuing therapy
def test_first_dose_gets_the_baseline_work_up_and_the_full_table():
    card = ild_card(breast())
    assert card.summary.startswith("T-DXd first dose: baseline chest CT and SpO2")
    assert [s.label for s in card.suggestions] == ["Order baseline CT chest", "Order pulse oximetry"]
    assert any("28 days" in a for a in card.advice) and any("Permanently discontinue" in a for a in card.advice)


@pytest.mark.parametrize("days, card_expected", [(84, False), (85, True)])
def test_continuing_therapy_imaging_overdue_boundary(days, card_expected):
    chart = breast() + [tdxd_dose("administration", day(200), 5.4), ct_chest(day(days))]
    card = ild_card(chart)
    assert (card is not None) is card_expected
    if card:
        assert card.summary == "T-DXd: chest imaging overdue for ILD surveillance"
        assert "baseline" not in " ".join(card.advice).lower()
        assert [s.label for s in card.suggestions] == ["Order CT chest"]


def test_continuing_therapy_tenth_cycle_without_events_gets_no_card():
    chart = breast() + [tdxd_dose("administration", day(21 * i), 5.4) for i in range(1, 10)] + [ct_chest(day(30))]
    assert ild_card(chart) is None
    f = facts(chart)
    assert "continuing T-DXd" in ild.why_silent(f, asked("order-sign", [draft()]), card_cfg("ild_monitoring"))


def pneumonitis(onset: str, grade: int | None, resolved: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if grade:
        extra["note"] = [{"text": f"CTCAE grade {grade}"}]
    if resolved:
        extra["abatementDateTime"] = resolved
        extra["clinicalStatus"] = b.cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")
    return b.condition(b.cc(b.SCT, "205237003", "Pneumonitis"), onset, **extra)


@pytest.mark.parametrize(
    "grade, resolved_after, drafted, indicator, says, suggested",
    [
        (1, None, 5.4, "warning", "interrupt T-DXd until resolved to grade 0", None),
        (1, 28, 5.4, "warning", "the label maintains the dose", None),  # 28 days: same dose
        (1, 29, 5.4, "warning", "the label reduces the dose one level", 4.4),  # 29 days: one level lower
        (1, 29, 4.4, "warning", "the label reduces the dose one level", None),  # already reduced
        (None, None, 5.4, "warning", "Grade the ILD/pneumonitis", None),
        (2, None, 5.4, "critical", "Stop T-DXd", None),
        (3, 10, 5.4, "critical", "Stop T-DXd", None),
    ],
)
def test_ild_since_the_first_dose_by_grade(grade, resolved_after, drafted, indicator, says, suggested):
    onset = day(60)
    resolved = (TODAY - timedelta(days=60 - resolved_after)).isoformat() if resolved_after else None
    chart = breast() + [
        tdxd_dose("administration", day(120), 5.4),
        tdxd_dose("administration", day(63), 5.4),
        pneumonitis(onset, grade, resolved),
        ct_chest(day(20)),
    ]
    card = ild_card(chart, drafted)
    assert card.indicator == indicator
    assert any(says in a for a in card.advice), card.advice
    assert dose_update_value(card) == suggested
    if indicator == "critical":
        assert [a["type"] for s in card.suggestions for a in _actions(s)] == ["delete"]


def _actions(s) -> list[dict[str, Any]]:
    return [{"type": "delete"} for _ in s.deletes] + [{"type": "update"} for _ in s.updates]


def test_respiratory_symptoms_since_the_first_dose_are_a_warning_with_ct():
    chart = breast() + [
        tdxd_dose("administration", day(90), 5.4),
        b.condition(b.cc(b.SCT, "267036007", "Dyspnea"), day(5)),
        ct_chest(day(40)),
    ]
    card = ild_card(chart)
    assert card.indicator == "warning" and "respiratory symptoms" in card.summary
    assert [s.label for s in card.suggestions] == ["Order CT chest"]
    before = breast() + [
        b.condition(b.cc(b.SCT, "267036007", "Dyspnea"), day(200)),
        tdxd_dose("administration", day(90), 5.4),
        ct_chest(day(40)),
    ]
    assert ild_card(before) is None  # a symptom before the first dose is not a new one


@pytest.mark.parametrize("her2", ["3+", "1+", "0"])
def test_the_ild_card_serves_every_her2_status_and_setting(her2):
    """First line HER2-positive with pertuzumab (DB-09), neoadjuvant (DB-11), HER2-low: the same ILD card."""
    early = [b.patient(), b.breast_cancer("2026-09-01"), b.her2_ihc(her2, "2026-09-10")]
    card = ild_card(early)
    assert card is not None and card.summary.startswith("T-DXd first dose")


# --- HER2-positive history, by each route: never a HER2-low/-ultralow T-DXd card
def db06_chart() -> list[dict[str, Any]]:
    return breast() + [
        b.receptor("ER", "positive", "2023-01-20"),
        b.her2_ihc("1+", "2023-01-20"),
        b.med_statement("letrozole", "2023-02-01", "2024-06-01", status="stopped", reason="progression"),
    ]


def tdxd_card(resources: list[dict[str, Any]]):
    return rendered(tdxd.decide(facts(resources), asked("patient-view"), card_cfg("tdxd_consideration")))


def pathology_report(conclusion: str, when: str = "2019-04-01", **extra: Any) -> dict[str, Any]:
    rep = {
        "resourceType": "DiagnosticReport",
        "id": b._id("dr"),
        "status": "final",
        "category": [b.cc("http://terminology.hl7.org/CodeSystem/v2-0074", "SP", "Surgical Pathology")],
        "code": b.cc(b.LOINC, "22637-3", "Pathology report final diagnosis Narrative"),
        "subject": b.subject(),
        "effectiveDateTime": when,
        "conclusion": conclusion,
    }
    rep.update(extra)
    return rep


def test_the_base_chart_meets_db06():
    card = tdxd_card(db06_chart())
    assert card is not None and "meets" in card.summary and "DB-06" in card.summary


@pytest.mark.parametrize(
    "history, named",
    [
        ([b.her2_ihc("3+", "2019-03-01")], "HER2-positive result"),
        ([b.her2_ish("amplified", "2019-03-05")], "HER2-positive result"),
        ([pathology_report("Invasive ductal carcinoma, ER positive, HER2 positive (3+).")], "report text"),
        ([pathology_report("Primary tumour 2019: HER2/neu amplified by FISH.")], "report text"),
        (
            [
                pathology_report(
                    "See attached.",
                    presentedForm=[
                        {
                            "contentType": "text/plain",
                            "data": base64.b64encode(b"Final diagnosis: HER2-positive (IHC 3+) carcinoma").decode(),
                        }
                    ],
                )
            ],
            "report text",
        ),
        (
            [b.condition(b.cc(b.SCT, "427685000", "HER2 positive carcinoma of breast"), "2019-01-01")],
            "diagnosis of HER2-positive disease",
        ),
        ([b.med_statement("trastuzumab", "2019-04-01", "2020-04-01")], "HER2-directed therapy"),
        ([b.med_statement("pertuzumab", "2019-04-01", "2020-04-01")], "HER2-directed therapy"),
        ([b.med_statement("lapatinib", "2019-04-01", "2020-04-01", by="text")], "HER2-directed therapy"),
    ],
)
def test_her2_positive_history_by_each_route_closes_the_her2_low_pathways(history, named):
    chart = db06_chart() + history
    f = facts(chart)
    assert tdxd_card(chart) is None
    silent = tdxd.why_silent(f, asked("patient-view"))
    assert silent.startswith("HER2-positive history on record") and named in silent
    assert her2_rescore.why_silent(f, asked("patient-view"), card_cfg("her2_rescore")).startswith(
        "HER2-positive history"
    )


@pytest.mark.parametrize(
    "text",
    [
        "HER2 negative (1+).",
        "HER2 not amplified.",
        "HER2 2+, FISH not amplified",
        "Not HER2 positive.",
        "HER2-low (IHC 1+)",
    ],
)
def test_report_text_that_is_not_a_positive_statement_keeps_the_pathway(text):
    assert tdxd_card(db06_chart() + [pathology_report(text, "2023-01-20")]) is not None


def test_t_dxd_itself_proves_no_her2_positive_history():
    f = facts(db06_chart() + [tdxd_dose("administration", "2025-01-01", 5.4)])
    assert f.her2_positive_history == []
    assert tdxd.why_silent(f, asked("patient-view")) == "T-DXd already given"


# --- scope: breast cancer only
def test_another_cancer_with_her2_results_gets_no_breast_cards():
    ovarian = [
        b.patient(),
        b.condition(b.cc(b.SCT, "363443007", "Malignant tumor of ovary"), "2022-01-01"),
        b.metastasis("liver", "2023-01-10"),
        b.her2_ihc("2+", "2023-01-20"),
        b.her2_ish("not amplified", "2023-01-25"),
        b.med_statement("paclitaxel", "2023-02-01", "2023-08-01"),
    ]
    f = facts(ovarian)
    assert tdxd.decide(f, asked("patient-view"), card_cfg("tdxd_consideration")) is None
    assert her2_rescore.decide(f, asked("patient-view"), card_cfg("her2_rescore")) is None
    assert "other primary cancer: " in tdxd.why_silent(f, asked("patient-view"))


def test_results_alone_do_not_make_a_breast_cancer_patient():
    chart = [c for c in db06_chart() if "254837009" not in str(c.get("code"))]
    assert tdxd_card(chart) is None


def test_a_generic_neoplasm_with_a_breast_site_is_breast_cancer():
    generic = b.condition(
        b.cc(b.SCT, "363346000", "Malignant neoplastic disease"),
        "2018-01-01",
        bodySite=[b.cc(b.SCT, "80248007", "Left breast structure")],
    )
    chart = [generic if "254837009" in str(c.get("code")) else c for c in db06_chart()]
    assert tdxd_card(chart) is not None


# --- DB-06 per the label, 0+, imlunestrant, TROP2, ERBB2 by sequencing, unresectable, lines spanning settings
def test_db06_after_metastatic_chemotherapy_is_met_and_names_the_trial_population():
    card = tdxd_card(db06_chart() + [b.med_statement("capecitabine", "2024-07-01", "2025-01-01")])
    assert "DB-06" in card.summary
    assert any("enrolled patients without chemotherapy for advanced disease" in a for a in card.advice)


def test_ultralow_after_chemotherapy_falls_into_db06_not_silence():
    chart = [c for c in db06_chart() if "85319-2" not in str(c.get("code"))]
    chart += [
        b.her2_ihc("0", "2023-01-20", membrane="faint-le-10"),
        b.med_statement("paclitaxel", "2024-07-01", "2025-01-01"),
    ]
    card = tdxd_card(chart)
    assert card is not None and "HER2-ultralow" in card.summary and "DB-06" in card.summary


def test_0_plus_is_ultralow_by_notation_and_hedged():
    chart = [c for c in db06_chart() if "85319-2" not in str(c.get("code"))] + [b.her2_ihc("0+", "2023-01-20")]
    f = facts(chart)
    assert f.her2.current.by_notation
    card = tdxd_card(chart)
    assert "may meet" in card.summary
    assert any('"0+"' in u and "confirm" in u for u in card.unknowns)
    assert her2_rescore.decide(f, asked("patient-view"), card_cfg("her2_rescore")) is None


def test_imlunestrant_is_an_endocrine_therapy():
    chart = [c for c in db06_chart() if c.get("resourceType") != "MedicationStatement"]
    chart.append(
        b.med_statement("imlunestrant 200 mg tablet", "2023-02-01", "2024-06-01", reason="progression", by="text")
    )
    assert "DB-06" in tdxd_card(chart).summary


def test_a_trop2_adc_as_the_only_advanced_therapy_is_an_unknown_not_a_failure():
    tnbc = breast() + [
        b.receptor("ER", "negative", "2023-01-20"),
        b.receptor("PR", "negative", "2023-01-20"),
        b.her2_ihc("1+", "2023-01-20"),
        b.med_statement("sacituzumab govitecan", "2023-02-01", "2023-09-01", by="text"),
    ]
    card = tdxd_card(tnbc)
    assert card is not None and "may meet" in card.summary
    assert any("TROP2" in u and "chemotherapy" in u for u in card.unknowns)


def erbb2_ngs(value: str) -> dict[str, Any]:
    return b.observation(
        b.cc(b.LOINC, "69548-6", "Genetic variant assessment"),
        "2023-03-01",
        valueCodeableConcept=b.cc(b.LOINC, "LA9633-4", "Present"),
        component=[
            {
                "code": b.cc(b.LOINC, "48018-6", "Gene studied [ID]"),
                "valueCodeableConcept": b.cc("http://www.genenames.org", "HGNC:3430", "ERBB2"),
            },
            {"code": b.cc(b.LOINC, "48019-4", "DNA change type"), "valueCodeableConcept": {"text": value}},
        ],
    )


def test_erbb2_amplification_by_sequencing_hedges_and_suggests_ish():
    card = tdxd_card(db06_chart() + [erbb2_ngs("Copy number gain (amplification)")])
    assert "may meet" in card.summary
    assert any("sequencing is not an ASCO/CAP HER2 test" in u for u in card.unknowns)
    assert "Request HER2 ISH on the latest sample" in [s.label for s in card.suggestions]
    mutation = tdxd_card(db06_chart() + [erbb2_ngs("Missense variant L755S")])
    assert "meets" in mutation.summary and any("context: ERBB2 finding" in e for e in mutation.evidence)


def test_unresectable_locally_advanced_disease_is_the_advanced_setting():
    chart = [
        b.patient(),
        b.breast_cancer("2023-01-01", note=[{"text": "Locally advanced, unresectable (T4d N2)."}]),
        b.receptor("ER", "positive", "2023-01-20"),
        b.her2_ihc("1+", "2023-01-20"),
        b.med_statement("letrozole", "2023-02-01", "2024-06-01", status="stopped", reason="progression"),
    ]
    card = tdxd_card(chart)
    assert card is not None and "unresectable breast cancer" in card.summary
    assert (
        tdxd_card([c for c in chart if c.get("resourceType") != "Condition"] + [b.breast_cancer("2023-01-01")]) is None
    )


def test_an_adjuvant_aromatase_inhibitor_running_into_the_metastatic_setting_counts():
    chart = [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("bone", "2024-03-01"),
        b.receptor("ER", "positive", "2019-01-20"),
        b.her2_ihc("1+", "2024-03-10"),
        b.med_statement("letrozole", "2019-03-01", "2025-06-01", status="stopped"),
        b.med_statement("ribociclib", "2024-03-15", "2025-06-01", status="stopped"),
        b.disease_status("progression", "2025-05-20"),
    ]
    f = facts(chart)
    [letrozole] = [ln for ln in f.therapy.lines if "letrozole" in ln.drugs]
    assert letrozole.setting == "metastatic" and letrozole.outcome == "progressed"
    assert "DB-06" in tdxd_card(chart).summary


# --- the body weight a flat dose is converted with, pinned row by row
LB = 0.45359237


@pytest.mark.parametrize(
    "quantity, kg",
    [
        ({"value": 60, "unit": "kg", "code": "kg"}, 60.0),
        ({"value": 60}, 60.0),  # no unit: kg
        ({"value": 60, "code": "KG"}, 60.0),
        ({"value": 60 / LB, "code": "[lb_av]"}, 60.0),
        ({"value": 60 / LB, "unit": "lb"}, 60.0),  # the unit when there is no code
        ({"value": 60 / LB, "code": "[lb_av]", "unit": "pound"}, 60.0),  # the code first
        ({"value": 60000, "code": "g"}, 60.0),
        ({"value": 20000, "code": "g"}, 20.0),  # the lower bound, in grams
        ({"value": 60.04, "code": "kg"}, 60.0),  # one decimal
        ({"value": 60.06, "code": "kg"}, 60.1),
        ({"value": 20, "code": "kg"}, 20.0),
        ({"value": 19.9, "code": "kg"}, None),
        ({"value": 400, "code": "kg"}, 400.0),
        ({"value": 400.1, "code": "kg"}, None),
        ({"value": 60, "code": "kg", "comparator": "<"}, None),
        ({"value": 60, "code": "cm"}, None),
        ({"value": True, "code": "kg"}, None),
        ({"value": "60", "code": "kg"}, None),
        ("60 kg", None),
    ],
)
def test_body_weight_reading(quantity, kg):
    from cds_service.facts.dosing import read_weight

    obs = weight(1, "2026-03-01")
    obs["valueQuantity"] = quantity
    w = read_weight(obs)
    assert (w.kg if w else None) == kg
    if w:
        assert (w.evidence.ref, w.evidence.when) == (f"Observation/{obs['id']}", date(2026, 3, 1))
        assert w.evidence.text == f"body weight {kg:g} kg"


@pytest.mark.parametrize(
    "when, expected",
    [
        (date(2026, 3, 1), 60.0),  # a weight on the day of the dose counts
        (date(2026, 4, 1), 60.0),  # the nearest before, not the oldest
        (date(2026, 2, 1), 50.0),  # not a later one; a weight with no date is the last resort
        (date(2025, 6, 1), 80.0),  # only the undated one precedes
        (None, 70.0),  # the dose's date unknown: the latest weight
    ],
)
def test_the_weight_used_is_the_nearest_before_the_dose(when, expected):
    from cds_service.facts.dosing import DoseHistory, read_weight

    weights = [weight(50, "2026-01-01"), weight(60, "2026-03-01"), weight(70, "2026-05-01"), weight(80, "2026-01-01")]
    del weights[3]["effectiveDateTime"]
    history = DoseHistory(weights=[w for o in weights if (w := read_weight(o))])
    chosen = history.weight_on(when)
    assert chosen is not None and chosen.kg == expected


# --- the ILD card's words, pinned: what a clinician reads for each event (ids and dates are the chart's)
def _words(line: str) -> str:
    return re.sub(r"\b(Condition|MedicationAdministration|Procedure)/[\w.-]+", r"\1/…", line)


@pytest.mark.parametrize(
    "grade, resolved_after, advice, event",
    [
        (
            1,
            None,
            "Grade 1, not recorded as resolved: interrupt T-DXd until resolved to grade 0; consider corticosteroids "
            "(≥0.5 mg/kg/day prednisolone or equivalent).",
            "ILD/pneumonitis since the first T-DXd dose, grade 1, onset 2026-09-26, not recorded as resolved",
        ),
        (
            1,
            28,
            "Grade 1 resolved in 28 days (≤28): the label maintains the dose.",
            "ILD/pneumonitis since the first T-DXd dose, grade 1, onset 2026-09-26, resolved 2026-10-24 (28 days after "
            "onset)",
        ),
        (
            1,
            "no date",
            "Grade 1, resolution date not recorded: the dose to resume depends on it (28 days from onset).",
            "ILD/pneumonitis since the first T-DXd dose, grade 1, onset 2026-09-26, recorded as resolved, date not "
            "recorded",
        ),
        (
            None,
            None,
            "Grade the ILD/pneumonitis: grade 1 — interrupt until resolved to grade 0; grade ≥2 — discontinue "
            "permanently and start systemic corticosteroids.",
            "ILD/pneumonitis since the first T-DXd dose, grade not recorded, onset 2026-09-26, not recorded as "
            "resolved",
        ),
        (
            2,
            None,
            "Stop T-DXd: after grade ≥2 (symptomatic) ILD/pneumonitis the label requires permanent discontinuation; do "
            "not re-challenge.",
            "prior T-DXd-associated ILD/pneumonitis grade ≥2: Pneumonitis, grade 2; onset 2026-09-26 during T-DXd "
            "exposure (from 2026-07-28) (2026-09-26; Condition/…)",
        ),
    ],
)
def test_the_ild_card_says_for_each_event(grade, resolved_after, advice, event):
    onset = day(60)
    resolved = (TODAY - timedelta(days=60 - resolved_after)).isoformat() if isinstance(resolved_after, int) else None
    p = pneumonitis(onset, grade, resolved)
    if resolved_after == "no date":
        p["clinicalStatus"] = b.cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")
    chart = breast() + [
        tdxd_dose("administration", day(120), 5.4),
        tdxd_dose("administration", day(63), 5.4),
        p,
        ct_chest(day(20)),
    ]
    card = ild_card(chart, 5.4)
    assert card.advice[0] == advice
    assert card.advice[-len(ILD_TABLE) :] == ild_table_lines()  # the label's table in full, after the advice
    assert any(_words(e).startswith(event) for e in card.evidence), card.evidence


@pytest.mark.parametrize(
    "imaging, line",
    [
        (
            90,
            "chest imaging overdue: last chest imaging 2026-08-27 (Procedure/…): 90 days ago, longer than this site's "
            "interval of 12 weeks (84 days)",
        ),
        (
            None,
            "chest imaging overdue: no chest imaging since the first dose (2026-05-09): 200 days ago, longer than this "
            "site's interval of 12 weeks (84 days)",
        ),
    ],
)
def test_the_overdue_imaging_line_counts_days_from_the_latest_imaging(imaging, line):
    chart = breast() + [tdxd_dose("administration", day(200), 5.4)]
    if imaging:
        chart += [ct_chest(day(300)), ct_chest(day(imaging)), ct_chest(day(150))]  # the latest one counts
    card = ild_card(chart)
    assert _words(card.evidence[0]) == line
    assert (
        card.advice[0] == "Chest imaging is overdue by this site's interval (the label sets none): consider a chest CT."
    )


# --- when an ILD/pneumonitis resolved (the 28-day rule turns on it), by each way a record says so
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


@pytest.mark.parametrize(
    "fields, resolved, undated",
    [
        ({}, None, False),
        ({"clinicalStatus": b.cc(CLINICAL, "active")}, None, False),
        ({"abatementDateTime": "2026-10-20"}, date(2026, 10, 20), False),
        ({"abatementPeriod": {"start": "2026-10-10", "end": "2026-10-20"}}, date(2026, 10, 20), False),
        ({"abatementPeriod": {"start": "2026-10-10"}}, date(2026, 10, 10), False),
        ({"abatementPeriod": {"end": "2026-10-21"}}, date(2026, 10, 21), False),
        ({"clinicalStatus": b.cc(CLINICAL, "resolved")}, None, True),
        ({"clinicalStatus": b.cc(CLINICAL, "inactive")}, None, True),
        ({"clinicalStatus": b.cc(CLINICAL, "remission")}, None, True),
        ({"abatementString": "resolved after steroids"}, None, True),
        ({"clinicalStatus": b.cc(CLINICAL, "resolved"), "abatementDateTime": "2026-10-20"}, date(2026, 10, 20), False),
    ],
)
def test_ild_resolution_by_each_way_a_record_says_it(fields, resolved, undated):
    p = pneumonitis(day(60), 1)
    p.update(fields)
    chart = breast() + [tdxd_dose("administration", day(120), 5.4), p]
    [event] = facts(chart).ild.events
    assert (event.resolved, event.resolved_undated, event.onset) == (resolved, undated, date(2026, 9, 26))
    assert event.tdxd_associated and event.grade == 1
    assert event.evidence.when == date(2026, 9, 26)


@pytest.mark.parametrize(
    "note, grade, line",
    [
        ("CTCAE grade 2", 2, "Pneumonitis, grade 2; onset 2026-09-26 during T-DXd exposure (from 2026-07-28)"),
        (None, None, "Pneumonitis, grade not recorded; onset 2026-09-26 during T-DXd exposure (from 2026-07-28)"),
    ],
)
def test_the_ild_event_line_names_its_grade(note, grade, line):
    p = b.condition(b.cc(b.SCT, "205237003", "Pneumonitis"), day(60))
    if note:
        p["note"] = [{"text": note}]
    [event] = facts(breast() + [tdxd_dose("administration", day(120), 5.4), p]).ild.events
    assert event.grade == grade and event.evidence.text == line


# --- ERBB2 by sequencing, by each place a genomics result puts its words (code, value, interpretation, components)
def _genomic(**fields: Any) -> dict[str, Any]:
    obs = {
        "resourceType": "Observation",
        "id": b._id("gen"),
        "status": "final",
        "subject": b.subject(),
        "effectiveDateTime": "2025-05-01",
        "code": {"text": "Genomic finding"},
    }
    obs.update(fields)
    return obs


HGNC = {"coding": [{"system": "http://www.genenames.org", "code": "HGNC:3430"}]}
GAIN = {"coding": [{"system": "http://loinc.org", "code": "LA14033-7"}]}


@pytest.mark.parametrize(
    "fields, kind",
    [
        ({"code": {"text": "ERBB2 gene amplification"}}, "gain"),
        ({"code": HGNC, "valueCodeableConcept": GAIN}, "gain"),  # codes alone, no words
        ({"code": {"text": "ERBB2 copy number"}, "interpretation": [{"text": "amplified"}]}, "gain"),
        (
            {
                "component": [
                    {"code": {"text": "Gene studied"}, "valueCodeableConcept": HGNC},
                    {"code": {"text": "Finding"}, "valueString": "amplification detected"},
                ]
            },
            "gain",
        ),
        ({"code": {"text": "ERBB2"}, "valueString": "not amplified"}, "other"),
        ({"code": {"text": "ERBB2 mutation"}, "valueString": "p.L755S"}, "other"),
        ({"code": {"text": "ESR1 amplification"}}, None),  # another gene
    ],
)
def test_erbb2_by_sequencing_from_every_place_words_are(fields, kind):
    from cds_service.facts.her2.history import erbb2_sequencing

    obs = _genomic(**fields)
    gains, other = erbb2_sequencing([obs])
    found = {"gain": gains, "other": other}
    if kind is None:
        assert gains == [] and other == []
        return
    [ev] = found[kind]
    assert (ev.ref, ev.when) == (f"Observation/{obs['id']}", date(2025, 5, 1))
    assert ev.text == (
        "ERBB2 amplification / copy-number gain by sequencing"
        if kind == "gain"
        else "ERBB2 finding by sequencing (not an amplification)"
    )


@pytest.mark.parametrize(
    "text, phrases",
    [
        (
            "Invasive ductal carcinoma, grade 3. HER2 positive (IHC 3+). ER negative.",
            ["carcinoma, grade 3. HER2 positive (IHC 3+). ER negati"],  # 20 characters either side
        ),
        ("HER2 POSITIVE OR NEGATIVE: pending", []),  # a question, in capitals
        ("The tumour is not HER2 positive.", []),
        ("HER2 (FISH): amplified", ["HER2 (FISH): amplified"]),
    ],
)
def test_positive_statements_quote_the_phrase(text, phrases):
    from cds_service.facts.her2.history import positive_statements

    assert positive_statements(text) == phrases


# --- the dose check's words and boundaries, pinned (each row is what the card's dose line says)
def _check(chart, drafted):
    from cds_service.rules.dose import check_dose

    request = asked("order-sign", [drafted])
    [order] = request.drafts
    return check_dose(facts(chart), order, request.draft_refs)


BELOW = (
    "is below the lowest label level (3.2 mg/kg): if a further dose reduction is needed, the label says discontinue "
    "T-DXd."
)
NOT_A_LEVEL = "is not a breast-cancer dose level (5.4 / 4.4 / 3.2 mg/kg)"


@pytest.mark.parametrize(
    "dose, problem, note, suggest",
    [
        (6.4, f"Drafted dose 6.4 mg/kg {NOT_A_LEVEL} (6.4 mg/kg is the gastric cancer dose).", None, 5.4),
        (6.45, f"Drafted dose 6.45 mg/kg {NOT_A_LEVEL} (6.4 mg/kg is the gastric cancer dose).", None, 5.4),
        (6.0, f"Drafted dose 6 mg/kg {NOT_A_LEVEL}.", None, 5.4),
        (5.45, None, None, None),  # within 0.05 of 5.4
        (5.35, None, None, None),
        (5.34, f"Drafted dose 5.34 mg/kg {NOT_A_LEVEL}.", None, 5.4),
        (4.4, None, "drafted dose 4.4 mg/kg: label level (first dose reduction)", None),
        (3.15, None, "drafted dose 3.15 mg/kg: label level (second dose reduction)", None),  # the boundary is 3.2's
        (3.14, f"Drafted dose 3.14 mg/kg {BELOW}", None, None),
        (2.4, f"Drafted dose 2.4 mg/kg {BELOW}", None, None),
    ],
)
def test_the_dose_check_says(dose, problem, note, suggest):
    check = _check(breast(), draft(dose))
    assert (check.problem, check.note, check.suggest, check.dose) == (problem, note, suggest, dose)


def _reduced_to_4_4() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A chart with 5.4 then 4.4 given, and the record of the first reduction."""
    reduced = tdxd_dose("administration", day(39), 4.4)
    return breast() + [tdxd_dose("administration", day(60), 5.4), reduced], reduced


def test_a_re_escalation_names_the_first_reduction_and_its_date():
    chart, reduced = _reduced_to_4_4()
    check = _check(chart, draft(5.4))
    assert check.problem == (
        f"Drafted dose 5.4 mg/kg is a re-escalation: dose reduced to 4.4 mg/kg on record (first reduction "
        f"MedicationAdministration/{reduced['id']}, {day(39)}). The label says do not re-escalate after a dose "
        "reduction."
    )
    assert check.suggest == 4.4
    assert _check(chart, draft(4.45)).problem is None
    assert _check(chart, draft(4.46)).suggest == 4.4


def test_a_grade_1_ild_after_a_dose_on_its_onset_day_reduces_from_that_dose():
    """The dose before the event includes one given on the day of onset: 4.4 that day, resolved after 35 days:
    one level lower is 3.2."""
    p = pneumonitis(day(60), 1, day(25))
    chart = breast() + [tdxd_dose("administration", day(90), 5.4), tdxd_dose("administration", day(60), 4.4), p]
    check = _check(chart, draft(4.4))
    assert check.problem == (
        f"Drafted dose 4.4 mg/kg is a re-escalation: grade 1 ILD/pneumonitis (Condition/{p['id']}) resolved 35 days "
        "after onset: the label reduces the dose one level, from 4.4 to 3.2 mg/kg. The label says do not re-escalate "
        "after a dose reduction."
    )
    assert check.suggest == 3.2


def test_a_flat_dose_is_checked_in_hundredths_of_a_mg_per_kg():
    check = _check(breast() + [weight(70, day(5))], draft(300, "mg"))
    assert (check.dose, check.problem) == (4.29, f"Drafted dose 4.29 mg/kg {NOT_A_LEVEL}.")


def test_without_a_cancer_diagnosis_the_check_says_which_levels_it_used():
    check = _check([b.patient()], draft(5.4))
    assert check.note == "no cancer diagnosis on record: checked against the breast-cancer levels"
    assert _check([b.patient()], draft(2.0)).note == check.note


# --- why the re-scoring card is silent, and what it offers, pinned row by row
OVARY = b.cc(b.SCT, "363443007", "Malignant tumor of ovary")


@pytest.mark.parametrize(
    "chart, silence",
    [
        (
            lambda: [b.patient(), b.condition(OVARY, "2022-01-01"), b.her2_ihc("2+", "2023-01-01")],
            "no breast cancer on record (HER2, ER or PR results alone do not make one); other primary cancer: "
            "Malignant tumor of ovary (sct|363443007)",
        ),
        (
            lambda: [b.patient(), b.her2_ihc("2+", "2023-01-01")],
            "no breast cancer on record (HER2, ER or PR results alone do not make one)",
        ),
        (
            lambda: [b.patient(), b.breast_cancer("2018-01-01"), b.her2_ihc("0", "2023-01-01")],
            "no metastatic or unresectable disease on record",
        ),
        (lambda: breast() + [b.her2_ihc("3+", "2025-06-01", site="liver")], "HER2-positive history on record"),
        (lambda: breast() + [b.her2_ihc("1+", "2025-06-01", site="liver")], "the HER2 picture is actionable as it "),
    ],
)
def test_why_the_rescore_card_is_silent(chart, silence):
    assert her2_rescore.why_silent(facts(chart()), asked("patient-view"), card_cfg("her2_rescore")).startswith(silence)


def test_the_rescore_card_is_silent_beside_an_order_that_is_not_a_breast_cancer_therapy():
    antiemetic = b.med_request("capecitabine", TODAY.isoformat(), status="draft", id="d-ond")
    antiemetic["medicationCodeableConcept"] = {"text": "ondansetron 8 mg"}
    f = facts(breast())
    assert her2_rescore.why_silent(f, asked("order-select", [antiemetic]), card_cfg("her2_rescore")) == (
        "the order is not a systemic breast-cancer therapy this service recognises"
    )


@pytest.mark.parametrize(
    "result, label, first_evidence",
    [
        (None, "Request HER2 IHC re-scoring / pathology review", "no HER2 result found"),
        (lambda: b.her2_ihc("2+", "2025-06-01", site="liver"), "Order reflex HER2 ISH", "HER2 history: "),
        (
            lambda: b.her2_ihc("0", "2025-06-01", site="liver"),
            "Request HER2 IHC re-scoring / pathology review",
            "HER2 history: ",
        ),
    ],
)
def test_what_the_rescore_card_offers(result, label, first_evidence):
    chart = breast() + ([result()] if result else [])
    d = her2_rescore.decide(facts(chart), asked("patient-view"), card_cfg("her2_rescore"))
    assert [s.label for s in d.suggestions] == [label]
    assert d.evidence[0].startswith(first_evidence)
    assert d.evidence[-1] == "HR status unknown: no ER or PR result"
    assert d.overrides == ["already-addressed", "not-a-candidate", "data-incorrect"]


def test_another_primary_cancer_turns_the_dose_check_off_and_says_why():
    check = _check(breast() + [b.condition(OVARY, "2022-01-01")], draft(6.4))
    assert check == type(check)(
        note="dose not checked against the breast-cancer levels (other primary cancer: Malignant tumor of ovary "
        "(sct|363443007)): T-DXd has other doses there (6.4 mg/kg in gastric cancer)"
    )


def test_a_dose_that_is_no_level_after_a_reduction_says_both():
    chart, reduced = _reduced_to_4_4()
    check = _check(chart, draft(6.0))
    assert check.problem == (
        f"Drafted dose 6 mg/kg {NOT_A_LEVEL}; dose reduced to 4.4 mg/kg on record (first reduction "
        f"MedicationAdministration/{reduced['id']}, {day(39)}): the label says do not re-escalate."
    )
    assert check.suggest == 4.4


def test_without_a_cancer_diagnosis_a_level_and_the_scope_are_both_said():
    assert _check([b.patient()], draft(4.4)).note == (
        "drafted dose 4.4 mg/kg: label level (first dose reduction); no cancer diagnosis on record: checked against "
        "the breast-cancer levels"
    )
    assert _check([b.patient()], draft(6.0)).note == (
        "no cancer diagnosis on record: checked against the breast-cancer levels"
    )


def test_a_grade_1_ild_reduces_from_the_last_dose_before_its_onset():
    """Three doses before the onset (5.4, 5.4, 4.4) and one undated: one level below the last one, 4.4 -> 3.2."""
    p = pneumonitis(day(60), 1, day(25))
    undated = tdxd_dose("administration", day(100), 5.4)
    del undated["effectiveDateTime"]
    chart = breast() + [
        tdxd_dose("administration", day(130), 5.4),
        tdxd_dose("administration", day(110), 5.4),
        tdxd_dose("administration", day(70), 4.4),
        undated,
        p,
    ]
    check = _check(chart, draft(4.4))
    assert check.suggest == 3.2 and "from 4.4 to 3.2 mg/kg" in check.problem


# --- how a dose is read from a medication record, pinned row by row (structured first, then the dosage text)
def _q(value: Any, code: str | None = None, unit: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if code is not None:
        q["code"] = code
    if unit is not None:
        q["unit"] = unit
    return q


@pytest.mark.parametrize(
    "dosage, expected",
    [
        ({"doseAndRate": [{"doseQuantity": _q(5.4, "mg/kg", "mg/kg")}]}, (5.4, None, "5.4 mg/kg")),
        (
            {"doseAndRate": [{"doseQuantity": _q(5.4, "mg/kg", "milligram per kilogram")}]},
            (5.4, None, "5.4 milligram per kilogram"),
        ),
        ({"doseAndRate": [{"doseQuantity": _q(5.4, unit="mg / kg")}]}, (5.4, None, "5.4 mg / kg")),  # no code: the unit
        ({"doseAndRate": [{"doseQuantity": _q(5.4, "mg/kg{dose}")}]}, (5.4, None, "5.4 mg/kg{dose}")),
        ({"doseAndRate": [{"doseQuantity": _q(384, "mg", "milligram")}]}, (None, 384.0, "384 milligram")),
        ({"doseAndRate": [{"doseQuantity": _q(384, unit="MG")}]}, (None, 384.0, "384 MG")),
        ({"doseAndRate": [{"doseQuantity": _q(2, "g")}]}, (None, None, "2 g")),  # read, not a dose in mg
        ({"doseAndRate": [{"doseQuantity": _q(5.4)}]}, (None, None, "5.4")),  # no unit
        (  # an unreadable value is passed over for the next quantity
            {"doseAndRate": [{"doseQuantity": _q(True, "mg/kg")}, {"doseQuantity": _q(4.4, "mg/kg")}]},
            (4.4, None, "4.4 mg/kg"),
        ),
        ({"doseAndRate": [{"doseQuantity": _q("5.4", "mg/kg")}], "text": "4.4 mg/kg IV"}, (4.4, None, "4.4 mg/kg IV")),
        ({"dose": _q(4.4, "mg/kg")}, (4.4, None, "4.4 mg/kg")),  # an administration's dosage.dose
        ({"text": "5.4 mg/kg IV every 3 weeks"}, (5.4, None, "5.4 mg/kg IV every 3 weeks")),
        ({"text": "384 mg IV every 3 weeks"}, (None, 384.0, "384 mg IV every 3 weeks")),
        ({"text": "4.4mg / kg, then 384 mg"}, (4.4, None, "4.4mg / kg, then 384 mg")),  # mg/kg first
        ({"text": "as directed"}, (None, None, "as directed")),
        ({"text": "x" * 100}, (None, None, "x" * 80)),  # the words kept are capped
    ],
)
def test_how_a_dose_is_read(dosage, expected):
    from cds_service.facts.orders import read_quantity

    request = {"resourceType": "MedicationRequest", "dosageInstruction": [dosage]}
    assert read_quantity(request) == expected


@pytest.mark.parametrize("rtype, key", [("MedicationStatement", "dosage"), ("MedicationAdministration", "dosage")])
def test_a_draft_of_each_medication_type_is_read_with_its_dose(rtype, key):
    from cds_service.facts.orders import read_drafts

    res = draft(4.4)
    res["resourceType"] = rtype
    dosage = res.pop("dosageInstruction")[0]
    res[key] = dosage if rtype == "MedicationAdministration" else [dosage]
    [order] = read_drafts({"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": res}]}}, TS)
    assert order.is_tdxd and order.dose_mg_per_kg == 4.4


def test_a_draft_naming_a_contained_medication_is_read():
    from cds_service.facts.orders import read_drafts

    res = draft(5.4)
    concept = res.pop("medicationCodeableConcept")
    res["contained"] = [{"resourceType": "Medication", "id": "m1", "code": concept}]
    res["medicationReference"] = {"reference": "#m1"}
    [order] = read_drafts({"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": res}]}}, TS)
    assert order.is_tdxd and order.dose_mg_per_kg == 5.4


# --- why the T-DXd card is silent, in each case, as the explain output and the audit say it
def _antiemetic() -> dict[str, Any]:
    d = b.med_request("capecitabine", TODAY.isoformat(), status="draft", id="d-ond")
    d["medicationCodeableConcept"] = {"text": "ondansetron 8 mg"}
    return d


@pytest.mark.parametrize(
    "chart, drafts, hook, silence",
    [
        (lambda: [b.patient(), b.her2_ihc("1+", "2023-01-01")], [], "patient-view", "no breast cancer on record"),
        (
            lambda: [b.patient(), b.condition(OVARY, "2022-01-01"), b.her2_ihc("2+", "2023-01-01")],
            [],
            "patient-view",
            "no breast cancer on record (other primary cancer: Malignant tumor of ovary (sct|363443007))",
        ),
        (
            lambda: [b.patient(), b.breast_cancer("2018-01-01"), b.her2_ihc("1+", "2023-01-01")],
            [],
            "patient-view",
            "no metastatic or unresectable disease on record",
        ),
        (
            lambda: breast() + [b.her2_ihc("0", "2025-06-01", site="liver", membrane="absent")],
            [],
            "patient-view",
            "HER2 is HER2-null (IHC 0, no staining), not HER2-low or -ultralow (the re-scoring card speaks when the "
            "picture is unclear)",
        ),
        (
            lambda: breast(),
            [],
            "patient-view",
            "HER2 is unknown, not HER2-low or -ultralow (the re-scoring card speaks when the picture is unclear)",
        ),
        (
            lambda: db06_chart() + [tdxd_dose("administration", day(30), 5.4)],
            [],
            "patient-view",
            "T-DXd already given",
        ),
        (
            lambda: db06_chart(),
            [_antiemetic],
            "order-select",
            "the order is not a systemic breast-cancer therapy this service recognises",
        ),
        (
            lambda: db06_chart(),
            [lambda: draft(5.4)],
            "order-select",
            "the order is T-DXd itself: the ILD monitoring card speaks instead",
        ),
    ],
)
def test_why_the_tdxd_card_is_silent(chart, drafts, hook, silence):
    f = facts(chart())
    assert tdxd.why_silent(f, asked(hook, [d() for d in drafts])) == silence


def test_a_her2_positive_result_silences_with_its_evidence():
    ihc = b.her2_ihc("3+", "2019-03-01")
    f = facts(db06_chart() + [ihc])
    assert tdxd.why_silent(f, asked("patient-view")) == (
        f"HER2-positive history on record (HER2-positive result: HER2-positive: IHC 3+; specimen site not recorded; "
        f"2019-03-01; "
        f"Observation/{ihc['id']} (read from free text) (2019-03-01; Observation/{ihc['id']})): DESTINY-Breast04/-06 "
        "enrolled only patients never HER2-positive; HER2-positive disease has its own pathways"
    )


# --- the ILD card's edges: the day of the first dose, the list of doses, why it is silent
def test_an_event_or_a_symptom_on_the_day_of_the_first_dose_is_since_the_first_dose():
    first = day(120)
    for finding in (pneumonitis(first, 1), b.condition(b.cc(b.SCT, "49727002", "Cough"), first)):
        chart = breast() + [tdxd_dose("administration", first, 5.4), finding, ct_chest(day(20))]
        card = ild_card(chart)
        assert card is not None and card.indicator == "warning", finding["code"]


@pytest.mark.parametrize("doses, shown, more", [(6, 6, False), (7, 6, True)])
def test_the_doses_given_are_listed_up_to_six(doses, shown, more):
    given = [tdxd_dose("administration", day(21 * i + 30), 5.4) for i in range(doses)]
    chart = breast() + given + [pneumonitis(day(25), 1), ct_chest(day(20))]
    card = ild_card(chart)
    [line] = [e for e in card.evidence if e.startswith("T-DXd given: ")]
    dates, refs = line.removeprefix("T-DXd given: ").split(" (", 1)
    assert len(dates.removesuffix(" …").split(", ")) == shown and dates.endswith(" …") is more
    assert refs.count("MedicationAdministration/") == shown and refs.count("; ") == shown - 1


@pytest.mark.parametrize(
    "hook, chart, drafts, silence",
    [
        ("patient-view", lambda: breast(), [], "no T-DXd on record as active"),
        (
            "order-select",
            lambda: breast(),
            [lambda: b.med_request("capecitabine", TODAY.isoformat(), status="draft", id="d-cape")],
            "the order is not T-DXd",
        ),
        (
            "order-sign",
            lambda: (
                breast() + [tdxd_dose("administration", day(21 * i), 5.4) for i in range(1, 5)] + [ct_chest(day(30))]
            ),
            [lambda: draft(5.4)],
            "continuing T-DXd: no ILD event or symptom since the first dose, dose as allowed, chest imaging current",
        ),
    ],
)
def test_why_the_ild_card_is_silent(hook, chart, drafts, silence):
    f = facts(chart())
    assert ild.why_silent(f, asked(hook, [d() for d in drafts]), card_cfg("ild_monitoring")) == silence


# --- hormone-receptor status by each way an ER result is written, pinned (the DB-06 criterion reads it)
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _er(**value: Any) -> dict[str, Any]:
    o = b.receptor("ER", 1)
    del o["valueQuantity"]
    o.update(value)
    return o


@pytest.mark.parametrize(
    "value, status, line",
    [
        ({"valueQuantity": {"value": 40, "unit": "percent"}}, "positive", "ER positive (40%)"),
        (
            {"valueQuantity": {"value": 40, "code": "%", "system": "http://unitsofmeasure.org"}},
            "positive",
            "ER positive (40%)",
        ),
        ({"valueQuantity": {"value": 1, "unit": "%", "comparator": "<"}}, "negative", "ER negative (<1%)"),
        ({"valueString": "less than 1% of cells"}, "negative", "ER negative (<1%)"),
        (
            {
                "valueCodeableConcept": {"text": "see interpretation"},
                "interpretation": [b.cc(V3_INTERPRETATION, "POS")],
            },
            "positive",
            "ER positive",
        ),
        (
            {
                "valueCodeableConcept": {"text": "see interpretation"},
                "interpretation": [b.cc(V3_INTERPRETATION, "NEG")],
            },
            "negative",
            "ER negative",
        ),
    ],
)
def test_hormone_receptor_status_by_each_way_er_is_written(value, status, line):
    er = _er(**value)
    f = facts(breast() + [er, b.receptor("PR", "negative")])
    assert f.hr.status == status
    assert f.hr.evidence()[0].line() == f"{line} (2025-06-01; Observation/{er['id']})"


def test_without_er_or_pr_the_status_is_unknown_and_said():
    f = facts(breast())
    assert (f.hr.status, f.hr.notes) == ("unknown", ["no readable ER or PR result: hormone-receptor status unknown"])
    assert facts(breast() + [b.receptor("PR", "positive")]).hr.status == "positive"


# --- all the words of a pathology report, by each place a report holds them
def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"conclusion": "HER2 positive (3+)."}, "HER2 positive (3+)."),
        ({"conclusionCode": [{"text": "HER2 amplified"}, {"text": "ER positive"}]}, "HER2 amplified\nER positive"),
        (
            {"conclusion": "IDC.", "presentedForm": [{"contentType": "text/plain", "data": _b64("HER2 3+ é")}]},
            "IDC.\nHER2 3+ é",
        ),
        (  # a bad form is passed over for the next
            {
                "presentedForm": [
                    {"contentType": "text/plain", "data": "%%%not base64%%%"},
                    {"contentType": "text/plain; charset=utf-8", "data": _b64("second form")},
                ]
            },
            "second form",
        ),
        ({"presentedForm": [{"contentType": "application/pdf", "data": _b64("HER2 3+")}]}, ""),  # not plain text
        ({"presentedForm": [{"data": _b64("HER2 3+")}]}, ""),  # no content type
        ({"presentedForm": [{"contentType": "text/plain", "data": _b64("\xff")[:-2] + "=="}]}, None),
    ],
)
def test_all_the_words_of_a_report(fields, words):
    from cds_service.fhir.pathology import report_text

    text = report_text({"resourceType": "DiagnosticReport", "status": "final", **fields})
    if words is None:
        assert isinstance(text, str)  # undecodable bytes are replaced, never an error
    else:
        assert text == words


def test_a_plain_text_form_at_the_size_limit_is_not_read():
    from cds_service.fhir.pathology import _TEXT_FORM_MAX, report_text

    at_limit = _b64("x" * (_TEXT_FORM_MAX // 4 * 3))  # exactly _TEXT_FORM_MAX characters of base64
    below = _b64("x" * (_TEXT_FORM_MAX // 4 * 3 - 3))
    assert (len(at_limit), len(below)) == (_TEXT_FORM_MAX, _TEXT_FORM_MAX - 4)
    report = {"resourceType": "DiagnosticReport", "presentedForm": [{"contentType": "text/plain", "data": at_limit}]}
    assert report_text(report) == ""
    report["presentedForm"][0]["data"] = below
    assert report_text(report) == "x" * (_TEXT_FORM_MAX // 4 * 3 - 3)
