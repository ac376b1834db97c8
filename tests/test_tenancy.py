"""Tenancy (issue 21, item 4; DESIGN.md §3): a patient is (issuer, FHIR server, patient id). Two EHRs on one
deployment, each with a patient "123": what one EHR's clinicians do (an override that snoozes, a card shown
that makes the next a repeat, feedback) never reaches the other's patient; feedback only from the issuer the
card was issued to; a replay changes nothing. Black box: signed tokens of two issuers, real HTTP routes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from cds_service.storage.database import MIGRATIONS, make_engine, revision
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .conftest import PUBLIC_BASE, TEST_ISS
from .fixtures import builders as b
from .fixtures import patients
from .helpers import for_patient, hook_request, prefetch_from

ISS_A, ISS_B = TEST_ISS, "https://ehr-b.example"
SERVER_A, SERVER_B = "https://fhir.a.example/r4", "https://fhir.b.example/r4"
SECRET = b"site-secret-0123456789"
SNOOZE = {"snooze": {"patient-declined": {"days": 90}, "data-incorrect": {"until_evidence_changes": True}}}
SERVICE = {"order-select": "her2-order-select", "order-sign": "her2-order-sign"}


@pytest.fixture
def two_ehrs(settings_factory, tmp_path, jwks, make_token):
    key = tmp_path / "patient-key"
    key.write_bytes(SECRET + b"\n")
    app = create_app(
        settings_factory(
            public_base_url=PUBLIC_BASE,
            auth={"required": True, "issuers": [{"iss": ISS_A, "jwks": jwks}, {"iss": ISS_B, "jwks": jwks}]},
            ledger={"patient_key_secret_file": str(key)},
            cards=SNOOZE,
        )
    )

    class EHR:
        def __init__(self, iss: str, server: str) -> None:
            self.iss, self.server = iss, server

        def headers(self, path: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {make_token(PUBLIC_BASE + path, iss=self.iss)}"}

        def call(self, hook: str = "order-select", patient: str = "123", chart=None, server: str | None = None):
            chart = chart if chart is not None else patients.bell()
            body = hook_request(
                hook,
                patient,
                prefetch=prefetch_from(for_patient(chart, patient)),
                draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")],
                fhirServer=server or self.server,
            )
            path = f"/cds-services/{SERVICE[hook]}"
            resp = app.test_client().post(path, json=body, headers=self.headers(path))
            assert resp.status_code == 200, resp.get_data(as_text=True)
            return resp.get_json()["cards"]

        def feedback(self, card: str, code: str = "patient-declined", at: str = "2026-11-25T11:00:00Z", service=None):
            path = f"/cds-services/{service or 'her2-order-select'}/feedback"
            entry = {
                "card": card,
                "outcome": "overridden",
                "outcomeTimestamp": at,
                "overrideReason": {
                    "reason": {"code": code, "system": "http://her2-cds.org/fhir/CodeSystem/override-reason"}
                },
            }
            return app.test_client().post(path, json={"feedback": [entry]}, headers=self.headers(path))

    return app, EHR(ISS_A, SERVER_A), EHR(ISS_B, SERVER_B)


def _rows(app, table: str):
    state = app_state(app)
    state.engine.ledger.flush()
    with state.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]


def test_one_ehrs_override_never_silences_another_ehrs_patient(two_ehrs):
    app, a, b_ = two_ehrs
    [card] = b_.call()
    assert b_.feedback(card["uuid"]).status_code == 200
    assert b_.call() == []  # B's own patient 123: snoozed, as B's clinician asked
    assert len(a.call()) == 1  # A's patient 123 is someone else
    assert len(b_.call(server="https://fhir.b2.example/r4")) == 1  # same issuer, another FHIR server: another patient
    hashes = {r["patient_hash"] for r in _rows(app, "cds_card_ledger")}
    assert len(hashes) == 3


def test_feedback_on_another_ehrs_card_is_refused_and_stores_nothing(two_ehrs):
    app, a, b_ = two_ehrs
    [card] = a.call()
    resp = b_.feedback(card["uuid"])
    assert resp.status_code == 403
    assert "not issued to this client" in resp.get_json()["error"]
    assert _rows(app, "cds_feedback") == [] and _rows(app, "cds_snooze") == []
    assert len(a.call()) == 1  # A's patient is not snoozed
    assert a.feedback(card["uuid"]).status_code == 200  # A may
    assert a.call() == []


def test_a_feedback_replay_changes_nothing(two_ehrs):
    app, a, _ = two_ehrs
    [card] = a.call()
    for _ in range(3):
        assert a.feedback(card["uuid"]).status_code == 200
    [snooze] = _rows(app, "cds_snooze")
    assert len(_rows(app, "cds_feedback")) == 1
    # a later override of the same card (another timestamp: new feedback) neither stacks nor prolongs the snooze
    assert a.feedback(card["uuid"], at="2026-12-01T09:00:00Z").status_code == 200
    assert len(_rows(app, "cds_feedback")) == 2
    assert _rows(app, "cds_snooze") == [snooze]


def test_a_repeat_in_one_ehr_is_not_a_repeat_in_another(two_ehrs):
    app, a, b_ = two_ehrs
    chart = patients.bell()  # one chart (the builders number their ids)
    b_.call("order-select", chart=chart)
    assert b_.call("order-sign", chart=chart) == []  # B's user just saw it: a repeat
    assert len(a.call("order-sign", chart=chart)) == 1  # same user id, same patient id, another EHR: not seen
    held = [r["held_back"] for r in _rows(app, "cds_card_ledger")]
    assert sorted(map(str, held)) == ["None", "None", "repeat"]


def test_a_database_of_the_last_release_is_migrated_and_its_snoozes_stay_with_their_ehr(
    settings_factory, tmp_path, jwks, make_token
):
    """Rows written before tenancy hash the patient id alone. Migrated, they keep holding back the cards of the
    EHR whose clinician overrode (the issuer is taken from the ledger), never another EHR's patient; snoozes that
    replays had stacked are one per card again."""
    db = tmp_path / "release-2.db"
    engine = make_engine(f"sqlite:///{db}")
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    old_hash = hmac.new(SECRET, b"123", hashlib.sha256).hexdigest()
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cds_card_ledger (card_uuid, created_at, service_id, hook, topic, indicator, client,"
                " ruleset_version, patient_hash, evidence_digest) VALUES ('old-card', :t, 'her2-order-select',"
                " 'order-select', 'tdxd-consideration', 'info', :iss, '2026.06.0', :h, 'd')"
            ),
            {"t": now, "iss": ISS_B, "h": old_hash},
        )
        for days in (90, 180):  # a replayed override stacked a second, longer snooze
            conn.execute(
                sa.text(
                    "INSERT INTO cds_snooze (patient_hash, topic, reason_code, card_uuid, created_at, until)"
                    " VALUES (:h, 'tdxd-consideration', 'patient-declined', 'old-card', :t,"
                    f" datetime('now', '+{days} days'))"
                ),
                {"h": old_hash, "t": now},
            )
    engine.dispose()
    key = tmp_path / "patient-key"
    key.write_bytes(SECRET + b"\n")
    app = create_app(
        settings_factory(
            storage={"database_url": f"sqlite:///{db}"},
            public_base_url=PUBLIC_BASE,
            auth={"required": True, "issuers": [{"iss": ISS_A, "jwks": jwks}, {"iss": ISS_B, "jwks": jwks}]},
            ledger={"patient_key_secret_file": str(key)},
            cards=SNOOZE,
        )
    )
    state = app_state(app)
    assert revision(state.store.engine) == "0003"
    [snooze] = _rows(app, "cds_snooze")
    assert (snooze["issuer"], snooze["patient_key_version"]) == (ISS_B, 1)
    assert "+90" not in json.dumps(snooze, default=str)  # (the earliest row was kept)
    [old] = _rows(app, "cds_card_ledger")
    assert old["patient_key_version"] == 1

    def call(iss: str) -> list:
        body = hook_request(
            "order-select",
            "123",
            prefetch=prefetch_from(for_patient(patients.bell(), "123")),
            draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")],
        )
        path = "/cds-services/her2-order-select"
        headers = {"Authorization": f"Bearer {make_token(PUBLIC_BASE + path, iss=iss)}"}
        resp = app.test_client().post(path, json=body, headers=headers)
        assert resp.status_code == 200
        return resp.get_json()["cards"]

    assert call(ISS_B) == []  # B's override still holds for B's patient 123
    assert len(call(ISS_A)) == 1  # and never for A's
