"""What a clinician reads, word for word: for each situation below, the cards the service returns and its
explanation (the facts as derived, each rule's verdict criterion by criterion, why a topic stays silent),
compared with tests/fixtures/golden/cards.json, which a clinical reviewer reads as the specification.

A change to any word of a card, a silence or a fact line fails here with a diff; when the change is meant,
rewrite the file with `HER2_CDS_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/test_card_golden.py` and
review the diff of the JSON as part of the change."""

from __future__ import annotations

import difflib
import itertools
import json
import os
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.cards.render import render
from cds_service.config import CardSettings, shipped_defaults
from cds_service.explain import explain
from cds_service.facts.derive import derive
from cds_service.facts.request import RequestContext
from cds_service.fhir.terminology import load_terminology
from cds_service.rules.registry import TOPICS

from .fixtures import builders as b
from .fixtures import patients
from .fixtures import realworld as rw
from .fixtures import realworld2 as rw2
from .test_realworld import hr_positive_mbc_after_et_progression

TS = load_terminology()
TODAY = date(2026, 11, 25)
GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "cards.json"
CARDS = CardSettings.of(shipped_defaults()["cards"])


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def tdxd_given(when: str, value: float = 5.4) -> dict[str, Any]:
    r = b.administration("fam-trastuzumab deruxtecan", when)
    r["dosage"] = {"dose": {"value": value, "unit": "mg/kg", "system": "http://unitsofmeasure.org", "code": "mg/kg"}}
    return r


def tdxd_draft(value: float | None = 5.4, unit: str = "mg/kg") -> dict[str, Any]:
    dose = (value, unit) if value is not None else None
    return b.med_request("fam-trastuzumab deruxtecan", TODAY.isoformat(), status="draft", dose=dose, id="draft-tdxd")


def other_draft(name: str) -> dict[str, Any]:
    return b.med_request(name, TODAY.isoformat(), status="draft", id=f"draft-{name.split()[0]}")


def ct_chest(when: str) -> dict[str, Any]:
    return b.procedure(b.cc(b.SCT, "169069000", "Computed tomography of chest"), when)


def pneumonitis(onset: str, grade: int | None, resolved: str | None = None) -> dict[str, Any]:
    cond = b.condition(b.cc(b.SCT, "205237003", "Pneumonitis"), onset)
    if grade is not None:
        cond["severity"] = {"text": f"Grade {grade}"}
    if resolved:
        cond["abatementDateTime"] = resolved
        cond["clinicalStatus"] = b.cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")
    return cond


def hr_positive_after_et(*her2: dict[str, Any]) -> list[dict[str, Any]]:
    """Metastatic HR+ disease, letrozole progressed in the metastatic setting, no chemotherapy."""
    return hr_positive_mbc_after_et_progression(list(her2))


def hr_negative_after_chemo(*her2: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("liver", "2023-01-10"),
        b.receptor("ER", "negative", "2023-01-20"),
        b.receptor("PR", "negative", "2023-01-20"),
        b.med_statement("paclitaxel", "2023-02-01", "2023-06-01", status="completed"),
        b.med_statement("capecitabine", "2023-08-01", "2024-02-01", status="stopped", reason="progression"),
        *her2,
    ]


OVARIAN = b.cc(b.SCT, "363443007", "Malignant tumor of ovary")
GASTRIC = b.cc(b.SCT, "363349007", "Malignant tumor of stomach")

