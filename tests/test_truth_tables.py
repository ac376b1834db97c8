"""Truth tables a clinician can read: each pathway criterion isolated over hand-built facts, with the
boundary rows (1 % and 10 %, 183/184 days, eGFR 60, 24 months, grade 2)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from cds_service.facts.derive import Facts, derive
from cds_service.facts.evidence import Evidence
from cds_service.facts.her2 import Her2Picture, Her2Result
from cds_service.facts.ild_risk import Egfr, IldRisk
from cds_service.facts.orders import DraftOrder
from cds_service.facts.receptors import HrStatus, ReceptorResult
from cds_service.facts.setting import Setting
from cds_service.facts.therapy import Line, Record, TherapyHistory
from cds_service.fhir.terminology import Match, load_terminology
from cds_service.rules import her2_rescore, tdxd
from cds_service.rules import ild_monitoring as ild
from tests.helpers import asked, card_cfg

from .fixtures import builders as b

TS = load_terminology()
TODAY = date(2026, 11, 25)
EV = Evidence("Observation/x", date(2025, 1, 1), "x")
CAPE = DraftOrder(
    "MedicationRequest/d1", True, Match("chemotherapy", "code", "rxnorm|194000", "capecitabine"), None, None
)
TDXD = DraftOrder(
    "MedicationRequest/d2", True, Match("tdxd", "code", "rxnorm|2267582", "trastuzumab deruxtecan"), 5.4, "5.4 mg/kg"
)


def result(category: str | None, when: date = date(2025, 6, 1), **kw) -> Her2Result:
    return Her2Result(category=category, when=when, refs=["Observation/h"], **kw)


def line(cls: str, setting: str = "metastatic", outcome: str = "progressed") -> Line:
    return Line(
        drugs=[cls],
        classes={cls},
        start=date(2024, 1, 1),
        end=date(2025, 1, 1),
        ongoing=False,
        refs=["MedicationStatement/m"],
        setting=setting,
        outcome=outcome,
    )


def base(**kw) -> Facts:
    """Metastatic HR+ HER2-low after one progressed metastatic endocrine line, no chemotherapy (the chart; the
    rule helpers below draft capecitabine beside it)."""
    her2 = kw.pop("her2", [result("low")])
    f = Facts(
        today=TODAY,
        her2=Her2Picture(her2, her2[-1] if her2 else None, any(r.category == "positive" for r in her2), False),
        hr=HrStatus(kw.pop("hr", "positive"), ReceptorResult("ER", True, 90, EV), None),
        setting=Setting(
            metastatic=kw.pop("metastatic", True), start=date(2023, 12, 1), evidence=[EV], breast_cancer=[EV]
        ),
        therapy=TherapyHistory(
            kw.pop("lines", [line("endocrine-therapy")]), kw.pop("tdxd", []), False, [], kw.pop("adjuvant", None)
        ),
        ild=kw.pop("ild", IldRisk()),
        later_metastatic_biopsy=None,
    )
    assert not kw, kw
    return f


def tdxd_card(f: Facts, hook: str = "order-select", drafts: tuple[DraftOrder, ...] = (CAPE,)):
    """The T-DXd card beside the drafts (capecitabine unless said)."""
    return tdxd.decide(f, asked(hook, drafts), card_cfg("tdxd_consideration"))


def pathways(f: Facts) -> tuple[bool | None, bool | None]:
    """(DB-06, DB-04): True met, None possible (a criterion unknown), False failed."""
    out = []
    for p in (tdxd.db06(f), tdxd.db04(f)):
        out.append(True if p.met else (False if p.failed else None))
    return out[0], out[1]


# --- DB-06: HER2-low/ultralow x HR+ x metastatic ET progression x no metastatic chemotherapy
@pytest.mark.parametrize(
    "her2, hr, lines, db06",
    [
        ("low", "positive", [line("endocrine-therapy")], True),
        ("ultralow", "positive", [line("endocrine-therapy")], True),
        ("null", "positive", [line("endocrine-therapy")], False),
        ("zero-unspecified", "positive", [line("endocrine-therapy")], False),
        ("binary-only", "positive", [line("endocrine-therapy")], False),
        ("low", "negative", [line("endocrine-therapy")], False),
        ("low", "unknown", [line("endocrine-therapy")], None),
        ("low", "positive", [line("endocrine-therapy", outcome="ongoing")], False),
        ("low", "positive", [line("endocrine-therapy", outcome="stopped-toxicity")], False),
        ("low", "positive", [line("endocrine-therapy", outcome="ended-reason-unknown")], None),
        ("low", "positive", [line("endocrine-therapy", setting="early")], False),
        ("low", "positive", [line("endocrine-therapy", setting="unknown")], None),
        # the label does not exclude chemotherapy for advanced disease (the card names the trial population)
        ("low", "positive", [line("endocrine-therapy"), line("chemotherapy")], True),
        ("ultralow", "positive", [line("endocrine-therapy"), line("chemotherapy")], True),
        ("low", "positive", [line("endocrine-therapy"), line("chemotherapy", setting="early")], True),
        ("low", "positive", [line("endocrine-therapy"), line("chemotherapy", setting="unknown")], True),
    ],
)
def test_db06_truth_table(her2, hr, lines, db06):
    assert pathways(base(her2=[result(her2)], hr=hr, lines=lines))[0] is db06


# --- DB-04: HER2-low only x (metastatic chemotherapy or adjuvant recurrence ≤6 months)
ADJ = Evidence("MedicationStatement/c", date(2023, 6, 1), "recurrence 120 days after completing chemotherapy")


@pytest.mark.parametrize(
    "her2, hr, lines, adjuvant, db04",
    [
        ("low", "positive", [line("chemotherapy")], None, True),
        ("low", "negative", [line("chemotherapy")], None, True),
        ("ultralow", "positive", [line("chemotherapy")], None, False),
        ("null", "negative", [line("chemotherapy")], None, False),
        ("low", "negative", [], ADJ, True),
        ("low", "negative", [line("chemotherapy", setting="early")], None, False),
        ("low", "negative", [line("chemotherapy", setting="unknown")], None, None),
        ("low", "negative", [line("endocrine-therapy")], None, False),
        ("low", "negative", [line("chemotherapy", outcome="ongoing")], None, True),  # prior exposure, not progression
    ],
)
def test_db04_truth_table(her2, hr, lines, adjuvant, db04):
    assert pathways(base(her2=[result(her2)], hr=hr, lines=lines, adjuvant=adjuvant))[1] is db04


# --- exclusions: no card whatever the pathways say
@pytest.mark.parametrize(
    "change",
    [
        {"her2": [result("positive", date(2022, 1, 1)), result("low")]},  # positive anywhere in the history
        {"her2": [result("positive")]},
        {
            "tdxd": [
                Record(
                    "MedicationAdministration/t",
                    "tdxd",
                    "trastuzumab deruxtecan",
                    date(2025, 1, 1),
                    date(2025, 1, 1),
                    False,
                    None,
                    None,
                    False,
                )
            ]
        },
        {"metastatic": False},
        {"drafts": []},  # order-select without a systemic-therapy order
        {"drafts": [TDXD]},  # a T-DXd order gets the ILD card instead
    ],
)
def test_tdxd_exclusions(change):
    assert tdxd_card(base()) is not None
    drafts = change.pop("drafts", (CAPE,))
    assert tdxd_card(base(**change), drafts=tuple(drafts)) is None


def test_tdxd_card_is_assertive_only_when_every_criterion_is_met():
    met = tdxd_card(base())
    assert "meets" in met.summary and "may" not in met.summary
    unknown = tdxd_card(base(hr="unknown"))
    assert "may meet" in unknown.summary and any("HR-positive" in u for u in unknown.unknowns)
    assert not any(s.recommended for s in met.suggestions + unknown.suggestions)


def test_ild_history_is_a_caution_not_an_exclusion():
    card = tdxd_card(base(ild=IldRisk(prior_ild=[EV])))
    assert card is not None and card.indicator == "warning"


# --- re-score card
def rescore(f: Facts):
    return her2_rescore.decide(f, asked("order-select", [CAPE]), card_cfg("her2_rescore"))


@pytest.mark.parametrize(
    "category, fires",
    [
        (None, True),
        ("binary-only", True),
        ("zero-unspecified", True),
        ("indeterminate", True),
        ("inconsistent", True),
        ("low", False),
        ("ultralow", False),
        ("null", False),
        ("positive", False),
    ],
)
def test_rescore_by_category(category, fires):
    her2 = [result(category, ihc=2 if category == "indeterminate" else None)] if category else []
    assert (rescore(base(her2=her2)) is not None) is fires


@pytest.mark.parametrize(
    "when, fires",
    [
        (date(2024, 11, 25), False),  # exactly 24 months old
        (date(2024, 10, 26), False),  # 24 months and 30 days
        (date(2024, 10, 25), True),
    ],
)  # 25 months
def test_rescore_stale_boundary_24_months(when, fires):
    assert (rescore(base(her2=[result("null", when)])) is not None) is fires


def test_rescore_never_for_positive_history_or_non_metastatic():
    assert rescore(base(her2=[result("positive", date(2020, 1, 1)), result("binary-only")])) is None
    assert rescore(base(her2=[result("binary-only")], metastatic=False)) is None


# --- ILD indicator
def ild_card(risk: IldRisk, egfr_below: float = 60):
    cfg = card_cfg("ild_monitoring", egfr_below=egfr_below)
    return ild.decide(base(ild=risk), asked("order-sign", [TDXD]), cfg)


@pytest.mark.parametrize(
    "risk, indicator",
    [
        (IldRisk(), "info"),
        (IldRisk(prior_ild=[EV]), "warning"),
        (IldRisk(thoracic_rt=[EV]), "warning"),
        (IldRisk(lung_metastases=[EV]), "warning"),
        (IldRisk(renal=[EV]), "warning"),
        (IldRisk(prior_ild=[EV], tdxd_ild_grade2plus=[EV]), "critical"),
        (IldRisk(egfr=Egfr(59.9, None, EV)), "warning"),
        (IldRisk(egfr=Egfr(60, None, EV)), "info"),  # boundary: 60 is not under 60
        (IldRisk(egfr=Egfr(60, ">", EV)), "info"),
        (IldRisk(egfr=Egfr(30, "<", EV)), "warning"),
    ],
)
def test_ild_indicator(risk, indicator):
    assert ild_card(risk).indicator == indicator


def test_ild_dose_other_than_5_4_is_a_warning():
    drafts = [replace(TDXD, dose_mg_per_kg=6.4)]
    assert ild.decide(base(), asked("order-sign", drafts), card_cfg("ild_monitoring")).indicator == "warning"


# --- facts-level boundaries, from records
@pytest.mark.parametrize("gap, recurrence", [(183, True), (184, False), (0, True), (-10, True)])
def test_adjuvant_recurrence_boundary_183_days(gap, recurrence):
    end = date(2023, 6, 1)
    f = derive(
        [
            b.breast_cancer("2022-10-01"),
            b.med_statement("paclitaxel", "2022-12-01", end.isoformat()),
            b.metastasis("liver", (end + timedelta(days=gap)).isoformat()),
        ],
        TS,
        TODAY,
    )
    assert (f.therapy.adjuvant_recurrence is not None) is recurrence


@pytest.mark.parametrize("value, hr", [(1, "positive"), (0.9, "negative"), (10, "positive"), (0, "negative")])
def test_hr_boundary_1_percent(value, hr):
    f = derive([b.receptor("ER", value), b.receptor("PR", 0)], TS, TODAY)
    assert f.hr.status == hr
    assert any("ER-low" in n for n in f.hr.notes) is (1 <= value <= 10)


@pytest.mark.parametrize("severity, grade2", [("255604002", False), ("6736007", True), ("24484000", True)])
def test_ild_grade_boundary(severity, grade2):
    f = derive(
        [
            b.administration("fam-trastuzumab deruxtecan", "2025-09-01"),
            b.ild("2025-09-20", "Pneumonitis", severity=b.cc(b.SCT, severity)),
        ],
        TS,
        TODAY,
    )
    assert bool(f.ild.tdxd_ild_grade2plus) is grade2
