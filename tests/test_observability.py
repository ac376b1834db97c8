"""Structured logs without tokens or patient identifiers, Prometheus metrics, health endpoints."""

from __future__ import annotations

import json
import logging

from cds_service.logs import formatter
from cds_service.web.app import create_app

from .conftest import PUBLIC_BASE, TEST_ISS
from .fixtures import patients
from .helpers import for_patient, hook_request, prefetch_from

PATIENT_ID = "MRN-7731-SECRET-PATIENT"
FHIR_TOKEN = "fhir-token-do-not-log-9b1c"


def test_logs_hold_no_tokens_or_patient_identifiers(settings_factory, make_token, jwks, fhir_server, caplog):
    caplog.set_level(logging.DEBUG)
    fhir_server.reset(for_patient(patients.bell(), PATIENT_ID), status=500)
    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
            public_base_url=PUBLIC_BASE,
            fhir={"allowed_servers": [fhir_server.base]},
        )
    )
    c = app.test_client()
    url = f"{PUBLIC_BASE}/cds-services/her2-patient-view"
    jwt_token = make_token(url)
    prefetch = prefetch_from(for_patient(patients.bell(), PATIENT_ID))
    del prefetch["procedures"]
    body = hook_request(
        "patient-view",
        PATIENT_ID,
        prefetch=prefetch,
        fhirServer=fhir_server.base,
        fhirAuthorization={
            "access_token": FHIR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 60,
            "scope": "patient/*.read",
            "subject": "cds",
            "patient": PATIENT_ID,
        },
    )
    body["context"]["userId"] = "Practitioner/DR-SECRET-USER"
    ok = c.post("/cds-services/her2-patient-view", json=body, headers={"Authorization": f"Bearer {jwt_token}"})
    replay = c.post("/cds-services/her2-patient-view", json=body, headers={"Authorization": f"Bearer {jwt_token}"})
    bad = c.post(
        "/cds-services/her2-patient-view",
        data="{",
        content_type="application/json",
        headers={"Authorization": f"Bearer {make_token(url)}"},
    )
    assert (ok.status_code, replay.status_code, bad.status_code) == (200, 401, 400)
    text = caplog.text
    for secret in (PATIENT_ID, FHIR_TOKEN, jwt_token, "DR-SECRET-USER", "Observation/", "MedicationStatement/"):
        assert secret not in text
    audit = [json.loads(formatter().format(r)) for r in caplog.records if r.name == "her2_cds.audit"]
    first = audit[0]
    assert first["status"] == 200 and first["service"] == "her2-patient-view" and first["latency_ms"] > 0
    assert first["hookInstance"] == body["hookInstance"] and first["cards"] == ["tdxd-consideration"]
    assert first["fallback_calls"] == 1 and first["unavailable"] == ["procedures"]
    assert audit[1]["auth_failure"] == "replayed jti" and audit[1]["status"] == 401


def test_metrics_in_prometheus_format(settings_factory, make_token, jwks):
    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]}, public_base_url=PUBLIC_BASE
        )
    )
    c = app.test_client()
    token = make_token(f"{PUBLIC_BASE}/cds-services/her2-patient-view")
    body = hook_request("patient-view", prefetch=prefetch_from(patients.bell()))
    c.post("/cds-services/her2-patient-view", json=body, headers={"Authorization": f"Bearer {token}"})
    c.get("/cds-services", headers={"Authorization": "Bearer nonsense"})
    resp = c.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    route = 'route="/cds-services/<service_id>",service="her2-patient-view",status="200"'
    assert f"her2cds_requests_total{{{route}}} 1.0" in text
    assert 'her2cds_cards_total{service="her2-patient-view",topic="tdxd-consideration"} 1.0' in text
    assert 'her2cds_auth_failures_total{reason="malformed token"} 1.0' in text
    assert "her2cds_request_seconds_bucket" in text and "her2cds_fhir_fallback_calls_total" in text


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"config": True, "database": True, "cache": True}


def test_what_a_sandbox_shows_as_no_recommendations_is_named_in_the_log(settings_factory, caplog):
    """A refused CORS origin, a 401 and a 412 all look like an empty card list in a browser: the log says which."""
    app = create_app(
        settings_factory(cors={"allowed_origins": ["https://sandbox.example"]}, auth={"required": True, "issuers": []})
    ).test_client()
    caplog.set_level(logging.INFO, logger="her2_cds.audit")
    app.options("/cds-services", headers={"Origin": "http://localhost:3000"})
    app.get("/cds-services", headers={"Origin": "http://localhost:3000"})
    open_app = create_app(settings_factory(auth={"required": False})).test_client()
    open_app.post("/cds-services/her2-patient-view", json=hook_request("patient-view"))  # no prefetch, no server
    lines = [json.loads(formatter().format(r)) for r in caplog.records if r.name == "her2_cds.audit"]
    preflight, discovery, invocation = lines
    assert preflight["method"] == "OPTIONS"
    assert preflight["cors_refused"] == "origin http://localhost:3000 is not in cors.allowed_origins"
    assert discovery["status"] == 401 and discovery["auth_failure"] == "missing Authorization header"
    assert invocation["status"] == 412 and invocation["why"] == "no fhirServer in the request"
    assert "patient" in invocation["missing_prefetch"]
