"""The HTTP contract through Flask's test client: discovery, invocation, errors, CORS, feedback."""

from __future__ import annotations

import json
import uuid

import pytest

from cds_service import contracts
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .fixtures import patients
from .helpers import assert_cds_response, empty_prefetch, hook_request, prefetch_from

SANDBOX = "https://sandbox.cds-hooks.org"


def test_discovery_lists_three_services_with_prefetch(client):
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    services = {s["id"]: s for s in resp.get_json()["services"]}
    assert {k: v["hook"] for k, v in services.items()} == {
        "her2-order-select": "order-select",
        "her2-order-sign": "order-sign",
        "her2-patient-view": "patient-view",
    }
    for svc in services.values():
        assert svc["title"] and svc["description"]
        prefetch = svc["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        for rtype in ("MedicationStatement", "MedicationRequest", "MedicationAdministration", "Condition", "Procedure"):
            assert any(t.startswith(f"{rtype}?patient={{{{context.patientId}}}}") for t in prefetch.values()), rtype
        assert "85319-2" in prefetch["her2Observations"]
        assert "85337-4" in prefetch["receptorObservations"]


def test_discovery_is_the_data_under_hooks_with_value_set_codes_filled_in(client):
    from cds_service.fhir.terminology import load_terminology
    from cds_service.gather.templates import with_codes
    from cds_service.rules.ruleset import with_source_attributes

    ts = load_terminology()
    published = client.get("/cds-services").get_json()["services"]
    assert published == list(with_source_attributes(with_codes(contracts.services(), ts), ts).values())
    assert [s["id"] for s in published] == list(contracts.services())
    assert "{{codes" not in json.dumps(published)


@pytest.mark.parametrize("hook", ["order-select", "order-sign", "patient-view"])
def test_invocation_with_empty_prefetch_answers_empty_cards(client, hook):
    service = {
        "order-select": "her2-order-select",
        "order-sign": "her2-order-sign",
        "patient-view": "her2-patient-view",
    }[hook]
    resp = client.post(f"/cds-services/{service}", json=hook_request(hook, prefetch=empty_prefetch()))
    assert resp.status_code == 200
    assert assert_cds_response(resp.get_json()) == []  # nothing on record: nothing to say (and no 412)


def test_unknown_service_is_404(client):
    resp = client.post("/cds-services/nope", json=hook_request("patient-view"))
    assert resp.status_code == 404
    assert "nope" in resp.get_json()["error"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b"\xff\xfe\x00", "JSON"),
    ],
)
def test_malformed_body_is_400_with_message(client, raw, expected):
    resp = client.post("/cds-services/her2-patient-view", data=raw, content_type="application/json")
    assert resp.status_code == 400
    assert expected.lower() in resp.get_json()["error"].lower()


def test_wrong_content_type_is_400(client):
    resp = client.post(
        "/cds-services/her2-patient-view", data="hook=patient-view", content_type="application/x-www-form-urlencoded"
    )
    assert resp.status_code == 400
    assert "Content-Type" in resp.get_json()["error"]


def _problems(resp):
    assert resp.status_code == 400, resp.get_data(as_text=True)
    return {p["field"]: p["problem"] for p in resp.get_json()["problems"]}


def test_missing_field_is_named(client):
    body = hook_request("patient-view", prefetch=empty_prefetch())
    del body["context"]["patientId"]
    problems = _problems(client.post("/cds-services/her2-patient-view", json=body))
    assert "context.patientId" in problems and "required" in problems["context.patientId"]


def test_wrong_type_is_named(client):
    body = hook_request("order-select", prefetch=empty_prefetch())
    body["context"]["selections"] = "MedicationRequest/1"
    problems = _problems(client.post("/cds-services/her2-order-select", json=body))
    assert problems["context.selections"] == "must be of type array"


def test_hook_not_matching_service_is_400(client):
    body = hook_request("patient-view", prefetch=empty_prefetch())
    problems = _problems(client.post("/cds-services/her2-order-select", json=body))
    assert "order-select" in problems["hook"]


def test_fhir_authorization_without_fhir_server_is_400(client):
    body = hook_request(
        "patient-view",
        prefetch=empty_prefetch(),
        fhirAuthorization={
            "access_token": "secret-token-123",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds",
        },
    )
    resp = client.post("/cds-services/her2-patient-view", json=body)
    problems = _problems(resp)
    assert "fhirServer" in problems
    assert "secret-token-123" not in resp.get_data(as_text=True)


def test_prefetch_value_of_wrong_type_is_400(client):
    body = hook_request("patient-view", prefetch={**empty_prefetch(), "conditions": "none"})
    problems = _problems(client.post("/cds-services/her2-patient-view", json=body))
    assert "prefetch.conditions" in problems


