"""Boundary rows the other tables left open (found by mutation testing): the facts memo's bounds, which reading
of a specimen an ISH joins, a report's plain-text forms, the receptor notes, therapy periods and outcomes,
the dose ceiling after a late-resolved grade 1 ILD, and the ILD advice by grade."""

from __future__ import annotations

import base64
import copy
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.facts.derive import derive
from cds_service.facts.evidence import Evidence
from cds_service.facts.ild_risk import IldEvent
from cds_service.facts.memo import FactsMemo, Kept
from cds_service.facts.request import RequestContext
from cds_service.facts.thresholds import NEW_LINE_GRACE, TDXD_ACTIVE
from cds_service.fhir import lru as lru_module
from cds_service.fhir.pathology import report_text
from cds_service.fhir.terminology import load_terminology
from cds_service.rules import ild_monitoring
from cds_service.rules.dose import ceiling

from .fixtures import builders as b
from .fixtures import realworld as rw

TS = load_terminology()
TODAY = date(2026, 11, 25)


def facts(*resources: dict[str, Any]):
    return derive(list(resources), TS, TODAY)


def drafts(*names: str) -> dict[str, Any]:
    entries = [{"resource": b.med_request(n, "2026-11-25", status="draft", id=f"draft-{n}")} for n in names]
    return {"draftOrders": {"resourceType": "Bundle", "entry": entries}}


CHART = [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("bone", "2023-01-10"), b.her2_ihc(1, "2023-01-15")]


# --- the facts memo
def test_the_memo_keeps_chart_facts_and_a_prefetch_what_its_gathering_could_not_read():
    memo = FactsMemo(10_000_000, 600)
    first = memo.derive(CHART, TS, TODAY)
    assert memo.derive(copy.deepcopy(CHART), TS, TODAY) is first and memo.hits == 1
    assert not hasattr(first, "drafts") and not hasattr(first, "unavailable")  # the request's: RequestContext
    memo.keep(b"prefetch", "k", TODAY, Kept(first, {"pathology": "timed out"}, ("1 record set aside",)))
    recalled = memo.recall(b"prefetch", "k", TODAY)
    assert recalled is not None and recalled.facts is first
    assert recalled.unavailable == {"pathology": "timed out"} and recalled.set_aside == ("1 record set aside",)


def test_the_request_context_reads_drafts_afresh_beside_kept_facts():
    memo = FactsMemo(10_000_000, 600)
    memo.derive(CHART, TS, TODAY)
    for name in ("capecitabine", "eribulin"):
        request = RequestContext.of("order-select", drafts(name), TS, {"pathology": "timed out"})
        assert [d.ref for d in request.drafts] == [f"MedicationRequest/draft-{name}"]
        assert request.not_available(["chart note"]) == [
            "data not available from the EHR: pathology (timed out)",
            "chart note",
        ]


def test_a_chart_of_exactly_a_quarter_of_the_memo_is_kept_and_one_byte_more_is_not():
    memo = FactsMemo(400, 600)
    f = facts(*CHART)
    memo.keep(b"x" * 100, "k", TODAY, Kept(f, {}))
    memo.keep(b"y" * 101, "k", TODAY, Kept(f, {}))
    assert memo.recall(b"x" * 100, "k", TODAY) is not None and memo.recall(b"y" * 101, "k", TODAY) is None
    misses = memo.misses
    memo.recall(b"z" * 500, "k", TODAY)  # too large to be kept: not even looked up
    assert memo.misses == misses


def test_the_memo_is_bounded_in_bytes_least_recently_sent_first():
    memo = FactsMemo(400, 600)
    f = facts(*CHART)
    for name in (b"a", b"b", b"c", b"d"):
        memo.keep(name * 100, "k", TODAY, Kept(f, {}))
    assert len(memo) == 4 and memo.size_bytes == 400  # exactly full: nothing dropped
    memo.keep(b"a" * 100, "k", TODAY, Kept(f, {}))  # the same key again: counted once
    assert memo.size_bytes == 400 and len(memo) == 4
    memo.keep(b"e" * 100, "k", TODAY, Kept(f, {}))  # one more: the oldest (b, since a was sent again) goes
    assert memo.recall(b"b" * 100, "k", TODAY) is None
    assert all(memo.recall(n * 100, "k", TODAY) is not None for n in (b"a", b"c", b"d", b"e"))


