"""The fast check in front of fhir.resources (issue 26): generated from the models, it only ever says "valid", and
never where fhir.resources refuses or repairs. The gate at a size CI affords (tests/fast_check_gate.py runs it
large, and on published records)."""

from __future__ import annotations

import copy

import pytest

from cds_service.fhir.fast_check import HOPS, MAX_DEPTH, PATTERNS, _cycles, _levels, schema_of
from cds_service.fhir.validation import FAST, MODELS, VALID, WARM_UP_RECORDS, _verdict, verdict_of
from tests.fast_check_gate import corpus, wrongly_accepted

CORPUS = corpus()
OBS = next(r for r in WARM_UP_RECORDS if r["resourceType"] == "Observation")


def test_the_gate_never_an_acceptance_fhir_resources_would_refuse_or_repair():
    wrong, tally = wrongly_accepted(CORPUS, mutants=30_000)
    assert not wrong, wrong[:3]
    assert tally["mutants"] > 25_000 and tally["mutants accepted"] > 2_000  # the mutants reach both answers
    assert tally["resources"] >= 150


def test_the_check_accepts_the_valid_records_the_service_reads():
    """Useful, not only safe: every valid resource of the corpus goes the fast way."""
    valid = [r for r in CORPUS if _verdict(MODELS[r["resourceType"]], r) == VALID]
    fast = [r for r in valid if FAST.accepts(r)]
    assert len(valid) >= 150 and len(fast) == len(valid)


@pytest.mark.parametrize(
    "kind, value, ok",
    [
        ("dateTime", "2024", True), ("dateTime", "2024-02", True), ("dateTime", "2024-02-28", True),
        ("dateTime", "2024-02-29", False), ("dateTime", "2024-02-30", False), ("dateTime", "2024-04-30", True),
        ("dateTime", "2024-04-31", False), ("dateTime", "2024-12-31", True), ("dateTime", "2024-13-01", False),
        ("dateTime", "0999-01-01", False), ("dateTime", "2024-01-01T10:00:00Z", True),
        ("dateTime", "2024-01-01T10:00:00", False), ("dateTime", "2024-01-01T10:00:60Z", False),
        ("dateTime", "2024-01-01T10:00:00.123+14:00", True), ("dateTime", "2024-01-01T10:00:00+14:30", False),
        ("instant", "2024-01-01T10:00:00Z", True), ("instant", "2024-01-01", False),
        ("date", "2024-06-30", True), ("date", "2024-06-31", False), ("date", "2024-01-01T10:00:00Z", False),
        ("time", "23:59:59", True), ("time", "24:00:00", False),
    ],
)  # fmt: skip
def test_dates_pass_the_fast_way_only_when_they_are_calendar_dates(kind, value, ok):
    """A day past the 28th only in months that always have it; no leap second; a time only with its zone."""
    import re

    assert bool(re.search(PATTERNS[kind], value)) is ok


@pytest.mark.parametrize(
    "change",
    [
        {"status": None}, {"status": ""}, {"status": "fin  al"}, {"status": " final"}, {"category": []},
        {"category": [None]},
        {"_status": {"extension": [{"url": "http://x", "valueString": "y"}]}}, {"valueString": "x"},
        {"contained": [{"resourceType": "Patient", "id": "x"}]}, {"effectiveDateTime": "2023-02-29"},
        {"id": "x" * 65}, {"foo": 1},
    ],
)  # fmt: skip
def test_what_the_models_must_decide_goes_to_the_models(change):
    """Nulls, empty lists, `_element` extensions, a doubled choice, contained resources, no calendar date, an unknown
    element: the check refuses, fhir.resources decides (and words the refusal as before)."""
    obs = {**copy.deepcopy(OBS), **change}
    assert not FAST.accepts(obs)


def test_a_resource_nested_deeper_than_the_models_can_follow_goes_to_them():
    cur = {"url": "http://x", "valueString": "a"}
    for _ in range(300):
        cur = {"url": "http://x", "extension": [cur]}
    obs = {**copy.deepcopy(OBS), "extension": [cur]}
    assert not FAST.accepts(obs)
    fixes, note = verdict_of(obs)
    assert fixes is None and "not readable FHIR" in (note or "")


def _nested_extensions(levels: int) -> dict:
    cur = {"url": "http://x", "valueString": "a"}
    for _ in range(levels):
        cur = {"url": "http://x", "extension": [cur]}
    return {**copy.deepcopy(OBS), "extension": [cur]}


def test_cycles_are_followed_hops_deep_then_left_to_the_models():
    """Extension in extension: accepted while within HOPS steps of a cycle, then refused by the check and decided
    by the models (valid as they stand: the answer is the same, only slower)."""
    for levels in range(HOPS + 1):
        assert FAST.accepts(_nested_extensions(levels)), levels
    beyond = _nested_extensions(HOPS + 1)
    assert not FAST.accepts(beyond)
    assert verdict_of(beyond) == VALID


def test_no_schema_accepts_nesting_past_max_depth():
    """The bound is computed from the unrolled schema (it is acyclic: every cycle was unrolled)."""
    schema = schema_of(*MODELS.values())
    assert _cycles(schema["$defs"]) == {}
    for name in MODELS:
        assert _levels(schema["$defs"], name) - 1 <= MAX_DEPTH, name


def test_one_check_for_every_type_each_by_its_own_model():
    """One validator for all the types (datatypes compiled once): a resource is checked against the model its
    resourceType names; a type the service does not validate, or none, is refused (the models decide)."""
    condition = next(r for r in WARM_UP_RECORDS if r["resourceType"] == "Condition")
    assert FAST.accepts(condition) and FAST.accepts(OBS)
    assert not FAST.accepts({**condition, "resourceType": "Observation"})
    assert not FAST.accepts({**OBS, "resourceType": "Condition"})
    assert not FAST.accepts({"resourceType": "Patient", "id": "p1"})
    assert not FAST.accepts({k: v for k, v in OBS.items() if k != "resourceType"})


def test_nesting_past_what_jsonschema_rs_reads_is_refused_not_raised():
    deep = copy.deepcopy(OBS)
    here = deep
    for _ in range(1000):
        here["foo"] = {}
        here = here["foo"]
    assert not FAST.accepts(deep)
    assert not FAST.accepts(_nested_extensions(1000))


def test_the_schema_is_generated_from_the_models():
    """Every element of each model is in its schema under its JSON name; the required ones are required."""
    for name, model in MODELS.items():
        schema = schema_of(model)["$defs"][name]
        names = {info.alias or n for n, info in model.model_fields.items() if not n.endswith("__ext")} - {
            "fhir_comments"
        }
        assert names | {"resourceType"} == set(schema["properties"]), name
        required = {info.alias or n for n, info in model.model_fields.items() if info.is_required()}
        assert required <= set(schema["required"]), name
