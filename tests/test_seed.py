"""`her2-cds seed` loads the example patients into a real FHIR server process; each example, sent with no
prefetch, then gets the same cards through the fallback as with its prefetch."""

from __future__ import annotations

import json

import pytest

from cds_service.cli import main
from cds_service.paths import hooks_dir
from cds_service.seed import example_resources
from cds_service.web.app import create_app

EXAMPLES = sorted((hooks_dir() / "examples").glob("*.json"))


def _cards(client, body):
    service = {
        "patient-view": "her2-patient-view",
        "order-select": "her2-order-select",
        "order-sign": "her2-order-sign",
    }[body["hook"]]
    resp = client.post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.get_json()
    return [(c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in resp.get_json()["cards"]]


def test_every_example_patient_has_its_own_id_and_a_name():
    patients = [r for r in example_resources() if r["resourceType"] == "Patient"]
    assert len(patients) == len({p["id"] for p in patients}) == 7
    assert all(p["name"][0]["given"] and p["name"][0]["family"] for p in patients)
    for path in EXAMPLES:
        body = json.loads(path.read_text())
        assert body["prefetch"]["patient"]["id"] == body["context"]["patientId"] != "p1"


def test_seed_then_fallback_gives_each_example_its_cards(fhir_server, settings_factory, capsys):
    fhir_server.reset([])
    assert main(["seed", "--fhir-server", fhir_server.base, "--wait", "5"]) == 0
    out = capsys.readouterr().out
    assert "loaded 8 example patients" in out and "Patient/bell: Bell Demo" in out
    assert "Patient/tdxd-active: Tdxd Active" in out
    assert main(["seed", "--fhir-server", fhir_server.base]) == 0  # twice: replaced, not duplicated
    capsys.readouterr()
    client = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base]})).test_client()
    fired = 0
    for path in EXAMPLES:
        body = json.loads(path.read_text())
        expected = _cards(client, body)
        body.pop("prefetch")
        body.update(
            fhirServer=fhir_server.base,
            fhirAuthorization={
                "access_token": "seeded-demo-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "her2-cds",
            },
        )
        assert _cards(client, body) == expected, path.name
        fired += bool(expected)
    assert fired >= 6  # all but the HER2-positive example give cards


def test_seed_says_why_a_server_refused(fhir_server, capsys):
    assert main(["seed", "--fhir-server", "http://127.0.0.1:1/fhir"]) == 1
    assert "cannot reach the FHIR server" in capsys.readouterr().err
    assert main(["seed", "--fhir-server", fhir_server.base + "/not-a-base"]) == 1
    assert "the transaction was refused with HTTP 405" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["seed"])  # --fhir-server is required


def test_the_seeded_patient_on_tdxd_today_shows_the_ild_card_in_patient_view(fhir_server, settings_factory):
    """docs/sandbox.md: the ILD card in a sandbox, through patient view (its Rx view cannot order T-DXd)."""
    from datetime import date, timedelta

    from cds_service.seed import TDXD_ACTIVE_ID, tdxd_active_patient

    fhir_server.reset([])
    assert main(["seed", "--fhir-server", fhir_server.base]) == 0
    client = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base]})).test_client()
    body = {
        "hook": "patient-view",
        "hookInstance": "5f0c1b8e-0000-4000-8000-000000000001",
        "context": {"userId": "Practitioner/dr1", "patientId": TDXD_ACTIVE_ID},
        "fhirServer": fhir_server.base,
        "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                              "scope": "patient/*.read", "subject": "her2-cds"},
    }  # fmt: skip
    cards = _cards(client, body)
    assert [(t, i) for t, i, _ in cards] == [("ild-monitoring", "info")]
    assert cards[0][2] == "T-DXd: chest imaging overdue for ILD surveillance"
    doses = [r["effectiveDateTime"] for r in tdxd_active_patient(date(2026, 12, 6)) if r["id"].endswith("-dose-5")]
    assert doses == [(date(2026, 12, 6) - timedelta(days=21)).isoformat()]  # the last dose 3 weeks before seeding