# name -> (records, hook, drafts)
SITUATIONS: dict[str, Callable[[], tuple[list[dict[str, Any]], str, list[dict[str, Any]]]]] = {
    "binary-only, patient-view": lambda: (patients.builta_binary_only(), "patient-view", []),
    "HER2-low after endocrine progression, order-select capecitabine": lambda: (
        patients.builta_her2_low(),
        "order-select",
        [other_draft("capecitabine")],
    ),
    "after pneumonitis, T-DXd drafted": lambda: (patients.builta_pneumonitis(), "order-sign", [tdxd_draft()]),
    "bell, ribociclib": lambda: (patients.bell(), "order-select", [other_draft("ribociclib")]),
    "HER2-positive, patient-view": lambda: (patients.her2_positive(), "patient-view", []),
    "triple-negative HER2-low, patient-view": lambda: (patients.triple_negative(), "patient-view", []),
    "early stage, patient-view": lambda: (patients.early_stage(), "patient-view", []),
    "ultralow HR+ after two chemotherapy lines (DB-06 trial-population note)": lambda: (
        hr_positive_after_et(b.her2_ihc(0, "2024-06-01", membrane="faint-le-10"))
        + [
            b.med_statement("paclitaxel", "2024-07-01", "2024-10-01", status="completed"),
            b.med_statement("eribulin", "2024-11-01", "2025-02-01", status="completed"),
        ],
        "order-select",
        [other_draft("capecitabine")],
    ),
    "HER2-low HR-negative after two chemotherapy lines (DB-04)": lambda: (
        hr_negative_after_chemo(b.her2_ihc(1, "2023-01-15")),
        "order-select",
        [other_draft("eribulin")],
    ),
    "HER2-low, HR unknown": lambda: (
        [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("bone", "2023-01-10"), b.her2_ihc(1, "2023-01-15")],
        "patient-view",
        [],
    ),
    "latest IHC 0 unspecified after an earlier HER2-low sample": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2019-02-01"), b.her2_ihc(0, "2024-06-01")),
        "patient-view",
        [],
    ),
    "0+ notation without a staining statement": lambda: (
        hr_positive_after_et(b.observation(b.cc(b.LOINC, "85319-2", "HER2 IHC"), "2024-06-01", valueString="0+")),
        "patient-view",
        [],
    ),
    "HER2-positive history in a report and by trastuzumab": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01"))
        + [
            rw.pathology_report([], "2019-02-01", "Invasive carcinoma. HER2 positive (3+).", id="path-old"),
            b.med_statement("trastuzumab", "2019-03-01", "2019-12-01", status="completed"),
        ],
        "patient-view",
        [],
    ),
    "two other primary cancers, HER2 2+ ISH negative": lambda: (
        [
            b.patient(),
            b.condition(OVARIAN, "2020-01-01"),
            b.condition(GASTRIC, "2021-01-01"),
            b.her2_ihc(2, "2023-01-15"),
            b.her2_ish("not-amplified", "2023-01-20"),
        ],
        "order-select",
        [other_draft("paclitaxel")],
    ),
    "T-DXd already given, continuing at 4.4, tenth cycle": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01"))
        + [tdxd_given(day(21 * (10 - i)), 5.4 if i < 3 else 4.4) for i in range(10)]
        + [ct_chest(day(30))],
        "order-sign",
        [tdxd_draft(4.4)],
    ),
    "re-escalation to 5.4 after a reduction to 4.4": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01"))
        + [tdxd_given(day(63), 5.4), tdxd_given(day(42), 4.4), tdxd_given(day(21), 4.4), ct_chest(day(30))],
        "order-sign",
        [tdxd_draft(5.4)],
    ),
    "first T-DXd dose at 6.4 mg/kg": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01")),
        "order-select",
        [tdxd_draft(6.4)],
    ),
    "grade 1 pneumonitis resolved after 29 days": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01"))
        + [tdxd_given(day(90)), tdxd_given(day(69)), pneumonitis(day(60), 1, day(31)), ct_chest(day(30))],
        "order-sign",
        [tdxd_draft(5.4)],
    ),
    "grade 2 pneumonitis on T-DXd": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01"))
        + [tdxd_given(day(60)), tdxd_given(day(39)), pneumonitis(day(20), 2), ct_chest(day(20))],
        "order-sign",
        [tdxd_draft(5.4)],
    ),
    "chest imaging overdue on T-DXd": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01"))
        + [tdxd_given(day(21 * (6 - i))) for i in range(6)]
        + [ct_chest(day(120))],
        "order-sign",
        [tdxd_draft(5.4)],
    ),
    "a flat T-DXd dose with no body weight": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01")),
        "order-sign",
        [tdxd_draft(350, "mg")],
    ),
    "gastric cancer, T-DXd at 6.4": lambda: (
        [b.patient(), b.condition(GASTRIC, "2023-01-01"), b.her2_ihc(3, "2023-02-01")],
        "order-sign",
        [tdxd_draft(6.4)],
    ),
    "a non-systemic order": lambda: (
        hr_positive_after_et(b.her2_ihc(1, "2024-06-01")),
        "order-select",
        [b.med_request("aspirin", TODAY.isoformat(), status="draft", by="text", id="draft-aspirin")],
    ),
    "ERBB2 amplification by sequencing beside IHC 1+": lambda: (
        hr_positive_after_et(
            b.her2_ihc(1, "2024-06-01"),
            b.observation(
                b.cc(b.LOINC, "81695-9", "Genetic variant assessment"),
                "2024-07-01",
                valueCodeableConcept={"text": "ERBB2 amplification detected"},
            ),
        ),
        "patient-view",
        [],
    ),
    "Synthea FISH 'less than 1.8' alone": lambda: (
        hr_positive_after_et(rw.synthea_ish("less than 1.8", "2024-06-01")),
        "patient-view",
        [],
    ),
    "ICHOM and MII encodings: status findings, M category, ATC, procedures": lambda: (
        [
            b.patient(),
            rw2.mcode_cancer(when="2019-04-01"),
            rw2.m_category_finding("1229903009", "American Joint Committee on Cancer cM1", "2023-01-10"),
            rw2.receptor_status("ER", True, "2023-01-20"),
            rw2.receptor_status("PR", None, "2023-01-20"),
            rw2.her2_ihc_loinc_answer("2+", "2023-01-15"),
            rw2.ish_ratio_snomed(1.3, when="2023-01-18"),
            rw2.atc_statement(
                "L02BG04", "Letrozol", "2023-02-01", "2024-03-01", status="stopped", reason="progression"
            ),
            rw2.therapy_procedure(b.SCT, "385786002", "Chemotherapy care", "2024-04-01", "2024-09-01"),
            rw2.uicc_pm("MX", "2023-01-10"),
        ],
        "order-select",
        [other_draft("capecitabine")],
    ),
}


