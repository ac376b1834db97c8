"""The facts memo (facts/memo.py): a chart sent again gets the facts derived for it (the request's drafts and
unavailable sources are its RequestContext, read afresh); any change to the chart or the day derives afresh;
bounded in bytes and age; rules and rendering never change the facts they are given (a memoised Facts is shared by
later calls)."""

from __future__ import annotations

import copy
import json
import sys
import threading
import time
from datetime import date

import pytest

from cds_service.config import load
from cds_service.engine import Engine
from cds_service.explain import explain
from cds_service.facts.derive import derive
from cds_service.facts.memo import FactsMemo
from cds_service.facts.request import RequestContext
from cds_service.fhir.terminology import load_terminology
from cds_service.paths import hooks_dir

from .fixtures import builders as b
from .fixtures import patients, realworld
from .helpers import cards_without_ids, hook_request

TS = load_terminology()
TODAY = date(2026, 11, 25)
EXAMPLES = sorted((hooks_dir() / "examples").glob("*.json"))


def _context(drug: str) -> dict:
    draft = b.med_request(drug, "2026-11-25", status="draft", id=f"draft-{drug}")
    return hook_request("order-select", draft_orders=[draft])["context"]


BELL = patients.bell()  # built once: the builders number their ids, so two builds are two charts


def _chart(her2_score: str = "1+") -> list[dict]:
    """Bell's chart (a fresh copy each call: equal content, new objects) with a late HER2 IHC result."""
    return [*copy.deepcopy(BELL), b.her2_ihc(her2_score, "2026-10-01", id="late-her2")]


def test_a_resent_chart_gets_the_same_facts_and_the_request_its_own_drafts_and_gaps():
    memo = FactsMemo(10_000_000, 600)
    first = memo.derive(_chart(), TS, TODAY)
    again = memo.derive(_chart(), TS, TODAY)
    assert (memo.hits, memo.misses) == (1, 1) and again is first
    assert again == derive(_chart(), TS, TODAY)
    one = RequestContext.of("order-select", _context("capecitabine"), TS)
    other = RequestContext.of("order-select", _context("fam-trastuzumab deruxtecan"), TS, {"pathology": "x"})
    assert [d.drug.value_set for d in one.drafts if d.drug] != [d.drug.value_set for d in other.drafts if d.drug]
    assert one.unavailable == {} and other.unavailable == {"pathology": "x"}


@pytest.mark.parametrize(
    "change",
    [
        lambda chart: chart[-1]["valueCodeableConcept"].update(text="3+"),  # a value
        lambda chart: chart[-1].update(status="entered-in-error"),  # a status
        lambda chart: chart.pop(0),  # a resource fewer
        lambda chart: chart.append(b.metastasis("lung", "2026-11-01")),  # one more
    ],
)
def test_any_change_to_the_chart_derives_afresh(change):
    memo = FactsMemo(10_000_000, 600)
    memo.derive(_chart(), TS, TODAY)
    changed = _chart()
    change(changed)
    got = memo.derive(changed, TS, TODAY)
    assert memo.hits == 0 and memo.misses == 2
    assert got == derive(changed, TS, TODAY)


def test_the_changed_value_reaches_the_facts():
    memo = FactsMemo(10_000_000, 600)
    low = memo.derive(_chart("1+"), TS, TODAY)
    positive = memo.derive(_chart("3+"), TS, TODAY)
    assert low.her2.category == "low" and positive.her2.category == "positive"


def test_another_day_derives_afresh():
    memo = FactsMemo(10_000_000, 600)
    memo.derive(_chart(), TS, TODAY)
    memo.derive(_chart(), TS, date(2026, 11, 26))
    assert (memo.hits, memo.misses) == (0, 2)


def test_bounded_in_bytes():
    size = len(json.dumps(_chart()))
    memo = FactsMemo(size * 8, 600)  # room for about 8 charts of this size
    for i in range(40):
        memo.derive([*_chart(), b.observation(b.cc(b.LOINC, "33914-3", "eGFR"), "2026-01-01", id=f"e{i}")], TS, TODAY)
    assert 1 <= len(memo) <= 8


