"""The fast check in front of fhir.resources (issue 26): generated from the models, it only ever says "valid", and
never where fhir.resources refuses or repairs. The gate at a size CI affords (tests/fast_check_gate.py runs it
large, and on published records)."""

from __future__ import annotations

import copy

import pytest

from cds_service.fhir.fast_check import HOPS, MAX_DEPTH, PATTERNS, _cycles, _levels, accepts, schema_of
from cds_service.fhir.validation import MODELS, VALID, WARM_UP_RECORDS, _verdict, verdict_of
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
    fast = [r for r in valid if accepts(MODELS[r["resourceType"]], r)]
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
    assert not accepts(MODELS["Observation"], obs)


def test_a_resource_nested_deeper_than_the_models_can_follow_goes_to_them():
    cur = {"url": "http://x", "valueString": "a"}
    for _ in range(300):
        cur = {"url": "http://x", "extension": [cur]}
    obs = {**copy.deepcopy(OBS), "extension": [cur]}
    assert not accepts(MODELS["Observation"], obs)
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
    model = MODELS["Observation"]
    for levels in range(HOPS + 1):
        assert accepts(model, _nested_extensions(levels)), levels
    beyond = _nested_extensions(HOPS + 1)
    assert not accepts(model, beyond)
    assert verdict_of(beyond) == VALID


def test_no_schema_accepts_nesting_past_max_depth():
    """The bound is computed from each unrolled schema (it is acyclic); nothing on a cycle is left unrolled."""
    for name, model in MODELS.items():
        schema = schema_of(model)
        assert _levels(schema["$defs"], name) - 1 <= MAX_DEPTH, name
        assert _cycles(schema["$defs"]) == {}, name  # acyclic: every cycle was unrolled


def test_nesting_past_what_jsonschema_rs_reads_is_refused_not_raised():
    deep = copy.deepcopy(OBS)
    here = deep
    for _ in range(1000):
        here["foo"] = {}
        here = here["foo"]
    assert not accepts(MODELS["Observation"], deep)
    assert not accepts(MODELS["Observation"], _nested_extensions(1000))


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
