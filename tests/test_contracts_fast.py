"""The compiled validator (jsonschema-rs) decides only "valid": it must never accept a body that jsonschema, the
reference, refuses. Differential fuzzing over mutated hook requests, contexts, feedback and responses."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service import contracts
from cds_service.paths import hooks_dir

EXAMPLES = [json.loads(p.read_text("utf-8")) for p in sorted((hooks_dir() / "examples").glob("*.json"))]
FEEDBACK = {
    "feedback": [
        {
            "card": "5e9f7a0c-3b4d-4a51-9d0b-6f2a1c3e8b7d",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"code": "not-metastatic", "system": "http://her2-cds.org/fhir/CodeSystem/override-reason"},
                "userComment": "c",
            },
            "outcomeTimestamp": "2026-12-04T10:00:00Z",
        }
    ]
}
RESPONSE = {
    "cards": [
        {
            "uuid": "5e9f7a0c-3b4d-4a51-9d0b-6f2a1c3e8b7d",
            "summary": "s",
            "indicator": "info",
            "detail": "d",
            "source": {"label": "her2-cds", "topic": {"system": "http://x", "code": "c", "display": "d"}},
            "links": [{"label": "l", "url": "https://x", "type": "absolute"}],
        }
    ]
}
# values that tell validators apart: edge strings (newline before the end, non-ASCII digits, surrogate-free
# astral characters), numbers at type borders, and the empty containers
EDGE = st.sampled_from(
    [
        "",
        "a\n",
        "Bearer\n",
        "bearer",
        "https://x\n",
        "١٢٣",
        "2026-12-04T10:00:00Z\n",
        "𝟘𝟙",
        "x" * 65,
        "x" * 201,
        0,
        -1,
        1.0,
        1.5,
        2**53,
        2**70,
        "p1\ud800",
        -0.0,
        True,
        None,
        [],
        {},
        {"resourceType": "Bundle"},
        {"resourceType": 1},
    ]
)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text())
VALUES = st.one_of(
    EDGE,
    st.recursive(
        LEAF,
        lambda k: st.one_of(st.lists(k, max_size=3), st.dictionaries(st.text(max_size=8), k, max_size=3)),
        max_leaves=8,
    ),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[f"{last}-x"] = value
    else:
        parent[last] = value
    return doc


def _agree(name: str, instance: Any) -> None:
    try:
        fast = contracts.fast_validator(name).is_valid(instance)
    except (UnicodeError, ValueError, TypeError, OverflowError):  # contracts then asks the reference
        fast = False
    reference = not list(contracts.validator(name).iter_errors(instance))
    assert not (fast and not reference), f"{name}: the compiled validator accepted what jsonschema refuses"


@pytest.mark.parametrize("name", contracts.SCHEMAS)
def test_fast_and_reference_agree_on_the_shipped_documents(name):
    docs = {"request": EXAMPLES, "feedback": [FEEDBACK], "response": [RESPONSE]}.get(name) or [
        e["context"] for e in EXAMPLES if e["hook"] == name.split(".")[0]
    ]
    assert docs
    for doc in docs:
        assert contracts.fast_validator(name).is_valid(doc)
        assert not list(contracts.validator(name).iter_errors(doc))


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), how=st.sampled_from(["replace", "delete", "add"]), value=VALUES)
def test_fast_never_accepts_what_the_reference_refuses(data, how, value):
    name = data.draw(st.sampled_from(contracts.SCHEMAS))
    if name == "request":
        doc = data.draw(st.sampled_from(EXAMPLES))
    elif name == "feedback":
        doc = FEEDBACK
    elif name == "response":
        doc = RESPONSE
    else:
        doc = data.draw(st.sampled_from([e["context"] for e in EXAMPLES if e["hook"] == name.split(".")[0]]))
    path = data.draw(st.sampled_from(_paths(doc)))
    _agree(name, _mutate(doc, path, how, value))


def test_what_rust_cannot_take_goes_to_the_reference():
    """A lone surrogate (the standard JSON parser lets one through) is worded by the reference, not a 500."""
    body = copy.deepcopy(EXAMPLES[0])
    body["context"]["patientId"] = "p1\ud800"
    problems = contracts.check_request(contracts.services()[_service_of(body)], body)
    assert [p.field for p in problems] == ["context.patientId"]


def _service_of(body: dict[str, Any]) -> str:
    return next(sid for sid, svc in contracts.services().items() if svc["hook"] == body["hook"])


def test_a_refused_body_still_gets_the_reference_wording():
    """The fast path only says "valid"; problems are still worded by jsonschema (field and problem)."""
    body = copy.deepcopy(EXAMPLES[0])
    body["fhirAuthorization"] = {"access_token": "a b", "token_type": "Bearer"}
    problems = contracts.check_request(contracts.services()[_service_of(body)], body)
    fields = {p.field for p in problems}
    assert {"fhirAuthorization.access_token", "fhirAuthorization.expires_in"} <= fields
    assert all("a b" not in p.problem for p in problems)


def test_schemas_are_never_fetched():
    """A $ref to a schema that is not shipped fails when the validator is built, without a network call."""
    with pytest.raises(Exception, match="never fetched|Unresolvable|resolv"):
        import jsonschema_rs

        jsonschema_rs.Draft202012Validator(
            {"$ref": "https://example.invalid/other.schema.json"}, retriever=contracts.refuse_retrieval
        ).is_valid({})