def test_unreadable_prefetched_bundle_is_skipped_and_named_in_the_card(client):
    """A prefetched Bundle whose entry is not a list (found by the fuzz test) is not a 500: the key is
    read as unavailable and the card says so."""
    prefetch = prefetch_from(patients.bell())
    prefetch["medicationRequests"] = {"resourceType": "Bundle", "type": "searchset", "entry": 1}
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Enhertu"},
    }
    body = hook_request("order-select", prefetch=prefetch, draft_orders=[draft])
    resp = client.post("/cds-services/her2-order-select", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = assert_cds_response(resp.get_json())
    assert cards and all(
        "medicationRequests (the prefetched value could not be read (Bundle.entry is not a list))" in card["detail"]
        for card in cards
    )


def test_missing_prefetch_without_fhir_server_is_412_naming_keys(client):
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    prefetch["procedures"] = {"resourceType": "OperationOutcome", "issue": []}
    resp = client.post("/cds-services/her2-patient-view", json=hook_request("patient-view", prefetch=prefetch))
    assert resp.status_code == 412
    body = resp.get_json()
    assert body["missing"] == ["conditions", "procedures"]
    assert "fhirServer" in body["reason"]


def test_fhir_server_not_allowed_is_412(client):
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    body = hook_request(
        "patient-view",
        prefetch=prefetch,
        fhirServer="https://evil.example/fhir",
        fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 60, "scope": "s", "subject": "c"},
    )
    resp = client.post("/cds-services/her2-patient-view", json=body)
    assert resp.status_code == 412
    assert "allow-list" in resp.get_json()["reason"]


