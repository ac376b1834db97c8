"""Bad numbers and strings are bad input: a 400 (or a 401 for a token) that says what is wrong,
never a 500, never a silently different card."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from cds_service.web.app import create_app

from .conftest import PUBLIC_BASE, TEST_ISS
from .fixtures import builders as b
from .fixtures import patients
from .helpers import hook_request, prefetch_from


@pytest.fixture
def client(settings_factory):
    return create_app(settings_factory()).test_client()


def _tdxd_sign_body(dose_literal: str) -> bytes:
    draft = b.med_request("fam-trastuzumab deruxtecan", "2026-11-25", status="draft", dose=(6.4, "mg/kg"), id="d1")
    body = hook_request("order-sign", prefetch=prefetch_from(patients.bell()), draft_orders=[draft])
    return json.dumps(body).replace('"value": 6.4', f'"value": {dose_literal}').encode()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_at_parse(client, literal):
    resp = client.post("/cds-services/her2-order-sign", data=_tdxd_sign_body(literal), content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "NaN and Infinity are not JSON numbers; send a finite number"}


def test_a_finite_gastric_dose_still_warns(client):
    resp = client.post("/cds-services/her2-order-sign", data=_tdxd_sign_body("6.4"), content_type="application/json")
    cards = {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}
    assert cards["ild-monitoring"]["indicator"] == "warning" and "6.4" in cards["ild-monitoring"]["summary"]


def test_a_non_finite_dose_in_code_is_not_a_dose():
    from cds_service.facts.orders import read_quantity

    order = {"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": float("nan"), "unit": "mg/kg"}}]}]}
    assert read_quantity(order) == (None, None, None)


@pytest.mark.parametrize(
    "field, value",
    [
        ("patientId", "p1\ud800"),
        ("patientId", "../Patient/p2"),
        ("patientId", "x" * 65),
        ("patientId", ""),
        ("userId", "Practitioner/dr1\ud800"),
        ("userId", "dr1"),
    ],
)
def test_ids_are_checked_against_their_grammar(client, field, value):
    body = hook_request("patient-view", prefetch=prefetch_from(patients.bell()))
    body["context"][field] = value
    resp = client.post("/cds-services/her2-patient-view", data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 400
    assert any(p["field"] == f"context.{field}" for p in resp.get_json()["problems"])


@pytest.mark.parametrize("token", ["tökén", "abc def", "a\u2028b", ""])
def test_fhir_token_must_be_a_b64token(client, token):
    body = hook_request(
        "patient-view",
        prefetch=prefetch_from(patients.bell()),
        fhirServer="https://fhir.example.org",
        fhirAuthorization={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "x",
        },
    )
    resp = client.post("/cds-services/her2-patient-view", json=body)
    assert resp.status_code == 400
    assert any(p["field"] == "fhirAuthorization.access_token" for p in resp.get_json()["problems"])


@pytest.fixture
def secured(settings_factory, jwks):
    cfg = {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]}
    return create_app(settings_factory(auth=cfg, public_base_url=PUBLIC_BASE)).test_client()


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "EXP", "iat": "NOW"},  # strings of digits: PyJWT accepts them, arithmetic would not
        {"iat": "NOW"},
        {"exp": True},
    ],
)
def test_token_claims_of_the_wrong_type_are_a_401(secured, signing_key, claims):
    now = int(time.time())
    payload = {
        "iss": TEST_ISS,
        "aud": f"{PUBLIC_BASE}/cds-services",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    for k, v in claims.items():
        payload[k] = {"EXP": str(now + 60), "NOW": str(now)}.get(v, v) if isinstance(v, str) else v
    token = jwt.encode(payload, signing_key, algorithm="ES384", headers={"kid": "k1"})
    assert secured.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_auth_failure_labels_come_from_a_fixed_set(secured):
    for i in range(40):
        header = jwt.utils.base64url_encode(f'{{"alg":"XX{i}","typ":"JWT"}}'.encode()).decode()
        body = jwt.utils.base64url_encode(b'{"iss":"x"}').decode()
        resp = secured.get("/cds-services", headers={"Authorization": f"Bearer {header}.{body}.c2ln"})
        assert resp.status_code == 401
    metrics = secured.get("/metrics").get_data(as_text=True)
    labels = {
        line.split('reason="')[1].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith("her2cds_auth_failures_total{")
    }
    assert labels == {"algorithm not allowed"}