def _plain_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card without what changes per call (uuids)."""
    drop = {"uuid"}
    out = {k: v for k, v in card.items() if k not in drop}
    out["suggestions"] = [
        {k: v for k, v in s.items() if k not in drop} for s in card.get("suggestions", [])
    ]  # actions keep their resources: the words and numbers a clinician accepts
    return out


def situation(name: str) -> dict[str, Any]:
    saved, b._ids = b._ids, itertools.count(1)  # record ids as the card cites them: the same on every run
    try:
        records, hook, drafts = SITUATIONS[name]()
    finally:
        b._ids = saved  # the other tests' ids go on from where they were
    context = {"patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": d} for d in drafts]}}
    facts = derive(records, TS, TODAY)
    request = RequestContext.of(hook, context, TS)
    in_card_order = sorted(TOPICS, key=lambda t: t.rank)
    options = {t.code: CARDS.topics[t.config_key].options for t in TOPICS}
    decisions = [d for t in in_card_order if (d := t.decide(facts, request, options[t.code])) is not None]
    return {
        "hook": hook,
        "cards": [_plain_card(c) for c in render(decisions, CARDS, TS)],
        "explanation": explain(facts, request, CARDS, records, TS),
    }


def _all() -> dict[str, Any]:
    return {name: situation(name) for name in SITUATIONS}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if os.environ.get("HER2_CDS_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(_all(), indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return dict(json.loads(GOLDEN.read_text()))


@pytest.mark.parametrize("name", list(SITUATIONS))
def test_the_cards_and_the_explanation_say_word_for_word(golden, name):
    now = json.dumps(situation(name), indent=1, ensure_ascii=False, sort_keys=True).splitlines()
    then = json.dumps(golden[name], indent=1, ensure_ascii=False, sort_keys=True).splitlines()
    diff = "\n".join(difflib.unified_diff(then, now, "golden", "now", lineterm="", n=2))
    assert now == then, f"{name}: the words changed (rewrite the golden file if meant):\n{diff}"


def test_every_situation_is_in_the_golden_file_and_nothing_else(golden):
    assert sorted(golden) == sorted(SITUATIONS)


def test_the_situations_cover_every_topic_and_every_silence():
    said = {name: situation(name) for name in SITUATIONS}
    topics = {
        c["extension"]["her2-cds"]["topic"] if "extension" in c else c["summary"]
        for s in said.values()
        for c in s["cards"]
    }
    assert len(topics) >= 3
    silences = {
        line
        for s in said.values()
        for lines in s["explanation"]["rules"].values()
        for line in lines
        if line.startswith("no card: ")
    }
    assert len(silences) >= 10


def test_no_dangling_punctuation_where_record_ids_were_moved_to_sources(golden):
    details = [c["detail"] for s in golden.values() for c in s["cards"]]
    assert details and not any(junk in d for d in details for junk in (";,", "; ,", ";\n", "; (", ",,"))