def test_sandbox_shaped_order_select_is_answered(client):
    """Captured shape of the public sandbox: no Bundle.type, a draft with no medication yet,
    category as an object (not an array), prefetch Bundles without type."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "category": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "outpatient"}
            ]
        },
        "subject": {"reference": "Patient/smart-1288992"},
        "authoredOn": "2026-11-25",
    }
    prefetch = {k: {"resourceType": "Bundle", "entry": []} for k in empty_prefetch()}
    prefetch["patient"] = {
        "resourceType": "Patient",
        "id": "smart-1288992",
        "gender": "female",
        "birthDate": "1968-04-12",
    }
    body = {
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://launch.smarthealthit.org/v/r4/fhir",
        "hook": "order-select",
        "context": {
            "userId": "Practitioner/COREPRACTITIONER1",
            "patientId": "smart-1288992",
            "selections": ["MedicationRequest/request-123"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
        },
        "prefetch": prefetch,
    }
    resp = client.post("/cds-services/her2-order-select", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert_cds_response(resp.get_json())


def test_cors_preflight_without_auth(settings_factory):
    app = create_app(settings_factory(auth={"required": True}, cors={"allowed_origins": [SANDBOX]}))
    c = app.test_client()
    for path in ("/cds-services", "/cds-services/her2-order-select", "/cds-services/her2-order-select/feedback"):
        resp = c.options(
            path,
            headers={
                "Origin": SANDBOX,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert resp.status_code in (200, 204)
        assert resp.headers["Access-Control-Allow-Origin"] == SANDBOX
        allowed = resp.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]


def test_cors_header_on_errors_and_only_for_allowed_origins(settings_factory):
    app = create_app(settings_factory(auth={"required": True}, cors={"allowed_origins": [SANDBOX]}))
    c = app.test_client()
    denied = c.get("/cds-services", headers={"Origin": SANDBOX})
    assert denied.status_code == 401
    assert denied.headers["Access-Control-Allow-Origin"] == SANDBOX
    bad = c.post(
        "/cds-services/her2-patient-view",
        data="x",
        content_type="application/json",
        headers={"Origin": "https://other.example"},
    )
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_no_client_trusted_by_default_refuses(settings_factory):
    from cds_service.config import load

    settings = load(None, overrides={"storage": settings_factory().data["storage"]})
    assert settings.auth.required is True and settings.auth.issuers == ()
    resp = create_app(settings).test_client().get("/cds-services")
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "unauthorized"}


def _feedback(card: str, **extra):
    entry = {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-25T10:00:00Z",
        "overrideReason": {
            "reason": {
                "system": "http://her2-cds.org/fhir/CodeSystem/override-reason",
                "code": "patient-declined",
                "display": "Patient declined",
            },
            "userComment": "discussed in clinic",
        },
    }
    entry.update(extra)
    return {"feedback": [entry]}


def test_feedback_is_stored_once(settings_factory):
    app = create_app(settings_factory())
    c = app.test_client()
    card = str(uuid.uuid4())
    body = _feedback(card)
    accepted = {
        "card": card,
        "outcome": "accepted",
        "outcomeTimestamp": "2026-11-25T10:01:00Z",
        "acceptedSuggestions": [{"id": "s-1"}],
    }
    body["feedback"].append(accepted)
    for _ in range(3):
        resp = c.post("/cds-services/her2-order-select/feedback", json=body)
        assert resp.status_code == 200 and resp.get_json() == {}
    rows = app_state(app).store.entries("her2-order-select")
    assert len(rows) == 2
    over = next(r for r in rows if r["outcome"] == "overridden")
    assert over["card_uuid"] == card and over["override_reason_code"] == "patient-declined"
    assert over["override_comment"] == "discussed in clinic"
    acc = next(r for r in rows if r["outcome"] == "accepted")
    assert json.loads(acc["accepted_suggestions"]) == ["s-1"]


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda f: f["feedback"][0].pop("card"), "feedback[0].card"),
        (lambda f: f["feedback"][0].update(outcome="ignored"), "feedback[0].outcome"),
        (lambda f: f["feedback"][0].update(outcome="accepted"), "feedback[0].acceptedSuggestions"),
        (lambda f: f["feedback"][0].update(outcomeTimestamp="yesterday"), "feedback[0].outcomeTimestamp"),
    ],
)
def test_invalid_feedback_is_400(client, mutate, field):
    body = _feedback("c1")
    mutate(body)
    problems = _problems(client.post("/cds-services/her2-order-select/feedback", json=body))
    assert field in problems


def test_feedback_for_unknown_service_is_404(client):
    assert client.post("/cds-services/nope/feedback", json=_feedback("c")).status_code == 404


def test_body_over_limit_is_413(settings_factory):
    c = create_app(settings_factory(limits={"max_body_bytes": 2048})).test_client()
    resp = c.post("/cds-services/her2-patient-view", data=b"{" + b" " * 5000 + b"}", content_type="application/json")
    assert resp.status_code == 413
    assert "2048" in resp.get_json()["error"]


def test_observation_prefetch_codes_are_the_value_sets_codes(settings_factory, tmp_path):
    """Discovery publishes, for each Observation key, exactly the codes of the value sets it feeds, built at
    start: a site's local code (extra value set) is asked for, and 32996-1 (serum HER2) never is."""
    local = tmp_path / "local-er.json"
    local.write_text(
        json.dumps(
            {
                "resourceType": "ValueSet",
                "id": "er-local",
                "status": "active",
                "url": "http://her2-cds.org/fhir/ValueSet/er",
                "compose": {"include": [{"system": "urn:oid:1.2.3", "concept": [{"code": "ERX"}]}]},
            }
        )
    )
    client = create_app(settings_factory(value_sets={"extra_files": [str(local)]})).test_client()
    published = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    from cds_service.fhir.terminology import load_terminology

    ts = load_terminology([str(local)])
    feeds = {
        "her2Observations": (
            "her2-ihc",
            "her2-ish",
            "her2-ish-ratio",
            "her2-ish-copy-number",
            "her2-cep17-copy-number",
            "her2-interpretation",
            "erbb2-genomic",
        ),
        "receptorObservations": ("er", "pr", "hr-combined"),
        "diseaseStatus": ("disease-status", "staging"),
        "renalFunction": ("renal-function", "body-weight"),
    }
    for service in published.values():
        for key, sets in feeds.items():
            query = service["prefetch"][key]
            assert "{{codes" not in query
            asked = set(query.split("code=")[1].split("&")[0].split(","))
            shipped = {f"{system}|{code}" for vs in sets for system, code in ts.sets[vs].codes}
            assert asked == shipped, (service["id"], key, asked ^ shipped)
        assert "urn:oid:1.2.3|ERX" in service["prefetch"]["receptorObservations"]
        assert "http://loinc.org|49683-6" in service["prefetch"]["her2Observations"]
        assert "32996-1" not in service["prefetch"]["her2Observations"]
        assert service["prefetch"]["pathology"].startswith("DiagnosticReport?patient={{context.patientId}}&category=")


def test_discovery_names_the_hook_version_each_service_implements(client):
    """CDS Hooks discovery's hookVersion: the version of the published hook definition (CDS Hooks Library:
    patient-view, order-select and order-sign are each at hookVersion 1.0)."""
    services = client.get("/cds-services").get_json()["services"]
    assert {s["hook"]: s["hookVersion"] for s in services} == {
        "order-select": "1.0",
        "order-sign": "1.0",
        "patient-view": "1.0",
    }