def test_a_chart_not_sent_again_is_forgotten():
    memo = FactsMemo(10_000_000, 0.2)
    memo.derive(_chart(), TS, TODAY)
    time.sleep(0.3)
    memo.derive(_chart("0"), TS, TODAY)  # any call drops what is too old
    assert len(memo) == 1
    memo.derive(_chart(), TS, TODAY)
    assert memo.hits == 0


def test_off_when_zero():
    for memo in (FactsMemo(0, 600), FactsMemo(10_000_000, 0)):
        memo.derive(_chart(), TS, TODAY)
        memo.derive(_chart(), TS, TODAY)
        assert len(memo) == 0 and memo.hits == 0


def test_what_orjson_cannot_write_is_derived_afresh():
    memo = FactsMemo(10_000_000, 600)
    chart = [*_chart(), {"resourceType": "Basic", "id": "x", "n": 2**70}]
    assert memo.derive(chart, TS, TODAY) == derive(chart, TS, TODAY)
    assert len(memo) == 0


def test_threads_each_get_their_own_charts_facts():
    memo = FactsMemo(10_000_000, 600)
    scores = ["0", "1+", "2+", "3+"] * 8
    expected = {s: derive(_chart(s), TS, TODAY) for s in set(scores)}
    wrong: list[str] = []

    def run(score: str) -> None:
        for _ in range(5):
            if memo.derive(_chart(score), TS, TODAY) != expected[score]:
                wrong.append(score)

    threads = [threading.Thread(target=run, args=(s,)) for s in scores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and memo.hits >= len(scores) * 5 - 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_rules_rendering_and_explain_leave_the_facts_unchanged(path, tmp_path):
    """A memoised Facts is handed to later calls: nothing downstream may change it."""
    request = json.loads(path.read_text("utf-8"))
    engine = Engine(load(None, overrides={"storage": {"database_url": f"sqlite:///{tmp_path}/x.db"}}))
    resources = [
        e["resource"] if "entry" in v else v
        for v in (request.get("prefetch") or {}).values()
        if v
        for e in (v.get("entry") or [{"resource": v}] if v.get("resourceType") == "Bundle" else [{"resource": v}])
    ]
    facts = derive(resources, TS, TODAY)
    before = copy.deepcopy(facts)
    for hook in ("order-select", "order-sign", "patient-view"):
        asked = RequestContext.of(hook, request["context"], TS)
        engine.decide(facts, asked)
        explain(facts, asked, engine.settings.cards, resources, TS)
    assert facts == before


def test_the_engine_answers_a_resent_chart_from_the_memo(tmp_path):
    engine = Engine(load(None, overrides={"storage": {"database_url": f"sqlite:///{tmp_path}/x.db"}}))
    request = json.loads((hooks_dir() / "examples" / "bell.order-select-ribociclib.json").read_text("utf-8"))
    service = engine.services["her2-order-select"]
    first = engine.invoke(service, copy.deepcopy(request)).body
    second = engine.invoke(service, copy.deepcopy(request)).body
    assert engine.facts.hits == 1
    assert first["cards"] and cards_without_ids(first) == cards_without_ids(second)


# --- what a resource's own content decides, kept by its bytes (fhir/extraction.py, Terminology.remember)


@pytest.mark.parametrize("seed", range(12))
def test_memoised_readings_never_change_the_facts(seed):
    """Cold (a fresh Terminology, no validation verdicts) and warm derivations of generated charts agree."""
    from cds_service.fhir.validation import clear_content_cache

    from .benchmarks.generate import chart, prefetch_chart

    for resources in (prefetch_chart(200, seed), chart(200, seed)):
        clear_content_cache()
        cold_ts = load_terminology()
        cold = derive(copy.deepcopy(resources), cold_ts, TODAY)
        warm = derive(copy.deepcopy(resources), cold_ts, TODAY)
        assert cold == warm
        assert cold == derive(copy.deepcopy(resources), TS, TODAY)


def test_a_record_that_names_a_medication_resource_follows_that_resource():
    """The MedicationRequest is byte-identical in both charts; the Medication it references is not: the drug
    is read per request, never from what the record's own bytes were sorted as before."""
    ts = load_terminology()
    request = {
        "resourceType": "MedicationRequest",
        "id": "mr-ref",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/med-1"},
        "authoredOn": "2025-01-10",
    }

    def medication(name: str) -> dict:
        code = b.RXNORM[name]
        return {"resourceType": "Medication", "id": "med-1", "code": b.cc(b.RX, code, name)}

    first = derive([copy.deepcopy(request), medication("letrozole")], ts, TODAY)
    second = derive([copy.deepcopy(request), medication("capecitabine")], ts, TODAY)
    assert [ln.classes for ln in first.therapy.lines] == [{"endocrine-therapy"}]
    assert [ln.classes for ln in second.therapy.lines] == [{"chemotherapy"}]


def test_a_report_member_is_sorted_by_its_report_in_this_chart_only():
    """An Observation with a local code is read as HER2 only while a pathology report references it."""
    ts = load_terminology()
    local = {
        "resourceType": "Observation",
        "id": "local-her2",
        "status": "final",
        "code": {"text": "c-erbB-2 immunostain", "coding": [{"system": "urn:local", "code": "X1"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-01",
        "valueCodeableConcept": {"text": "1+"},
    }
    report = {
        "resourceType": "DiagnosticReport",
        "id": "path-1",
        "status": "final",
        "category": [b.cc("http://terminology.hl7.org/CodeSystem/v2-0074", "SP", "Surgical Pathology")],
        "code": b.cc(b.LOINC, "60568-3", "Pathology Synoptic report"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-01",
        "result": [{"reference": "Observation/local-her2"}],
    }
    with_report = derive([copy.deepcopy(local), report], ts, TODAY)
    alone = derive([copy.deepcopy(local)], ts, TODAY)
    assert [r.ihc for r in with_report.her2.results] == [1]
    assert alone.her2.results == []


def test_the_validation_cache_keeps_verdicts_not_resources():
    """A byte-identical resource of a later request is returned as itself (the cache holds no request's data),
    with the same verdict and note; one that needed wrapping is wrapped again from the new copy."""
    from cds_service.fhir.validation import clear_content_cache, validated

    clear_content_cache()
    first = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
    assert validated(first, []) is first
    again = copy.deepcopy(first)
    assert validated(again, []) is again
    single = {**first, "id": "o2", "category": {"text": "laboratory"}}  # R4 wants a list
    notes: list[str] = []
    read = validated(copy.deepcopy(single), notes)
    later = copy.deepcopy(single)
    notes_later: list[str] = []
    read_later = validated(later, notes_later)
    assert read == read_later and read_later["category"] == [{"text": "laboratory"}]
    assert read_later is not read and later["category"] == {"text": "laboratory"}  # the request's copy untouched
    assert notes == notes_later and "read as lists" in notes[0]
    bad = {**first, "id": "o3", "status": 7}
    bad_notes: list[str] = []
    assert validated(bad, bad_notes) is None and validated(copy.deepcopy(bad), bad_notes) is None
    assert len(bad_notes) == 2 and "not valid FHIR R4" in bad_notes[0]


def test_lru_bounds_and_order():
    from cds_service.fhir.lru import Lru

    lru = Lru(3)
    for k in "abc":
        lru.put(k, k.upper())
    assert lru.get("a") == "A"  # a is now the most recent
    lru.put("d", "D")
    assert len(lru) == 3 and lru.get("b") is None and lru.get("a") == "A"
    made: list[int] = []
    assert lru.get_or_make("n", lambda: made.append(1)) is None  # None is never kept
    assert lru.get_or_make("n", lambda: made.append(1)) is None and len(made) == 2


@pytest.mark.parametrize("seed", range(6))
def test_rules_leave_the_facts_of_generated_charts_unchanged(seed, tmp_path):
    """As above, on larger generated charts (lines, progressions, HER2 histories, ILD risks)."""
    from .benchmarks.generate import chart, prefetch_chart

    engine = Engine(load(None, overrides={"storage": {"database_url": f"sqlite:///{tmp_path}/x.db"}}))
    for resources in (prefetch_chart(300, seed), chart(300, seed)):
        drafts = _context("fam-trastuzumab deruxtecan")
        facts = derive(resources, TS, TODAY)
        before = copy.deepcopy(facts)
        for hook in ("order-select", "order-sign", "patient-view"):
            asked = RequestContext.of(hook, drafts, TS)
            engine.decide(facts, asked)
            explain(facts, asked, engine.settings.cards, resources, TS)
        assert facts == before


@pytest.mark.parametrize(
    "change, rebuilt",
    [
        (lambda c: c.append(b.observation(b.cc(b.LOINC, "33914-3", "eGFR"), "2026-11-01", id="new-egfr")), False),
        (lambda c: c.append(b.her2_ihc("0", "2026-11-01", id="new-her2")), False),
        (lambda c: c.append(b.med_statement("paclitaxel", "2026-06-01", end="2026-09-01")), True),
        (lambda c: c.append(b.disease_status("progression", "2026-10-01")), True),
        (lambda c: c.append(b.metastasis("lung", "2026-10-15")), True),
    ],
)
def test_therapy_lines_are_kept_by_what_they_are_built_from(change, rebuilt):
    """A chart that changed elsewhere reuses the lines; a new record, status or metastasis rebuilds them; either
    way they equal the lines derived in a fresh process."""
    from cds_service.fhir.validation import clear_content_cache

    ts = load_terminology()
    first = derive(_chart(), ts, TODAY)
    changed = _chart()
    change(changed)
    second = derive(copy.deepcopy(changed), ts, TODAY)
    assert (second.therapy is first.therapy) is not rebuilt
    clear_content_cache()
    assert second.therapy == derive(copy.deepcopy(changed), load_terminology(), TODAY).therapy


PARTS = ("her2", "hr", "setting")


@pytest.mark.parametrize(
    "change, rebuilt",
    [
        (lambda c: c.append(b.observation(b.cc(b.LOINC, "33914-3", "eGFR"), "2026-11-01", id="new-egfr")), set()),
        (lambda c: c.append(b.her2_ihc("0", "2026-11-01", id="new-her2")), {"her2"}),
        (lambda c: c.append(b.receptor("ER", 0, "2026-11-01")), {"hr"}),
        (lambda c: c.append(b.metastasis("lung", "2026-10-15")), {"setting"}),
        (lambda c: c.append(realworld.tnm_m("1", "M1", "2026-10-15")), {"setting"}),
    ],
)
def test_her2_receptors_and_setting_are_kept_by_what_they_read(change, rebuilt):
    """Each part is rebuilt only when what it reads changed (a new lab rebuilds none, a HER2 result only the HER2
    picture, a receptor result only the HR status, a metastasis or an M category only the setting); either way it
    equals the part derived in a fresh process."""
    from cds_service.fhir.validation import clear_content_cache

    ts = load_terminology()
    first = derive(_chart(), ts, TODAY)
    changed = _chart()
    change(changed)
    second = derive(copy.deepcopy(changed), ts, TODAY)
    clear_content_cache()
    fresh = derive(copy.deepcopy(changed), load_terminology(), TODAY)
    for part in PARTS:
        if part == "her2":  # a new object each call (its unreadable list is this chart's), its parts kept
            assert (second.her2.results is first.her2.results) is (part not in rebuilt)
        else:
            assert (getattr(second, part) is getattr(first, part)) is (part not in rebuilt), part
        assert getattr(second, part) == getattr(fresh, part), part


def test_a_kept_her2_picture_names_only_this_charts_unreadable_results():
    """The picture is kept by the readable results; which HER2 results could not be read is this chart's own."""
    ts = load_terminology()
    broken = b.her2_ihc("2+", "2026-11-02", id="broken-her2")
    broken["valueString"] = "a second value[x]"  # not valid FHIR R4
    with_broken = derive([*_chart(), broken], ts, TODAY)
    without = derive(_chart(), ts, TODAY)
    assert with_broken.her2.results is without.her2.results
    assert with_broken.her2.unreadable == ["Observation/broken-her2"] and without.her2.unreadable == []
    again = derive([*_chart(), copy.deepcopy(broken)], ts, TODAY)
    assert again.her2.unreadable == ["Observation/broken-her2"] and without.her2.unreadable == []


def test_lru_under_threads_stays_bounded_and_answers_what_was_put():
    """Gets without the lock, puts with it: eight threads over keys of the kinds kept (bytes, tuples holding
    dataclasses whose __eq__ is Python code) never raise, never answer another key's value, and keep the bound."""
    from dataclasses import dataclass

    from cds_service.fhir.lru import Lru

    @dataclass(frozen=True)
    class Site:
        name: str

    lru = Lru(64)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(6_000):
                n = (i * 7 + seed) % 200
                key = ("therapy", str(n).encode(), (Site(str(n)),)) if n % 2 else str(n).encode()
                hit = lru.get(key)
                if hit is None:
                    lru.put(key, n)
                elif hit != n:
                    raise AssertionError((key, hit))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors and len(lru) <= 64


def test_lru_bounded_by_weight_drops_the_oldest_and_keeps_nothing_over_the_cap():
    from cds_service.fhir.lru import Lru, key_bytes

    lru = Lru(100, max_bytes=5_000, weigh=key_bytes)
    for i in range(10):
        lru.put(("sorting", bytes([i]) * 1_000), i)  # 1,600 each by key_bytes
    assert len(lru) == 3 and lru.bytes == 4_800
    assert lru.get(("sorting", bytes([9]) * 1_000)) == 9 and lru.get(("sorting", bytes([6]) * 1_000)) is None
    lru.put(("therapy", (b"x" * 3_000, b"y" * 3_000), "drug"), "big")  # 6,600: over the cap on its own
    assert lru.get(("therapy", (b"x" * 3_000, b"y" * 3_000), "drug")) is None and lru.bytes <= 5_000
    assert [lru.get(("sorting", bytes([i]) * 1_000)) for i in (7, 8, 9)] == [7, 8, 9]  # and pushed nothing out
    lru.clear()
    assert lru.bytes == 0 and len(lru) == 0


def test_content_caches_stay_within_their_bytes_for_large_resources():
    """Reports with embedded PDFs (hundreds of KB each) cannot grow the verdict cache past its cap."""
    from cds_service.fhir import validation

    validation.clear_content_cache()
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "Surgical pathology"},
        "presentedForm": [{"contentType": "application/pdf", "data": ""}],
    }
    pdf = "JVBERi0xLjQK" * 25_000  # 300 KB of base64
    for i in range(300):
        big = {**report, "id": f"r{i}", "presentedForm": [{"contentType": "application/pdf", "data": pdf + f"{i:04d}"}]}
        assert validation.validated(big, []) is big
    assert validation._CACHE.bytes <= validation.CONTENT_CACHE_MB * 1_000_000
    assert validation._ELEMENTS.bytes <= validation.ELEMENT_CACHE_MB * 1_000_000
    assert 0 < len(validation._CACHE) < 300
    validation.clear_content_cache()


def test_the_concept_memo_keeps_no_huge_concept_and_stays_within_its_bytes():
    ts = load_terminology()
    pasted = {"text": "HER2 IHC score 2+ " + "x" * 20_000}  # a report pasted into .text
    before = ts.memoised_verdicts
    first = ts.match("her2-ihc", pasted)
    assert ts.memoised_verdicts == before and ts.match("her2-ihc", pasted) == first  # matched, not kept
    for i in range(4_000):
        ts.match("er", {"text": f"estrogen receptor {i} " + "y" * 10_000})
    assert ts._memo.bytes <= ts.MEMO_MB * 1_000_000 and ts.memoised_verdicts < 4_000
