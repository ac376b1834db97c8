"""What each card says, word for word, for hand-built facts: the summary, every evidence line, the
advice, what is unknown, and the drafted resources. A clinician reviews these lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from cds_service.config import TopicSettings
from cds_service.facts.evidence import Evidence
from cds_service.facts.ild_risk import Egfr, IldRisk
from cds_service.facts.label import ild_table_lines
from cds_service.facts.therapy import Record
from cds_service.rules import her2_rescore, tdxd
from cds_service.rules import ild_monitoring as ild
from cds_service.rules.dose import dose_update
from cds_service.rules.registry import BY_CODE, mode
from tests.helpers import asked, card_cfg

from .test_truth_tables import ADJ, CAPE, EV, TDXD, base, line, result

LOW = "HER2-low: no readable value; specimen site not recorded; 2025-06-01; Observation/h"
ET = "endocrine-therapy (2024-01-01 to 2025-01-01, metastatic setting): progressed"
CHEMO = "chemotherapy (2024-01-01 to 2025-01-01, metastatic setting): progressed"
DB06_WHY = (
    "Why: the record meets DESTINY-Breast06 (HER2-low or HER2-ultralow, HR-positive, progression on ≥1 "
    "endocrine therapy in the metastatic setting). Consider T-DXd."
)
ADVICE = [
    "Dose for breast cancer: 5.4 mg/kg IV every 3 weeks (6.4 mg/kg is the gastric dose); Enhertu label (May 2026).",
    "Boxed warnings: interstitial lung disease/pneumonitis and embryo-fetal toxicity; assess LVEF before and "
    "during treatment.",
]


def tdxd_card(f, hook="order-select", drafts=(CAPE,)):
    return tdxd.decide(f, asked(hook, drafts), card_cfg("tdxd_consideration"))


def test_db06_met_card():
    d = tdxd_card(base())
    assert (d.topic, d.indicator) == ("tdxd-consideration", "info")
    assert d.summary == "HER2-low metastatic breast cancer meets the T-DXd label pathway (DB-06): consider T-DXd"
    assert d.evidence == [
        "**DESTINY-Breast06** met:",
        f"✔ HER2-low or HER2-ultralow: {LOW}",
        "✔ HR-positive: x (2025-01-01; Observation/x)",
        f"✔ progression on ≥1 endocrine therapy in the metastatic setting: {ET}",
        "order in progress: capecitabine — not given before (in the record this service read)",
        "metastatic since 2023-12-01",
    ]
    assert d.advice == [DB06_WHY, *ADVICE] and d.unknowns == []
    assert d.links == ["label", "db06"]  # DB-04 is not met (no chemotherapy): no link to it
    assert d.overrides == ["already-addressed", "patient-declined", "not-a-candidate", "data-incorrect"]
    [s] = d.suggestions
    assert s.label == "Draft T-DXd 5.4 mg/kg IV every 3 weeks (review before signing)" and s.recommended is False
    order = s.resources[0]
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "2267582"
    assert order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
        "value": 5.4,
        "unit": "mg/kg",
        "system": "http://unitsofmeasure.org",
        "code": "mg/kg",
    }
    assert order["dosageInstruction"][0]["timing"] == {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}}
    assert (order["status"], order["intent"], order["subject"]) == ("draft", "order", {"reference": "Patient/p1"})


def test_db04_and_db06_met_card():
    """Chemotherapy for advanced disease does not exclude DB-06 (the label does not): both pathways are met, and
    the card says that DESTINY-Breast06 enrolled patients without it."""
    d = tdxd_card(base(lines=[line("endocrine-therapy"), line("chemotherapy")]))
    assert d.summary == (
        "HER2-low metastatic breast cancer meets the T-DXd label pathway (DB-06 and DB-04): consider T-DXd"
    )
    assert "**DESTINY-Breast04** met:" in d.evidence
    assert f"✔ prior chemotherapy in the metastatic setting: {CHEMO}" in d.evidence
    assert d.links == ["label", "db06", "db04"]
    assert d.advice[1] == (
        "Trial population: DESTINY-Breast06 enrolled patients without chemotherapy for advanced disease; this "
        f"patient had it ({CHEMO}). The label does not exclude them."
    )


def test_db04_by_adjuvant_recurrence():
    d = tdxd_card(base(hr="negative", lines=[], adjuvant=ADJ))
    assert d.evidence[2] == (
        "✔ recurrence during or within 6 months of adjuvant chemotherapy: recurrence 120 days "
        "after completing chemotherapy (2023-06-01; MedicationStatement/c)"
    )
    assert "(DB-04)" in d.summary


def test_ultralow_summary_and_possible_pathway_says_what_is_unknown():
    d = tdxd_card(base(her2=[result("ultralow")], hr="unknown"))
    assert d.summary == "HER2-ultralow metastatic breast cancer may meet a T-DXd label pathway: confirm what is unknown"
    assert d.evidence[0] == "**DESTINY-Breast06** not confirmed:"
    assert "? HR-positive: x (2025-01-01; Observation/x)" in d.evidence
    assert d.unknowns == ["HR-positive: x (2025-01-01; Observation/x)"]
    assert d.advice[0] == (
        "Why: DESTINY-Breast06 may be met; not known: HR-positive. Confirm these before considering T-DXd."
    )
    assert d.links == ["label", "db06"]


def test_unclear_progression_is_named():
    d = tdxd_card(base(lines=[line("endocrine-therapy", outcome="ended-reason-unknown")]))
    assert (
        "? progression on ≥1 endocrine therapy in the metastatic setting: progression not documented for: "
        "endocrine-therapy (2024-01-01 to 2025-01-01, metastatic setting): ended, reason unknown"
    ) in d.evidence


def test_pathway_failure_reasons():
    p = tdxd.db06(base(lines=[line("endocrine-therapy", outcome="ongoing"), line("chemotherapy")]))
    assert p.criteria[2] == (
        "progression on ≥1 endocrine therapy in the metastatic setting",
        False,
        "endocrine-therapy (2024-01-01 to 2025-01-01, metastatic setting): ongoing",
    )
    assert len(p.criteria) == 3  # no chemotherapy criterion: the label has none
    p = tdxd.db06(base(lines=[]))
    assert p.criteria[2][2] == "no endocrine therapy recorded in the metastatic setting"
    p = tdxd.db04(base(lines=[]))
    assert p.criteria[1] == (
        "prior chemotherapy (metastatic, or adjuvant with recurrence ≤6 months)",
        False,
        "no chemotherapy in the metastatic setting and no early recurrence after adjuvant chemotherapy",
    )
    p = tdxd.db04(base(lines=[line("chemotherapy", setting="unknown")]))
    assert p.criteria[1][1] is None and p.criteria[1][2].startswith("setting unknown: chemotherapy")
    p = tdxd.db06(base(her2=[]))
    assert p.criteria[0] == ("HER2-low or HER2-ultralow", None, "no HER2 result")
    assert tdxd.db06(base(hr="unknown", lines=[])).unknown == ["HR-positive: x (2025-01-01; Observation/x)"]


def test_ild_history_makes_the_card_a_warning_with_a_caution_first():
    d = tdxd_card(base(ild=IldRisk(prior_ild=[Evidence("Condition/i", date(2020, 1, 1), "pneumonitis")])))
    assert d.indicator == "warning"
    assert d.advice[0] == DB06_WHY  # why first, then the caution
    assert d.advice[1] == (
        "Caution: history of ILD/pneumonitis (pneumonitis (2020-01-01; Condition/i)); such "
        "patients were excluded from DESTINY-Breast04/06."
    )


def test_patient_view_needs_no_order_and_active_tdxd_silences():
    assert tdxd_card(base(), "patient-view", drafts=()) is not None
    f = base()
    f = replace(f, therapy=replace(f.therapy, tdxd_active=True))
    assert tdxd_card(f, "patient-view") is None
    off = {"tdxd_consideration": TopicSettings.of(card_cfg("tdxd_consideration", enabled=False))}
    assert mode(BY_CODE[tdxd.TOPIC], off) == "off"  # the engine runs no rule of a topic switched off


def test_hedged_card_for_an_earlier_low_sample():
    f = base(her2=[result("low", date(2023, 1, 20)), result("null", date(2025, 4, 1))])
    f = replace(f, her2=replace(f.her2, earlier_low=f.her2.results[0]))
    d = tdxd_card(f)
    assert d.summary == ("Latest HER2 null, earlier sample HER2-low (2023-01-20): T-DXd possible; consider re-testing")
    assert [s.label for s in d.suggestions] == [
        "Draft T-DXd 5.4 mg/kg IV every 3 weeks (review before signing)",
        "Request HER2 re-testing of the latest sample",
    ]
    assert any("ESMO 2023" in u and "2023-01-20" in u and "2025-04-01" in u for u in d.unknowns)
    z = base(her2=[result("ultralow", date(2023, 1, 20)), result("zero-unspecified", date(2025, 4, 1))])
    z = replace(z, her2=replace(z.her2, earlier_low=z.her2.results[0]))
    assert tdxd_card(z).summary.startswith("Latest HER2 IHC 0, earlier sample HER2-ultralow (2023-01-20)")
    assert tdxd.db04(z).criteria[0][1] is False  # DB-04 needs HER2-low, not ultralow


# --- re-score
def rescore(f, drafts=(CAPE,), **cfg):
    return her2_rescore.decide(f, asked("order-select", drafts), card_cfg("her2_rescore", **cfg))


@pytest.mark.parametrize(
    "her2, summary, why, kind",
    [
        (
            [],
            "Metastatic breast cancer with no HER2 result: order HER2 IHC with low/ultralow scoring",
            "Why: no HER2 result on record.",
            "85319-2",
        ),
        (
            [result("binary-only")],
            "HER2 reported only as 'negative': re-score IHC for HER2-low/ultralow (T-DXd eligibility)",
            "Why: the latest HER2 result is reported only as negative, without an IHC score.",
            "85319-2",
        ),
        (
            [result("zero-unspecified", ihc=0)],
            "HER2 IHC 0 without staining statement: request review for HER2-ultralow vs null",
            "Why: the latest result is IHC 0 without a membrane-staining statement (null vs ultralow); ultralow would "
            "open the DESTINY-Breast06 pathway for this HR-positive disease.",
            "85319-2",
        ),
        (
            [result("indeterminate", ihc=2)],
            "HER2 IHC 2+ without ISH: order reflex ISH to decide HER2-low vs positive",
            "Why: the latest result is IHC 2+ without an ISH result.",
            "85318-4",
        ),
        (
            [result("indeterminate", ihc=2, ish="equivocal")],
            "HER2 ISH cannot be interpreted as reported: request pathology review",
            "Why: the latest ISH result cannot be interpreted as reported (equivocal).",
            "85318-4",
        ),
        (
            [result("inconsistent", ihc=0)],
            "HER2 IHC 0 with staining in >10% of cells is contradictory: request pathology review",
            "Why: the latest result is IHC 0 but states membrane staining in more than 10% of cells, "
            "which is the definition "
            "of 1+: the report is inconsistent.",
            "85319-2",
        ),
        (
            [result("null", date(2024, 10, 25))],
            "HER2 result is old or from the primary only: consider re-testing metastatic tissue",
            "Why: the latest HER2 result is 25 months old (threshold 24).",
            "85319-2",
        ),
    ],
)
def test_rescore_card(her2, summary, why, kind):
    d = rescore(base(her2=her2))
    assert d.summary == summary and d.advice == [why]
    assert d.indicator == ("info" if kind == "85318-4" else "warning")
    [s] = d.suggestions
    assert s.resources[0]["code"]["coding"][0]["code"] == kind
    assert d.links == ["asco_cap", "label"]
    assert d.evidence[-3:] == [
        "metastatic since 2023-12-01 (Observation/x)",
        "HR status positive: x (2025-01-01; Observation/x)",
        "order in progress: capecitabine — not given before (in the record this service read)",
    ]


def test_rescore_names_the_specimen_and_hr_negative_omits_the_db06_clause():
    r = result("zero-unspecified", ihc=0, specimen_ref="Specimen/s9", site="liver core")
    d = rescore(base(her2=[r], hr="negative"))
    assert d.advice == ["Why: the latest result is IHC 0 without a membrane-staining statement (null vs ultralow)."]
    sr = d.suggestions[0].resources[0]
    assert sr["specimen"] == [{"reference": "Specimen/s9"}] and sr["note"] == [{"text": "Specimen: liver core"}]
    assert sr["subject"] == {"reference": "Patient/p1"} and sr["status"] == "draft"


def test_rescore_quiet_cases_and_recheck_option():
    old_low = base(her2=[result("low", date(2020, 1, 1))])
    assert rescore(old_low) is None
    d = rescore(old_low, recheck_actionable=True)
    assert d.advice == ["Why: the latest HER2 result is 82 months old (threshold 24)."]
    assert rescore(base(her2=[result("null", when=None)])).advice == ["Why: the latest HER2 result has no date."]
    f = base(her2=[result("binary-only")])
    # HER2/ER/PR results never make a breast-cancer patient (DESIGN §6, Scope)
    assert rescore(replace(f, setting=replace(f.setting, breast_cancer=[]))) is None
    assert rescore(base(), drafts=()) is None


# --- ILD monitoring
def ild_card(risk=None, drafts=(TDXD,), hook="order-sign", **cfg):
    return ild.decide(base(ild=risk or IldRisk()), asked(hook, drafts), card_cfg("ild_monitoring", **cfg))


def test_ild_info_card():
    d = ild_card()
    assert (d.indicator, d.summary) == (
        "info",
        "T-DXd first dose: baseline chest CT and SpO2; teach to report cough, dyspnoea or fever",
    )
    assert d.evidence == [
        "no ILD risk factor recorded (prior ILD/pneumonitis, thoracic radiotherapy, lung metastases, "
        "reduced renal function)"
    ]
    assert d.advice == [
        "Why: T-DXd is being ordered, with no earlier dose on record; the Enhertu label (May 2026) has a boxed "
        "warning for interstitial lung disease/pneumonitis.",
        "Before the first dose: baseline chest imaging (CT) and pulse oximetry.",
        "Teach the patient to report new or worsening cough, dyspnoea or fever at once; evaluate symptoms promptly.",
        *ild_table_lines(),
    ]
    assert "28 days" in d.advice[3] and "0.5 mg/kg/day" in d.advice[3]
    assert "Permanently discontinue" in d.advice[4] and "1 mg/kg/day" in d.advice[4]
    assert [s.label for s in d.suggestions] == ["Order baseline CT chest", "Order pulse oximetry"]
    ct = d.suggestions[0].resources[0]
    assert ct["code"]["coding"][0]["code"] == "169069000" and ct["subject"] == {"reference": "Patient/p1"}
    assert d.suggestions[1].resources[0]["code"]["coding"][0]["code"] == "252465000"
    assert d.selection == "any" and d.links == ["label"]


def test_ild_warning_lists_each_factor():
    risk = IldRisk(
        thoracic_rt=[Evidence("Procedure/r", date(2020, 1, 1), "thoracic radiotherapy: RT")],
        egfr=Egfr(45, None, Evidence("Observation/e", date(2025, 1, 1), "eGFR 45 mL/min/1.73 m2")),
    )
    d = ild_card(risk)
    assert d.indicator == "warning"
    assert d.summary == "T-DXd with ILD risk factors (2): baseline chest CT, SpO2, close monitoring"
    assert d.advice[0] == (
        "Why: T-DXd is being ordered, with no earlier dose on record; the Enhertu label (May 2026) has a boxed "
        "warning for interstitial lung disease/pneumonitis, and 2 risk factor(s) are on record."
    )
    assert d.evidence == [
        "risk factor: thoracic radiotherapy: RT (2020-01-01; Procedure/r)",
        "risk factor: reduced renal function: eGFR 45 mL/min/1.73 m2 (under 60) (2025-01-01; Observation/e)",
    ]
    open_bound = IldRisk(egfr=Egfr(30, ">", Evidence("Observation/e", date(2025, 1, 1), "eGFR >30")))
    assert ild_card(open_bound).unknowns[0] == (
        "eGFR >30 (2025-01-01; Observation/e): cannot tell whether renal function is under 60"
    )


def test_ild_dose_warning_and_unreadable_dose():
    d = ild_card(drafts=[replace(TDXD, dose_mg_per_kg=6.4)])
    assert d.summary == "T-DXd dose 6.4 mg/kg is not a breast-cancer dose level; plus ILD monitoring"
    assert d.advice[0] == (
        "Drafted dose 6.4 mg/kg is not a breast-cancer dose level (5.4 / 4.4 / 3.2 mg/kg) (6.4 mg/kg is the "
        "gastric cancer dose)."
    )
    assert d.advice[1].startswith("Why: T-DXd is being ordered")
    assert ild_card(drafts=[replace(TDXD, dose_mg_per_kg=5.44)]).indicator == "info"  # within rounding
    d = ild_card(drafts=[replace(TDXD, dose_mg_per_kg=None, dose_text="400 mg", dose_mg=400.0)])
    assert d.unknowns[0] == "drafted flat dose 400 mg: no body weight on record, not checkable in mg/kg"
    d = ild_card(drafts=[replace(TDXD, dose_mg_per_kg=None, dose_text="IV q3w")])
    assert d.unknowns[0] == "drafted dose not readable as mg/kg (IV q3w)"
    d = ild_card(drafts=[replace(TDXD, dose_mg_per_kg=None, dose_text=None)])
    assert d.unknowns[0] == "drafted dose not readable as mg/kg (no dose)"


def test_corrected_dose_update_only_when_safe():
    drafted = {
        "resourceType": "MedicationRequest",
        "id": "d2",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "Enhertu"},
        "dosageInstruction": [
            {"text": "6.4 mg/kg IV q3w", "doseAndRate": [{"doseQuantity": {"value": 6.4, "unit": "mg/kg"}}]}
        ],
    }
    fixed = dose_update(replace(TDXD, dose_mg_per_kg=6.4, resource=drafted), 5.4)
    assert fixed["dosageInstruction"] == [
        {
            "text": "5.4 mg/kg IV q3w",
            "doseAndRate": [
                {
                    "doseQuantity": {
                        "value": 5.4,
                        "unit": "mg/kg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mg/kg",
                    }
                }
            ],
        }
    ]
    assert drafted["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 6.4  # the draft is untouched
    two = {**drafted, "dosageInstruction": drafted["dosageInstruction"] * 2}
    assert dose_update(replace(TDXD, resource=two), 5.4) is None
    assert dose_update(replace(TDXD, resource={**drafted, "id": None}), 5.4) is None
    assert dose_update(replace(TDXD, resource=None), 5.4) is None
    d = ild_card(drafts=[replace(TDXD, dose_mg_per_kg=6.4, resource=drafted)])
    assert d.suggestions[0].label == "Change the T-DXd dose to 5.4 mg/kg"
    assert d.suggestions[0].updates == [fixed]


def test_ild_critical_card():
    risk = IldRisk(
        prior_ild=[EV], tdxd_ild_grade2plus=[Evidence("Condition/p", date(2025, 10, 5), "pneumonitis, grade 2")]
    )
    d = ild_card(risk)
    assert d.indicator == "critical"
    assert d.summary == "Prior grade ≥2 ILD/pneumonitis on T-DXd: label says discontinue T-DXd permanently"
    assert d.evidence[0] == (
        "prior T-DXd-associated ILD/pneumonitis grade ≥2: pneumonitis, grade 2 (2025-10-05; Condition/p)"
    )
    assert d.advice[0].startswith("Stop T-DXd: after grade ≥2 (symptomatic) ILD/pneumonitis the label requires")
    [remove] = d.suggestions
    assert remove.deletes == ["MedicationRequest/d2"] and remove.resources == [] and d.selection == "at-most-one"
    f = base(ild=risk)
    f = replace(
        f,
        therapy=replace(
            f.therapy,
            tdxd_active=True,
            tdxd=[
                Record(
                    "MedicationAdministration/t",
                    "tdxd",
                    "trastuzumab deruxtecan",
                    date(2025, 9, 1),
                    date(2025, 9, 1),
                    False,
                    None,
                    None,
                    False,
                )
            ],
        ),
    )
    pv = ild.decide(f, asked("patient-view"), card_cfg("ild_monitoring"))
    assert pv.indicator == "critical" and pv.suggestions == []
    assert "T-DXd given: 2025-09-01 (MedicationAdministration/t)" in pv.evidence


def test_ild_quiet_without_tdxd():
    assert ild_card(drafts=[CAPE]) is None
    assert ild_card(drafts=[], hook="patient-view") is None
    off = {"ild_monitoring": TopicSettings.of(card_cfg("ild_monitoring", enabled=False))}
    assert mode(BY_CODE[ild.TOPIC], off) == "off"  # the engine runs no rule of a topic switched off


def test_an_unreadable_her2_result_keeps_the_card_from_asserting():
    f = base()
    f = replace(f, her2=replace(f.her2, unreadable=["Observation/bad"]))
    d = tdxd_card(f)
    assert d.summary == "HER2-low metastatic breast cancer may meet a T-DXd label pathway: confirm what is unknown"
    assert (
        "no HER2-positive result: HER2 result(s) Observation/bad could not be read (not valid FHIR); check them "
        "in the pathology report"
    ) in d.unknowns


# --- the drafted resources, whole: a clinician signs them
def test_drafted_requests_whole():
    f = base(her2=[result("indeterminate", ihc=2)])
    assert her2_rescore.service_request(f, "p1", "ish") == {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "85318-4",
                    "display": "HER2 [Presence] in Breast cancer specimen by FISH",
                }
            ],
            "text": "Reflex HER2 ISH for IHC 2+",
        },
        "subject": {"reference": "Patient/p1"},
        "reasonCode": [
            {
                "text": "Metastatic breast cancer: HER2-low/ultralow status needed for trastuzumab "
                "deruxtecan eligibility (ASCO/CAP 2023)"
            }
        ],
    }
    ihc = her2_rescore.service_request(base(her2=[result("binary-only", specimen_ref="Specimen/s1")]), "p9", "ihc")
    assert ihc["code"] == {
        "coding": [
            {
                "system": "http://loinc.org",
                "code": "85319-2",
                "display": "HER2 [Presence] in Breast cancer specimen by Immune stain",
            }
        ],
        "text": "HER2 IHC re-scoring / pathology review (report HER2-low, -ultralow or -null)",
    }
    assert ihc["specimen"] == [{"reference": "Specimen/s1"}] and ihc["note"] == [{"text": "Specimen: Specimen/s1"}]
    assert her2_rescore.service_request(base(her2=[]), "p1", "ihc").keys() == {
        "resourceType",
        "status",
        "intent",
        "category",
        "code",
        "subject",
        "reasonCode",
    }


def test_tdxd_order_whole():
    [s] = tdxd_card(base()).suggestions
    assert s.resources == [
        {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [
                    {
                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "2267582",
                        "display": "fam-trastuzumab deruxtecan",
                    }
                ],
                "text": "trastuzumab deruxtecan (Enhertu)",
            },
            "subject": {"reference": "Patient/p1"},
            "dosageInstruction": [
                {
                    "text": "5.4 mg/kg IV infusion every 3 weeks (21-day cycle) until progression or "
                    "unacceptable toxicity",
                    "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}},
                    "route": {
                        "coding": [
                            {"system": "http://snomed.info/sct", "code": "47625008", "display": "Intravenous route"}
                        ]
                    },
                    "doseAndRate": [
                        {
                            "doseQuantity": {
                                "value": 5.4,
                                "unit": "mg/kg",
                                "system": "http://unitsofmeasure.org",
                                "code": "mg/kg",
                            }
                        }
                    ],
                }
            ],
        }
    ]


def test_baseline_requests_whole():
    ct, ox = [s.resources[0] for s in ild_card().suggestions]
    reason = [{"text": "Baseline before trastuzumab deruxtecan (ILD/pneumonitis monitoring)"}]
    assert ct == {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "169069000", "display": "CT of chest"}],
            "text": "CT chest (baseline before T-DXd)",
        },
        "subject": {"reference": "Patient/p1"},
        "reasonCode": reason,
    }
    assert ox["code"] == {
        "coding": [{"system": "http://snomed.info/sct", "code": "252465000", "display": "Pulse oximetry"}],
        "text": "Pulse oximetry (baseline SpO2)",
    }


# --- result and line descriptions in every form
@pytest.mark.parametrize(
    "kw, text",
    [
        (
            {"category": "low", "ihc": 1, "site_kind": "metastatic"},
            "HER2-low: IHC 1+; metastatic site; 2025-06-01; Observation/h",
        ),
        (
            {"category": "low", "ihc": 1, "site_kind": "primary"},
            "HER2-low: IHC 1+; primary tumour; 2025-06-01; Observation/h",
        ),
        (
            {"category": "low", "ihc": 1, "site_kind": "primary", "site": "left breast"},
            "HER2-low: IHC 1+; left breast; 2025-06-01; Observation/h",
        ),
        (
            {"category": "low", "ihc": 2, "ish": "not-amplified"},
            "HER2-low: IHC 2+, ISH not amplified; specimen site not recorded; 2025-06-01; Observation/h",
        ),
        (
            {"category": "positive", "ratio": 2.5},
            "HER2-positive: ISH (ratio 2.5); specimen site not recorded; 2025-06-01; Observation/h",
        ),
        (
            {"category": "positive", "ish": "amplified", "copy_number": 7.0},
            "HER2-positive: ISH amplified (7 copies/cell); specimen site not recorded; 2025-06-01; Observation/h",
        ),
        (
            {"category": "indeterminate", "copy_number": 5.0},
            "HER2 indeterminate (IHC 2+ without ISH, or ISH that cannot be interpreted): ISH (5 copies/cell); specimen "
            "site not recorded; 2025-06-01; Observation/h",
        ),
        (
            {"category": None},
            "category undetermined: no readable value; specimen site not recorded; 2025-06-01; Observation/h",
        ),
        (
            {
                "category": "null",
                "ihc": 0,
                "membrane": "absent",
                "refs": ["Observation/a", "Observation/b"],
                "by_text": True,
            },
            "HER2-null (IHC 0, no staining): IHC 0, no membrane staining; specimen site not recorded; "
            "2025-06-01; Observation/a, Observation/b (read from free text)",
        ),
    ],
)
def test_result_describe(kw, text):
    kw = dict(kw)  # the parameter is shared between runs: never change it
    refs = kw.pop("refs", ["Observation/h"])
    from cds_service.facts.her2 import Her2Result

    assert Her2Result(when=date(2025, 6, 1), refs=refs, **kw).describe() == text


def test_line_describe_forms():
    ln = replace(
        line("endocrine-therapy", outcome="ongoing"),
        drugs=["letrozole", "palbociclib"],
        end=None,
        ongoing=True,
        notes=["started before the metastasis was found"],
    )
    assert ln.describe() == (
        "letrozole + palbociclib (2024-01-01 to ongoing, metastatic setting): ongoing "
        "[started before the metastasis was found]"
    )
    ln = replace(line("chemotherapy", outcome="ended-reason-unknown"), end=None)
    assert ln.describe() == "chemotherapy (2024-01-01 to end unknown, metastatic setting): ended, reason unknown"
    progression = [
        Evidence("Observation/a", date(2024, 6, 1), "disease status: x"),
        Evidence("Condition/b", date(2024, 7, 1), "new distant metastasis: liver"),
    ]
    ln = replace(line("chemotherapy"), progression=progression)
    assert ln.describe().endswith(
        "progressed — disease status: x (2024-06-01; Observation/a); new distant "
        "metastasis: liver (2024-07-01; Condition/b)"
    )


# --- the rendered detail: the point first, plain words, the ids and codes last


@pytest.mark.parametrize(
    ("line", "prose", "sources"),
    [
        (
            "HR-positive: ER positive (90%) (2010-05-01; Observation/obs-13); PR positive (2010-05-01; "
            "Observation/obs-14)",
            "HR-positive: ER positive (90%) (2010-05-01); PR positive (2010-05-01)",
            ["Observation/obs-13", "Observation/obs-14"],
        ),
        (
            "stopped for progression: Absent response to treatment (sct|266721009) (2019-07-30; "
            "MedicationStatement/ms-18)",
            "stopped for progression: Absent response to treatment (2019-07-30)",
            ["MedicationStatement/ms-18", "sct|266721009"],
        ),
        (
            "HER2-low: IHC 1+; liver; 2023-02-15; Observation/o-1 (read from free text)",
            "HER2-low: IHC 1+; liver; 2023-02-15 (read from free text)",
            ["Observation/o-1"],
        ),
        ("metastatic since 2010-04-15 (Condition/c1)", "metastatic since 2010-04-15", ["Condition/c1"]),
        (
            "Observation/x9 could not be read and was left out",
            "One Observation could not be read and was left out",
            ["Observation/x9"],
        ),
        (
            "T-DXd given: 2025-09-01, 2025-09-22 (MedicationAdministration/a; MedicationAdministration/b)",
            "T-DXd given: 2025-09-01, 2025-09-22",
            ["MedicationAdministration/a", "MedicationAdministration/b"],
        ),
        (
            "thoracic radiotherapy: sct|1217123003 (2024-07-01)",
            "thoracic radiotherapy: sct|1217123003 (2024-07-01)",
            [],
        ),
    ],
)
def test_evidence_in_plain_words(line, prose, sources):
    from cds_service.cards.render import plain

    refs: list[str] = []
    codes: list[str] = []
    assert plain(line, refs, codes) == prose
    assert refs + codes == sources


def test_the_rendered_detail_says_why_first_and_sources_last():
    from cds_service.cards.render import render
    from cds_service.config import load
    from cds_service.fhir.terminology import load_terminology

    [card] = render([tdxd_card(base())], load().cards, load_terminology())
    paragraphs = card["detail"].split("\n\n")
    assert paragraphs[0].startswith("- Why: the record meets DESTINY-Breast06")
    assert paragraphs[1].startswith("**Evidence used**")
    assert paragraphs[-1].startswith("Sources: ") and "Observation/h" in paragraphs[-1]
    assert "Observation/" not in "\n\n".join(paragraphs[:-1])


# --- the ordered drug against the history (issue 23, item 6)
@pytest.mark.parametrize(
    "lines, said",
    [
        ([], "order in progress: capecitabine — not given before (in the record this service read)"),
        (
            [replace(line("chemotherapy"), drugs=["capecitabine"])],
            "order in progress: capecitabine — given before: 2024-01-01 to 2025-01-01 (metastatic setting), progressed",
        ),
        (
            [replace(line("chemotherapy", outcome="stopped-toxicity"), drugs=["Capecitabine"])],
            "order in progress: capecitabine — given before: 2024-01-01 to 2025-01-01 (metastatic setting), "
            "stopped for toxicity",
        ),
        (
            [replace(line("chemotherapy", outcome="ongoing"), drugs=["capecitabine"], ongoing=True, end=None)],
            "order in progress: capecitabine — taking it now: since 2024-01-01 (metastatic setting)",
        ),
        (
            [replace(line("chemotherapy", setting="early"), drugs=["capecitabine", "docetaxel"])],
            "order in progress: capecitabine — given before: 2024-01-01 to 2025-01-01 (early setting), progressed",
        ),
    ],
    ids=["never", "progressed", "toxicity, another case", "ongoing", "early, in a combination"],
)
def test_the_ordered_drug_is_set_against_the_history(lines, said):
    from cds_service.rules.ordered import order_line

    assert order_line(base(lines=lines), CAPE) == said
    assert order_line(base(lines=lines), replace(CAPE, drug=None)) is None


# --- override reasons as HL7 non-adherence reasons (issue 23, item 7)
def test_cards_offer_the_hl7_non_adherence_reason_where_one_fits_and_ours_where_none_does():
    from cds_service.cards.render import render
    from cds_service.config import load
    from cds_service.fhir.terminology import load_terminology

    [card] = render([tdxd_card(base())], load().cards, load_terminology())
    offered = {r["code"]: r for r in card["overrideReasons"]}
    hl7 = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
    assert offered["action-completed"]["system"] == hl7  # already addressed
    assert offered["patient-refuses"]["system"] == hl7  # patient declined
    assert offered["patient-ineligible"]["system"] == hl7  # not a candidate
    assert offered["data-incorrect"] == {
        "system": "http://her2-cds.org/fhir/CodeSystem/override-reason",
        "code": "data-incorrect",
        "display": "The data shown are incorrect or incomplete",
    }
    assert all(r["display"] for r in offered.values())


def test_every_reason_of_ours_is_mapped_or_said_unmatched():
    from cds_service.fhir.override_reasons import reasons
    from cds_service.fhir.terminology import load_terminology

    found = reasons(load_terminology())
    assert set(found) == {"already-addressed", "patient-declined", "not-a-candidate", "data-incorrect",
                          "ild-risk-accepted"}  # fmt: skip
    assert {c: r.category for c, r in found.items()} == {
        "already-addressed": "cds-not-applicable",
        "patient-declined": "does-not-align-preferences",
        "not-a-candidate": "cds-not-applicable",
        "ild-risk-accepted": "recipient-concerns-outcomes",
        "data-incorrect": None,
    }
