"""Validation hands fhir.resources the complex elements it validated before (kept by their bytes): the verdict and
its note must be exactly those of a plain model_validate, on valid, fixable and broken resources alike."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from cds_service.fhir import validation
from cds_service.paths import hooks_dir
from tests.benchmarks.generate import chart, prefetch_chart
from tests.fixtures import patients


def _plain(model: Any, data: dict[str, Any]) -> None:
    model.model_validate(data)


def _corpus() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [copy.deepcopy(r) for r in validation.WARM_UP_RECORDS]
    for path in sorted((hooks_dir() / "examples").glob("*.json")):
        body = json.loads(path.read_text("utf-8"))
        for value in (body.get("prefetch") or {}).values():
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                out += [e["resource"] for e in value.get("entry", []) if isinstance(e.get("resource"), dict)]
            elif isinstance(value, dict):
                out.append(value)
    for name in dir(patients):
        if not name.startswith("_") and callable(fn := getattr(patients, name)) and fn.__module__ == patients.__name__:
            try:
                made = fn()
            except TypeError:
                continue
            if isinstance(made, list):
                out += [r for r in made if isinstance(r, dict)]
    for seed in (1, 2):
        out += chart(120, seed) + prefetch_chart(120, seed)
    return [r for r in out if r.get("resourceType") in validation.MODELS]


CORPUS = _corpus()
BAD_DATES = ["2020-13-45", "20-01-01", "2020-02-30", "2020-01-01T25:00:00Z", "", " 2020-01-01"]


def _mutant(rng: random.Random, resource: dict[str, Any]) -> dict[str, Any]:
    """One resource with one or two faults of the kinds real feeds carry, aimed mostly at its complex elements."""
    r = copy.deepcopy(resource)
    plan = validation._plan(validation.MODELS[r["resourceType"]])
    for _ in range(rng.choice((1, 1, 2))):
        complex_keys = [k for k in r if k in plan]
        if complex_keys and rng.random() < 0.75:
            kind = rng.randrange(14)
            kind = 4 if kind > 10 else kind  # the fixable fault, more often
            listed = [k for k in complex_keys if plan[k][1] and isinstance(r[k], list) and r[k]]
            key = rng.choice(listed if kind == 4 and listed else complex_keys)
            _, repeats = plan[key]
            value = r[key]
            item = value[0] if isinstance(value, list) and value else value
            if kind == 0:
                r[key] = "text where an element belongs"
            elif kind == 1:
                r[key] = {} if not repeats else [{}]
            elif kind == 2 and isinstance(item, dict):
                bad = {**item, "notAnElement": True}
                r[key] = [bad] if repeats else bad
            elif kind == 3:
                r[key] = [item, None] if repeats else [item]
            elif kind == 4 and isinstance(item, dict):
                r[key] = item if repeats else [item]  # one object for a list: the fixable case
            elif kind == 5:
                bad = {"start": rng.choice(BAD_DATES)}
                r[key] = [bad] if repeats else bad
            elif kind == 6 and isinstance(item, dict):
                bad = {**item, "coding": {"system": "http://loinc.org", "code": "85319-2"}}
                r[key] = [bad] if repeats else bad
            elif kind == 7 and isinstance(item, dict):
                bad = {**item, "coding": [{"system": "http://loinc.org", "code": " padded code "}]}
                r[key] = [bad] if repeats else bad
            elif kind == 8 and isinstance(item, dict):
                bad = {k: (7 if isinstance(v, str) else v) for k, v in item.items()}
                r[key] = [bad] if repeats else bad
            elif kind == 9 and isinstance(item, dict):
                bad = {**item, "extension": [{"url": "http://x", "valueString": "a", "valueInteger": 1}]}
                r[key] = [bad] if repeats else bad
            else:
                r.pop(key)
        else:
            kind = rng.randrange(5)
            if kind == 0:
                r["valueQuantity"], r["valueString"] = {"value": 1}, "two values[x]"
            elif kind == 1:
                r["status"] = rng.choice(["final ", 3, None, "not-a-status"])
            elif kind == 2:
                r["unknownElement"] = 1
            elif kind == 3:
                r["effectiveDateTime"] = rng.choice(BAD_DATES)
            else:
                r["subject"] = {"reference": "Patient/p1", "display": ["listed"]}
    return r


def _verdicts(resource: dict[str, Any]) -> tuple[Any, Any]:
    model = validation.MODELS[resource["resourceType"]]
    return validation._verdict(model, resource), validation._verdict(model, resource, _plain)


def test_the_corpus_is_the_shapes_the_service_reads() -> None:
    kinds = {r["resourceType"] for r in CORPUS}
    assert len(CORPUS) >= 400
    assert {"Observation", "Condition", "MedicationRequest", "MedicationAdministration", "Procedure"} <= kinds


def test_same_verdict_as_fhir_resources_on_every_corpus_resource_cold_and_warm() -> None:
    for warm in (False, True):
        if not warm:
            validation.clear_content_cache()
        differ = [r for r in CORPUS if (v := _verdicts(r))[0] != v[1]]
        assert not differ, differ[:3]


def test_same_verdict_and_note_on_3000_mutants_cold_and_warm() -> None:
    rng = random.Random(13)
    outcomes = {"valid": 0, "fixed": 0, "invalid": 0}
    for i in range(3000):
        if i % 500 == 0:
            validation.clear_content_cache()  # cold and warm element caches alike
        mutant = _mutant(rng, rng.choice(CORPUS))
        fast, plain = _verdicts(mutant)
        assert fast == plain, (mutant, fast, plain)
        fixes, _ = fast
        outcomes["invalid" if fixes is None else "fixed" if fixes else "valid"] += 1
    assert min(outcomes.values()) >= 100, outcomes  # the fuzz reaches all three outcomes


def test_an_element_seen_once_is_not_validated_again() -> None:
    validation.clear_content_cache()
    first, second = copy.deepcopy(validation.WARM_UP_RECORDS[0]), copy.deepcopy(validation.WARM_UP_RECORDS[0])
    second["status"] = "amended"
    model = validation.MODELS["Observation"]
    assert validation._verdict(model, first) == (frozenset(), None)
    kept = len(validation._ELEMENTS)
    assert kept >= 5  # code, subject, period, quantity, specimen ...
    code = validation._instance(validation._plan(model)["code"][0], first["code"])
    assert validation._verdict(model, second) == (frozenset(), None)
    assert len(validation._ELEMENTS) == kept  # nothing new: every element came from the cache
    assert validation._instance(validation._plan(model)["code"][0], second["code"]) is code
    validation.clear_content_cache()
    assert len(validation._ELEMENTS) == 0


def test_the_element_cache_is_bounded() -> None:
    validation.clear_content_cache()
    model = validation.MODELS["Observation"]
    base = validation.WARM_UP_RECORDS[0]
    for i in range(validation.ELEMENT_CACHE_SIZE + 500):
        validation._verdict(model, {**base, "valueQuantity": {"value": i, "unit": "%"}})
    assert len(validation._ELEMENTS) == validation.ELEMENT_CACHE_SIZE
    validation.clear_content_cache()


def test_a_contained_resource_is_left_to_fhir_resources() -> None:
    plan = validation._plan(validation.MODELS["MedicationRequest"])
    assert "contained" not in plan and "medicationCodeableConcept" in plan
    assert plan["dosageInstruction"][1] is True and plan["subject"][1] is False
