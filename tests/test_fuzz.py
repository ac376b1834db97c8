"""Hostile input: thousands of generated requests (valid envelopes with mutated contents, and raw
garbage) must never produce a 5xx, must always get a well-formed JSON body, and must never make
card derivation fail."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.web.app import create_app

from .fixtures import patients
from .helpers import PREFETCH_KEYS, hook_request, prefetch_from

SURROGATE_TEXT = st.lists(  # lone surrogates (JSON writes them as \udXXX escapes; st.characters never makes them)
    st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=8
).map("".join)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    SURROGATE_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAF,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.one_of(st.text(max_size=12), SURROGATE_TEXT), kids, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "code",
    "valueCodeableConcept",
    "valueString",
    "valueInteger",
    "valueQuantity",
    "component",
    "status",
    "effectiveDateTime",
    "effectivePeriod",
    "specimen",
    "bodySite",
    "subject",
    "medicationCodeableConcept",
    "medicationReference",
    "statusReason",
    "reasonCode",
    "dosageInstruction",
    "onsetDateTime",
    "stage",
    "verificationStatus",
    "interpretation",
    "note",
    "category",
    "entry",
    "link",
    "derivedFrom",
    "contained",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The service without auth; with an operator token, so that the explain route (a whole parse) exists."""
    import hashlib

    from cds_service.config import load

    db = tmp_path_factory.mktemp("fz") / "f.db"
    app = create_app(
        load(
            None,
            overrides={
                "auth": {"required": False},
                "storage": {"database_url": f"sqlite:///{db}"},
                "limits": {"max_body_bytes": 200000},
                "operator": {"explain_token_sha256": hashlib.sha256(b"fuzz-operator").hexdigest()},
            },
        )
    )
    return app.test_client()


BASE = prefetch_from(patients.bell())


def _check(resp, caplog):
    assert resp.status_code < 500, resp.get_data(as_text=True)
    body = json.loads(resp.get_data(as_text=True))
    assert isinstance(body, dict)
    if resp.status_code == 200:
        assert isinstance(body["cards"], list)
    assert "derivation failed" not in caplog.text and " failed: " not in caplog.text
    if resp.status_code == 200:  # no topic fell back to "could not evaluate"
        assert not any("could not evaluate" in c["summary"] for c in body["cards"])


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(PREFETCH_KEYS),
    index=st.integers(0, 30),
    field=st.sampled_from(FIELDS),
    value=JSON_VALUES,
    hook=st.sampled_from(["order-select", "order-sign", "patient-view"]),
    draft_field=st.sampled_from(FIELDS),
    draft_value=JSON_VALUES,
)
def test_mutated_contents_never_5xx(client, caplog, key, index, field, value, hook, draft_field, draft_value):
    prefetch = json.loads(json.dumps(BASE))
    entries = (prefetch[key] or {}).get("entry") or []
    if entries:
        entries[index % len(entries)]["resource"][field] = value
    elif isinstance(prefetch[key], dict):
        prefetch[key][field] = value
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Enhertu"},
        draft_field: draft_value,
    }
    body = hook_request(hook, prefetch=prefetch, draft_orders=[draft])
    service = {
        "order-select": "her2-order-select",
        "order-sign": "her2-order-sign",
        "patient-view": "her2-patient-view",
    }[hook]
    _check(client.post(f"/cds-services/{service}", json=body), caplog)


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        [
            "/cds-services/her2-order-select",
            "/cds-services/her2-patient-view",
            "/cds-services/her2-order-sign/feedback",
            "/cds-services/x",
        ]
    ),
    raw=st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                ["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization", "feedback"]
            ),
            JSON_VALUES,
            max_size=6,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    ctype=st.sampled_from(["application/json", "text/plain", "application/fhir+json", ""]),
)
def test_raw_garbage_never_5xx(client, caplog, path, raw, ctype):
    _check(client.post(path, data=raw, content_type=ctype or None), caplog)


SMALL_BODY = hook_request("patient-view", prefetch=prefetch_from(patients.bell()[:6]))


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    overrides=st.dictionaries(
        st.sampled_from(["hook", "hookInstance", "context", "prefetch", "fhirServer", "fhirAuthorization", "x"]),
        st.one_of(SURROGATE_TEXT, JSON_VALUES),
        max_size=3,
    ),
    dropped=st.sets(st.sampled_from(["hook", "hookInstance", "context", "prefetch"]), max_size=2),
    spacing=st.sampled_from([None, 1]),
)
def test_a_split_body_is_refused_as_a_whole_parse_refuses_it(client, overrides, dropped, spacing):
    """The hook route splits the body (the prefetch kept as bytes); the operator's explain route parses it whole.
    On a valid envelope with members replaced or dropped, they answer with the same status, and a refusal in the
    same words (lone surrogates included)."""
    members = {k: v for k, v in {**SMALL_BODY, **overrides}.items() if k not in dropped}
    raw = json.dumps(members, indent=spacing).encode()  # ensure_ascii: a lone surrogate travels as \udXXX
    split = client.post("/cds-services/her2-patient-view", data=raw, content_type="application/json")
    whole = client.post(
        "/cds-services/her2-patient-view/explain",
        data=raw,
        content_type="application/json",
        headers={"X-HER2-CDS-Operator": "fuzz-operator"},
    )
    assert split.status_code < 500 and split.status_code == whole.status_code
    if split.status_code != 200:
        assert split.get_json() == whole.get_json()