def test_the_memo_forgets_a_chart_not_sent_again_for_max_age(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(lru_module.time, "monotonic", lambda: clock[0])
    memo = FactsMemo(10_000_000, 60)
    memo.keep(b"chart", "k", TODAY, Kept(facts(*CHART), {}))
    clock[0] += 60  # exactly max_age: still kept
    assert memo.recall(b"chart", "k", TODAY) is not None
    clock[0] += 60.5
    assert memo.recall(b"chart", "k", TODAY) is None and len(memo) == 0


# --- which reading of a specimen an ISH joins
def _ihc_on(specimen: str, score: int, when: str) -> dict[str, Any]:
    return b.her2_ihc(score, when, specimen=specimen)


@pytest.mark.parametrize(
    "ish_day, joins",
    [
        ("2020-01-05", "2020-01-01"),  # after the first reading, before the re-read: the first
        ("2024-01-01", "2024-01-01"),  # on the day of the re-read: the re-read
        ("2019-12-01", "2020-01-01"),  # before both readings: the first reading
    ],
)
def test_an_ish_on_a_specimen_read_twice_joins_the_latest_reading_made_before_it(ish_day, joins):
    first, reread = _ihc_on("s1", 2, "2020-01-01"), _ihc_on("s1", 2, "2024-01-01")
    f = facts(first, reread, b.her2_ish("not amplified", ish_day, specimen="s1"))
    joined = first if joins == "2020-01-01" else reread
    alone = reread if joined is first else first
    [with_ish] = [r for r in f.her2.results if f"Observation/{joined['id']}" in r.refs]
    [without] = [r for r in f.her2.results if f"Observation/{alone['id']}" in r.refs]
    assert with_ish.ish == "not-amplified" and with_ish.category == "low" and len(with_ish.refs) == 2
    assert without.ish is None and without.category == "indeterminate"


def test_hyphenated_not_amplified_is_not_amplified():
    f = facts(_ihc_on("s2", 2, "2020-01-01"), b.her2_ish("not-amplified", "2020-01-02", specimen="s2"))
    assert f.her2.current.ish == "not-amplified" and f.her2.category == "low"


# --- a pathology report's plain-text form
def _form(text: bytes, content_type: str | None = "text/plain", raw: str | None = None) -> dict[str, Any]:
    form: dict[str, Any] = {"data": raw if raw is not None else base64.b64encode(text).decode()}
    if content_type is not None:
        form["contentType"] = content_type
    return form


@pytest.mark.parametrize(
    "form, read",
    [
        (_form(b"HER2 IHC 1+"), "HER2 IHC 1+"),
        (_form(b"HER2 IHC 1+", "text/plain; charset=utf-8"), "HER2 IHC 1+"),
        (_form(b"HER2 IHC 1+", None), None),  # no content type: not known to be text
        (_form(b"HER2 IHC 1+", "application/pdf"), None),
        (_form(b"", raw="SEVSMiBJSEMgMSs=!!"), None),  # not base64: never half-read
        (_form(b"HER2 \xff IHC 1+"), "HER2 \ufffd IHC 1+"),  # a byte that is not UTF-8 is replaced, the rest read
        ("a string, not an attachment", None),
    ],
)
def test_a_report_reads_only_plain_text_forms_whole(form, read):
    report = rw.pathology_report([], "2024-06-01")
    report["presentedForm"] = [form]
    assert report_text(report) == (read or "")


# --- receptor notes
def test_an_unreadable_receptor_result_is_named_and_the_missing_ones_listed():
    unreadable = b.observation(b.cc(b.LOINC, "85339-0", "PR"), "2024-01-01", valueString="see comment")
    f = facts(unreadable)
    assert f.hr.status == "unknown"
    assert f"{unreadable['resourceType']}/{unreadable['id']}: PR result could not be read" in f.hr.notes
    assert "no readable ER or PR result: hormone-receptor status unknown" in f.hr.notes
    f = facts(b.receptor("ER", "negative", "2024-01-01"))
    assert "no readable PR result: hormone-receptor status unknown" in f.hr.notes
    assert f.hr.er is not None and f.hr.er.receptor == "ER" and f.hr.pr is None


def test_er_and_pr_are_told_apart_in_the_evidence():
    f = facts(b.receptor("ER", "negative", "2024-01-01"), b.receptor("PR", "positive", "2024-01-01"))
    assert f.hr.status == "positive" and f.hr.pr is not None and f.hr.pr.evidence.text.startswith("PR positive")


# --- therapy periods and outcomes
def test_a_refill_order_lasts_its_supply_times_one_plus_its_refills():
    def end(repeats: Any) -> date | None:
        (line,) = facts(*CHART, rw.refill("letrozole", "2024-01-01", days=30, repeats=repeats)).therapy.lines
        return line.end

    assert end(0) == date(2024, 1, 31) and end(1) == date(2024, 3, 1) and end(2) == date(2024, 3, 31)


def test_a_request_bounded_by_its_dosage_timing_runs_from_start_to_end():
    mr = b.med_request("letrozole", "2023-12-01", end="2024-06-01", status="completed")
    mr["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] = "2024-01-01"
    (line,) = facts(*CHART, mr).therapy.lines
    assert (line.start, line.end) == (date(2024, 1, 1), date(2024, 6, 1))


def test_an_administration_is_one_day_and_a_statement_without_end_is_open():
    (line,) = facts(*CHART, b.administration("paclitaxel", "2024-02-01")).therapy.lines
    assert (line.start, line.end) == (date(2024, 2, 1), date(2024, 2, 1))
    ms = b.med_statement("letrozole", "2024-01-01", status="completed")
    (line,) = facts(*CHART, ms).therapy.lines
    assert line.end is None and "end date not recorded" in line.notes


def test_a_single_stop_reason_object_is_read_as_a_list_of_one():
    ms = b.med_statement("letrozole", "2023-02-01", "2024-03-01", status="stopped")
    ms["statusReason"] = b.cc(b.SCT, "266721009", "Absent response to treatment")  # one object, not a list
    f = derive([*CHART, ms], TS, TODAY)
    assert f.therapy.lines[0].outcome in ("progressed", "ended-reason-unknown")  # read whichever way it validates


def test_two_drugs_named_in_words_are_both_said():
    pt = [*CHART, b.med_statement("paclitaxel", "2024-01-01", "2024-04-01", by="text")]
    pt.append(b.med_statement("capecitabine", "2024-01-05", "2024-04-01", by="text"))
    (line,) = facts(*pt).therapy.lines
    assert "drug named in free text, not coded: capecitabine, paclitaxel" in line.notes


def test_an_adjuvant_line_ending_on_the_day_of_recurrence_still_runs_into_it():
    pt = [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("bone", "2023-01-10"),
        b.med_statement("letrozole", "2020-01-01", "2023-01-10", status="stopped"),
        b.disease_status("progression", "2023-02-15"),
    ]
    (line,) = facts(*pt).therapy.lines
    assert line.setting == "metastatic" and line.outcome == "progressed"
    assert "begun before the advanced setting (2020-01-01), still running at its start (2023-01-10)" in line.notes[0]


# --- the dose ceiling after a late-resolved grade 1 ILD
def _dose(when: str, value: float) -> dict[str, Any]:
    r = b.administration("fam-trastuzumab deruxtecan", when)
    r["dosage"] = {"dose": {"value": value, "unit": "mg/kg", "system": "http://unitsofmeasure.org", "code": "mg/kg"}}
    return r


def _grade1(onset: str, resolved: str) -> dict[str, Any]:
    cond = b.condition(b.cc(b.SCT, "205237003", "Pneumonitis"), onset, severity={"text": "Grade 1"})
    cond["abatementDateTime"] = resolved
    return cond


def test_a_late_resolved_grade_1_reduces_from_the_dose_before_its_onset_not_after():
    f = facts(*CHART, _dose("2026-06-01", 5.4), _grade1("2026-06-20", "2026-08-01"), _dose("2026-08-10", 5.4))
    top, why = ceiling(f)
    assert top == 4.4 and why is not None and "from 5.4 to 4.4 mg/kg" in why


def test_a_late_resolved_grade_1_at_the_lowest_level_sets_no_lower_ceiling():
    pt = [_dose("2026-03-01", 5.4), _dose("2026-04-01", 4.4), _dose("2026-05-01", 3.2)]
    f = facts(*CHART, *pt, _grade1("2026-05-10", "2026-07-01"))
    assert ceiling(f) == (
        3.2,
        "dose reduced to 3.2 mg/kg on record (first reduction " + f"{f.doses.reduced[0].ref}, 2026-04-01)",
    )


# --- the ILD advice by grade
def _event(grade: int | None, resolved: date | None = None, undated: bool = False) -> IldEvent:
    ev = Evidence("Condition/c1", date(2026, 6, 1), "pneumonitis")
    return IldEvent(ev, grade, date(2026, 6, 1), resolved, undated, False)


@pytest.mark.parametrize(
    "event, advice",
    [
        (_event(2), "Grade ≥2: discontinue T-DXd permanently and promptly start systemic corticosteroids."),
        (_event(3), "Grade ≥2: discontinue T-DXd permanently and promptly start systemic corticosteroids."),
        (_event(1, date(2026, 6, 29)), "Grade 1 resolved in 28 days (≤28): the label maintains the dose."),
        (_event(1, date(2026, 6, 30)), "Grade 1 resolved in 29 days (>28): the label reduces the dose one level."),
        (
            _event(1, None, True),
            "Grade 1, resolution date not recorded: the dose to resume depends on it (28 days from onset).",
        ),
    ],
)
def test_the_ild_advice_by_grade_even_when_not_attributed_to_t_dxd(event, advice):
    assert ild_monitoring._event_advice(event) == advice
    assert replace(event, tdxd_associated=True) != event


# --- a report's statements: where the HER2 phrase stops
@pytest.mark.parametrize(
    "text, her2, er",
    [
        ("HER2: IHC 2+. FISH not amplified. Ki-67 30%.", "HER2: IHC 2+. FISH not amplified", None),
        ("HER2: IHC 2+. ER 90% positive. FISH not amplified.", "HER2: IHC 2+", "ER 90% positive"),
        ("ER 90%. FISH not amplified", None, "ER 90%"),  # only the HER2 statement takes the ISH sentence
        ("HER2 IHC 1+, ", "HER2 IHC 1+", None),
        ("HER2 IHC 2+; FISH pending", "HER2 IHC 2+; FISH pending", None),
    ],
)
def test_the_her2_statement_runs_through_its_ish_sentence_and_no_further(text, her2, er):
    from cds_service.fhir.pathology import statements

    found = dict(statements(text))
    assert found.get("her2-ihc") == her2 and found.get("er") == er


def test_a_ratio_at_or_above_2_beside_a_positive_interpretation_is_amplified():
    ihc = b.observation(
        b.cc(b.LOINC, "85319-2", "HER2 IHC"), "2024-06-01", valueCodeableConcept=b.cc(b.SCT, "10828004", "Positive")
    )
    f = facts(ihc, rw.synthea_ish("greater than 2.2", "2024-06-01"))
    assert f.her2.current.ish == "amplified" and f.her2.category == "positive"
    assert "ISH ratio ≥2.0 with no IHC score or copy number: read as amplified (group 1 or 2)" in f.her2.current.notes


# --- drafted orders
def _draft_ctx(*resources: dict[str, Any], selections: list[str] | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}}
    if selections is not None:
        ctx["selections"] = selections
    return ctx


def test_a_draft_naming_its_drug_in_a_contained_medication_is_read():
    mr = b.med_request("fam-trastuzumab deruxtecan", "2026-11-25", status="draft", dose=(5.4, "mg/kg"), id="d1")
    mr["contained"] = [{"resourceType": "Medication", "id": "med", "code": mr.pop("medicationCodeableConcept")}]
    mr["medicationReference"] = {"reference": "#med"}
    [order] = RequestContext.of("order-sign", _draft_ctx(mr), TS).drafts
    assert order.is_tdxd and order.dose_mg_per_kg == 5.4 and order.dose_text == "5.4 mg/kg"


def test_a_draft_without_a_coded_drug_is_read_from_its_note():
    mr = b.med_request("fam-trastuzumab deruxtecan", "2026-11-25", status="draft", id="d2")
    del mr["medicationCodeableConcept"]
    mr["note"] = [{"text": "Enhertu per protocol"}]
    [order] = RequestContext.of("order-sign", _draft_ctx(mr), TS).drafts
    assert order.is_tdxd and order.drug is not None and order.drug.by == "text"


def test_a_draft_of_an_unknown_drug_has_no_dose_and_a_non_medication_draft_no_drug():
    unknown = b.med_request("aspirin", "2026-11-25", status="draft", by="text", dose=(100, "mg"), id="d3")
    service = {"resourceType": "ServiceRequest", "id": "s1", "status": "draft", "intent": "order",
               "code": {"text": "CT chest"}, "subject": b.subject()}  # fmt: skip
    orders = RequestContext.of(
        "order-select", _draft_ctx(unknown, service, selections=["ServiceRequest/s1"]), TS
    ).drafts
    assert [(o.ref, o.drug, o.dose_mg_per_kg, o.dose_text, o.selected) for o in orders] == [
        ("MedicationRequest/d3", None, None, None, False),
        ("ServiceRequest/s1", None, None, None, True),
    ]


# --- the setting: each route's evidence, as the card cites it (record, date, words)
def _ref(r: dict[str, Any]) -> str:
    return f"{r['resourceType']}/{r['id']}"


def test_the_setting_names_each_record_it_stands_on():
    breast = b.condition(b.cc(b.SCT, "363346000", "Malignant neoplastic disease of left breast"), "2019-02-01")
    breast["note"] = [{"text": "Locally advanced, unresectable."}]
    ovary = b.condition(b.cc(b.SCT, "363443007", "Malignant tumor of ovary"), "2020-03-01")
    her2_dx = b.condition(b.cc(b.SCT, "427685000", "HER2 positive carcinoma of breast"), "2019-02-02")
    lung = b.metastasis("lung", "2023-04-01")
    staged = b.observation(
        b.cc(b.LOINC, "21908-9", "Stage group.clinical Cancer"),
        "2023-04-02",
        valueCodeableConcept={"text": "Stage IV, inoperable"},
    )
    s = facts(b.patient(), breast, ovary, her2_dx, lung, staged).setting
    assert Evidence(_ref(breast), date(2019, 2, 1), "breast cancer") in s.breast_cancer
    assert s.unresectable[0] == Evidence(_ref(breast), date(2019, 2, 1), "breast cancer stated unresectable/inoperable")
    assert s.unresectable[-1] == Evidence(_ref(staged), date(2023, 4, 2), "stated unresectable: Stage IV, inoperable")
    assert s.other_primary == [
        Evidence(_ref(ovary), date(2020, 3, 1), "other primary cancer: Malignant tumor of ovary (sct|363443007)")
    ]
    assert s.her2_positive_dx == [
        Evidence(
            _ref(her2_dx),
            date(2019, 2, 2),
            "diagnosis of HER2-positive disease: Human epidermal growth factor 2 positive carcinoma of breast "
            "(sct|427685000)",
        )
    ]
    assert s.lung_metastases == [Evidence(_ref(lung), date(2023, 4, 1), "lung/pleural metastasis")]
    assert (
        Evidence(
            _ref(staged), date(2023, 4, 2), "stage IV / M1 staging (Stage group.clinical Cancer: Stage IV, inoperable)"
        )
        in s.evidence
    )
    assert [(m.site, m.by_text) for m in s.distant] == [("lung", False)]


def test_without_any_record_the_setting_is_not_metastatic_and_says_so():
    s = facts(b.patient()).setting
    assert s.metastatic is False and s.start is None
    assert s.notes == ["no record of metastatic disease (secondary malignancy, stage IV or M1)"]


def test_a_metastasis_named_only_in_words_is_marked_as_such_and_a_same_day_m0_does_not_remove_it():
    words = b.condition({"text": "metastatic disease to the liver"}, "2023-04-01")
    m0 = rw.tnm_m("30893008", "M0 category", "2023-04-01")
    s = facts(b.patient(), b.breast_cancer(), words, m0).setting
    assert s.metastatic and [m.by_text for m in s.distant] == [True]
    later = rw.tnm_m("30893008", "M0 category", "2023-05-01")
    assert not facts(b.patient(), b.breast_cancer(), words, later).setting.metastatic


def test_codes_without_words_are_named_by_system_and_code():
    node = b.condition({"coding": [{"system": b.SCT, "code": "94181007"}]}, "2023-04-01")  # axillary node metastasis
    staged = b.breast_cancer("2019-01-01", stage=[{"summary": {"coding": [{"system": rw.AJCC, "code": "2A"}]}}])
    s = facts(b.patient(), staged, node).setting
    assert any(n.startswith(f"{_ref(node)} (sct|94181007): regional lymph-node disease") for n in s.notes)
    assert not s.metastatic


# --- the HER2 picture: amendments, preliminary results, which IHC an ISH joins
def test_an_amendment_that_names_what_it_amends_replaces_it_whatever_its_date():
    original = b.her2_ihc(1, "2024-01-01", id="o1")
    amended = b.her2_ihc(3, "2024-02-01", status="amended", derivedFrom=[{"reference": "Observation/o1"}])
    f = facts(original, amended)
    assert [r.refs for r in f.her2.results] == [[_ref(amended)]] and f.her2.category == "positive"
    assert "Observation/o1 was replaced by an amended/corrected result" in f.her2.notes


@pytest.mark.parametrize(
    "original_issued, replaced",
    [("2024-01-02T08:00:00Z", True), ("2024-01-03T08:00:00Z", True), ("2024-01-04T08:00:00Z", False)],
)
def test_an_amendment_of_the_same_test_and_day_replaces_what_was_issued_before_or_with_it(original_issued, replaced):
    original = b.her2_ihc(1, "2024-01-01", specimen="s9", issued=original_issued)
    amended = b.her2_ihc(3, "2024-01-01", specimen="s9", status="corrected", issued="2024-01-03T08:00:00Z")
    ish = b.her2_ish("not amplified", "2024-01-01", specimen="s9")  # another test: never replaced by an IHC
    f = facts(original, amended, ish)
    refs = [ref for r in f.her2.results for ref in r.refs]
    assert (_ref(original) not in refs) is replaced and _ref(ish) in refs and _ref(amended) in refs


def test_two_amendments_of_one_day_do_not_replace_each_other():
    first = b.her2_ihc(1, "2024-01-01", specimen="s8", status="amended", issued="2024-01-02T08:00:00Z")
    second = b.her2_ihc(2, "2024-01-01", specimen="s8", status="amended", issued="2024-01-03T08:00:00Z")
    refs = [ref for r in facts(first, second).her2.results for ref in r.refs]
    assert _ref(first) in refs and _ref(second) in refs


def test_a_preliminary_result_is_named_and_outranked_only_by_a_final_one():
    prelim = b.her2_ihc(2, "2024-01-01", specimen="s7", status="preliminary")
    final = b.her2_ihc(1, "2024-01-01", specimen="s7")
    f = facts(prelim, final)
    assert f.her2.current.ihc == 1
    assert f"{_ref(prelim)} is preliminary and outranked by the final result" in f.her2.current.notes
    alone = facts(b.her2_ihc(2, "2024-01-01", specimen="s6", status="preliminary")).her2.current
    assert alone.ihc == 2 and alone.notes[-1].endswith("is preliminary")


@pytest.mark.parametrize("days_after, joins", [(0, True), (60, True), (61, False), (-1, False)])
def test_an_ish_joins_the_ihc_of_the_same_site_up_to_60_days_before_it(days_after, joins):
    ihc = b.her2_ihc(2, "2024-01-01", site="liver")
    when = (date(2024, 1, 1) + timedelta(days=days_after)).isoformat()
    ish = b.her2_ish("not amplified", when, site="liver")
    f = facts(ihc, ish)
    [with_ihc] = [r for r in f.her2.results if _ref(ihc) in r.refs]
    assert (_ref(ish) in with_ihc.refs) is joins and (with_ihc.category == "low") is joins


@pytest.mark.parametrize("ish_site, joins", [("liver", True), ("left breast", False), (None, True)])
def test_an_ish_joins_an_ihc_of_its_own_site_or_of_an_unknown_one(ish_site, joins):
    ihc = b.her2_ihc(2, "2024-01-01", site="liver")
    ish = b.her2_ish("not amplified", "2024-01-05", site=ish_site)
    [with_ihc] = [r for r in facts(ihc, ish).her2.results if _ref(ihc) in r.refs]
    assert (_ref(ish) in with_ihc.refs) is joins


def test_discordance_needs_a_positive_and_another_result():
    assert not facts(b.her2_ihc(3, "2024-01-01")).her2.discordant
    assert facts(b.her2_ihc(3, "2020-01-01"), b.her2_ihc(1, "2024-01-01")).her2.discordant
    assert not facts(b.her2_ihc(1, "2020-01-01"), b.her2_ihc(2, "2024-01-01")).her2.discordant


def test_an_earlier_low_sample_is_named_only_when_the_latest_is_0_and_none_was_positive():
    low_then_null = facts(b.her2_ihc(1, "2020-01-01"), b.her2_ihc(0, "2024-01-01", membrane="absent")).her2
    assert low_then_null.earlier_low is not None and low_then_null.earlier_low.ihc == 1 and low_then_null.discordant
    assert facts(b.her2_ihc(1, "2020-01-01"), b.her2_ihc(2, "2024-01-01")).her2.earlier_low is None
    pos = facts(b.her2_ihc(3, "2018-01-01"), b.her2_ihc(1, "2020-01-01"), b.her2_ihc(0, "2024-01-01")).her2
    assert pos.earlier_low is None


# --- the clinical windows of thresholds.py, at their edges
@pytest.mark.parametrize("days_ago, active", [(0, True), (TDXD_ACTIVE.value, True), (TDXD_ACTIVE.value + 1, False)])
def test_tdxd_is_active_while_its_last_dose_is_at_most_42_days_old(days_ago, active):
    given = (TODAY - timedelta(days=days_ago)).isoformat()
    f = facts(*CHART, b.administration("fam-trastuzumab deruxtecan", given))
    assert f.therapy.tdxd_active is active
    assert TDXD_ACTIVE.value == 42


@pytest.mark.parametrize(
    "after_start, counts_for_the_new_line", [(NEW_LINE_GRACE.value, False), (NEW_LINE_GRACE.value + 1, True)]
)
def test_a_progression_just_after_a_new_line_started_is_the_line_befores(after_start, counts_for_the_new_line):
    """Letrozole ended 2024-06-01, fulvestrant started the next day; a progression 30 days into fulvestrant (31 after
    letrozole ended) is letrozole's, not fulvestrant's; a day later it is fulvestrant's."""
    start = date(2024, 6, 2)
    f = facts(
        *CHART,
        b.med_statement("letrozole", "2023-02-01", "2024-06-01", status="completed"),
        b.med_statement("fulvestrant", start.isoformat()),
        b.disease_status("progression", (start + timedelta(days=after_start)).isoformat()),
    )
    [fulvestrant] = [ln for ln in f.therapy.lines if "fulvestrant" in ln.drugs]
    assert (fulvestrant.outcome == "progressed") is counts_for_the_new_line
    assert NEW_LINE_GRACE.value == 30
