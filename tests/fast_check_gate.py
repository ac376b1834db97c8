"""The gate of the fast check (cds_service/fhir/fast_check.py): on a corpus of resources and their mutants, the
check never accepts what fhir.resources refuses or repairs. tests/test_fast_check.py runs it at a size CI affords;
large, and on published records, by hand:

    python -m tests.fast_check_gate --mutants 500000 ../shared/realworld ../shared/realworld2
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from pathlib import Path
from typing import Any

from cds_service.fhir.validation import FAST, MODELS, VALID, WARM_UP_RECORDS, _verdict
from tests.fixtures import patients
from tests.fixtures import realworld as rw
from tests.fixtures import realworld2 as rw2
from tests.realworld_facts import EXAMPLES, _resources
from tests.sweep_export import lab

# values a mutation puts in place of another: wrong types, empty things, dates that are not calendar dates, times
# without a zone, leap seconds, spaces where codes cannot have them, numbers out of range, unknown shapes
ODD_VALUES: list[Any] = [
    None, "", " ", "\u00a0", "x ", " x", "x  y", "x\ny", "\t", [], {}, [None], [[]], [{}], ["x"], [1], 0, -1, 1.5,
    2**31, -(2**31) - 1, 2**63, True, False, "true", "1", "2024", "2024-02", "2024-02-29", "2023-02-29", "2024-02-30",
    "2024-04-31", "2024-13-01", "2024-00-10", "2024-1-1", "0000-01-01", "2024-01-01T10:00:00",
    "2024-01-01T10:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T10:00:60Z", "2024-01-01T10:00:00+15:00",
    "2024-01-01T10:00Z", "10:00:00", "25:00:00", "urn:oid:1.2.3", "urn:oid:9.9", "http://x y", "Patient/1",
    "#x", "ÿ" * 3, "x" * 70, {"coding": "x"}, {"coding": [None]}, {"text": ""}, {"reference": 1}, {"value": "1"},
    {"extension": []}, {"url": "http://x"}, {"foo": 1}, {"resourceType": "Patient", "id": "x"},
]  # fmt: skip
ODD_KEYS = ["foo", "_status", "_code", "valueString", "valueBoolean", "effectivePeriod", "fhir_comments", "Status",
            "resourceType", "extension", "modifierExtension", "contained", "id", "text", "meta"]  # fmt: skip


def corpus() -> list[dict[str, Any]]:
    """Every resource of a validated type that the suite writes or ships: examples, fixture charts, the fixtures
    modelled on published records, the warm-up records, generated labs."""
    found: list[dict[str, Any]] = [copy.deepcopy(r) for r in WARM_UP_RECORDS]
    for path in sorted(EXAMPLES.glob("*.json")):
        request = json.loads(path.read_text())
        found += _resources({"entry": _entries(request.get("prefetch"))})
        found += _resources({"entry": _entries(request.get("context", {}).get("draftOrders"))})
    for module in (patients, rw, rw2):
        for name, fn in sorted(vars(module).items()):
            if callable(fn) and getattr(fn, "__module__", "") == module.__name__ and not name.startswith("_"):
                try:
                    made = fn()
                except TypeError:
                    continue  # needs arguments
                found += made if isinstance(made, list) else [made] if isinstance(made, dict) else []
    found += [lab("g", n) for n in range(8)]
    return [r for r in found if isinstance(r, dict) and r.get("resourceType") in MODELS]


def _entries(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    out = []
    for v in value.values() if value.get("resourceType") != "Bundle" else [value]:
        if isinstance(v, dict) and v.get("resourceType") == "Bundle":
            out += [e for e in v.get("entry", []) if isinstance(e, dict)]
        elif isinstance(v, dict) and "resourceType" in v:
            out.append({"resource": v})
    return out


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the resource (not the root)."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        out.append((*here, key))
        out += _paths(child, (*here, key))
    return out


def _containers(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here] if isinstance(value, dict) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        out += _containers(child, (*here, key))
    return out


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def mutant(resource: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    """The resource with one to three random changes: a value replaced, a key removed or added, a value wrapped in a
    list or unwrapped from one, a choice doubled."""
    m = copy.deepcopy(resource)
    for _ in range(rnd.randint(1, 3)):
        paths = _paths(m)
        op = rnd.randrange(6)
        if op == 0 and paths:
            path = rnd.choice(paths)
            _at(m, path[:-1])[path[-1]] = copy.deepcopy(rnd.choice(ODD_VALUES))
        elif op == 1 and paths:
            path = rnd.choice(paths)
            parent = _at(m, path[:-1])
            if isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent.pop(path[-1])
        elif op == 2:
            target = _at(m, rnd.choice(_containers(m)))
            target[rnd.choice(ODD_KEYS)] = copy.deepcopy(rnd.choice(ODD_VALUES[10:]))
        elif op == 3 and paths:
            path = rnd.choice(paths)
            parent = _at(m, path[:-1])
            value = parent[path[-1]]
            parent[path[-1]] = value[0] if isinstance(value, list) and value else [value]
        elif op == 4:
            target = _at(m, rnd.choice(_containers(m)))
            choices = [k for k in target if k.startswith(("value", "effective", "onset", "medication", "performed"))]
            if choices:
                target["valueString" if choices[0] != "valueString" else "valueBoolean"] = "x"
        elif op == 5 and paths:
            path = rnd.choice(paths)
            parent = _at(m, path[:-1])
            if isinstance(parent, dict):
                parent[str(path[-1]).upper()] = parent.pop(path[-1])
    return m


def wrongly_accepted(
    resources: list[dict[str, Any]], mutants: int, seed: int = 2026
) -> tuple[list[str], dict[str, int]]:
    """Resources (and mutants) the fast check accepts that fhir.resources refuses or would repair, and counts."""
    rnd = random.Random(seed)
    wrong: list[str] = []
    tally = {"resources": 0, "accepted": 0, "valid as they stand": 0, "mutants": 0, "mutants accepted": 0}
    for r in resources:
        model = MODELS[r["resourceType"]]
        ok = _verdict(model, r) == VALID
        tally["resources"] += 1
        tally["valid as they stand"] += ok
        if FAST.accepts(r):
            tally["accepted"] += 1
            if not ok:
                wrong.append(json.dumps(r)[:600])
    for i in range(mutants):
        m = mutant(resources[i % len(resources)], rnd)
        model = MODELS.get(m.get("resourceType")) if isinstance(m.get("resourceType"), str) else None
        if model is None:
            continue
        tally["mutants"] += 1
        if FAST.accepts(m):
            tally["mutants accepted"] += 1
            if _verdict(model, m) != VALID:
                wrong.append(json.dumps(m)[:600])
    return wrong, tally


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--mutants", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    resources = corpus()
    for d in args.dirs:
        for path in sorted(d.glob("*.json")):
            resources += [r for r in _resources(json.loads(path.read_text())) if r.get("resourceType") in MODELS]
    wrong, tally = wrongly_accepted(resources, args.mutants, args.seed)
    print(json.dumps(tally))
    for w in wrong[:20]:
        print("accepted, refused by fhir.resources:", w)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
