"""The card ledger (every card returned or held back, without PHI), shadow mode, snooze by override reason,
and the schema migrations that hold them (issue 11)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from cds_service.rules.ruleset import RULESET_VERSION
from cds_service.storage.database import make_engine, migrate, revision
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .conftest import PUBLIC_BASE, TEST_ISS
from .fixtures import builders as b
from .fixtures import patients
from .helpers import for_patient, hook_request, prefetch_from

SERVICE = {"patient-view": "her2-patient-view", "order-select": "her2-order-select", "order-sign": "her2-order-sign"}


def _app(settings_factory, tmp_path, **overrides):
    key = tmp_path / "patient-key"
    key.write_bytes(b"site-secret-0123456789\n")
    cfg = {"ledger": {"patient_key_secret_file": str(key)}, **overrides}
    return create_app(settings_factory(**cfg))


def _call(app, resources, hook="order-select", patient="p1", drafts=None, headers=None):
    drafts = (
        drafts if drafts is not None else [b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")]
    )
    body = hook_request(
        hook,
        patient,
        prefetch=prefetch_from(for_patient(resources, patient)),
        draft_orders=drafts if hook != "patient-view" else None,
    )
    resp = app.test_client().post(f"/cds-services/{SERVICE[hook]}", json=body, headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


def _rows(app):
    state = app_state(app)
    state.engine.ledger.flush()
    with state.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM cds_card_ledger ORDER BY created_at"))]


def _feedback(app, card, code, service="her2-order-select"):
    body = {
        "feedback": [
            {
                "card": card,
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-25T11:00:00Z",
                "overrideReason": {
                    "reason": {"code": code, "system": "http://her2-cds.org/fhir/CodeSystem/override-reason"}
                },
            }
        ]
    }
    assert app.test_client().post(f"/cds-services/{service}/feedback", json=body).status_code == 200


# --- the ledger


def test_every_returned_card_is_recorded_without_phi(settings_factory, tmp_path, make_token, jwks):
    app = _app(
        settings_factory,
        tmp_path,
        public_base_url=PUBLIC_BASE,
        auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
    )
    token = make_token(f"{PUBLIC_BASE}/cds-services/her2-order-select")
    [card] = _call(app, patients.bell(), patient="MRN-0042", headers={"Authorization": f"Bearer {token}"})
    assert card["source"]["label"] == f"her2-cds · rules {RULESET_VERSION} · Enhertu label (May 2026)"
    [row] = _rows(app)
    assert row["card_uuid"] == card["uuid"] and row["topic"] == "tdxd-consideration" and row["indicator"] == "info"
    assert row["pathways"] == "DB-06,DB-04" and row["held_back"] is None
    assert (row["service_id"], row["hook"], row["client"]) == ("her2-order-select", "order-select", TEST_ISS)
    assert row["ruleset_version"] == RULESET_VERSION
    tenant = json.dumps([TEST_ISS, "", "MRN-0042"], separators=(",", ":")).encode()  # issuer, FHIR server, id
    assert row["patient_hash"] == hmac.new(b"site-secret-0123456789", tenant, hashlib.sha256).hexdigest()
    assert row["patient_key_version"] == 2
    assert "MRN-0042" not in repr(row)


def test_without_a_secret_file_the_patient_key_is_random_and_kept(settings_factory, tmp_path):
    db = f"sqlite:///{tmp_path}/own.db"
    one = create_app(settings_factory(storage={"database_url": db}))
    _call(one, patients.bell(), patient="p-7")
    app_state(one).engine.ledger.flush_at_exit()  # what a stopping worker does (atexit)
    two = create_app(settings_factory(storage={"database_url": db}))  # a restart: the same key
    _call(two, patients.bell(), patient="p-7")
    first, second = _rows(two)
    assert first["patient_hash"] == second["patient_hash"] != hashlib.sha256(b"p-7").hexdigest()


def test_cards_are_written_in_batches_and_a_flush_does_not_wait_for_the_batch(settings_factory, tmp_path):
    """The writer gathers the cards of LINGER_SECONDS into one transaction; a flush (the feedback route's, before
    a snooze) writes at once instead of waiting out the linger."""
    from cds_service.storage import ledger as ledger_module

    app = _app(settings_factory, tmp_path)
    for i in range(5):
        _call(app, patients.bell(), patient=f"p-{i}")
    started = time.monotonic()
    rows = _rows(app)
    assert len(rows) == 5
    assert time.monotonic() - started < ledger_module.LINGER_SECONDS + 0.5

    state = app_state(app)
    inserts: list[int] = []  # statements that write ledger rows (the retention purge may commit beside them)

    def count(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CDS_CARD_LEDGER"):
            inserts.append(1)

    sa.event.listen(state.store.engine, "before_cursor_execute", count)
    entries = [
        ledger_module.Entry(
            str(uuid.uuid4()), "her2-order-select", "order-select", "tdxd-consideration", "info", RULESET_VERSION, "d"
        )
        for _ in range(50)
    ]
    state.engine.ledger.record(entries)
    state.engine.ledger.flush()
    assert len(_rows(app)) == 55
    assert len(inserts) == 1, "50 cards queued at once are written by one statement"


def test_what_is_queued_is_written_at_exit_and_a_down_database_does_not_hold_the_exit(settings_factory, tmp_path):
    from cds_service.storage import ledger as ledger_module

    app = _app(settings_factory, tmp_path)
    _call(app, patients.bell())
    app_state(app).engine.ledger.flush_at_exit()
    with app_state(app).store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM cds_card_ledger")).scalar() == 1
    with app_state(app).store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE cds_card_ledger"))
    _call(app, patients.bell(), patient="p-2")
    started = time.monotonic()
    app_state(app).engine.ledger.flush_at_exit()
    assert time.monotonic() - started < ledger_module.EXIT_FLUSH_SECONDS + 1


def test_a_down_database_never_stops_a_card_and_the_miss_is_counted(settings_factory, tmp_path):
    app = _app(settings_factory, tmp_path)
    with app_state(app).store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE cds_card_ledger"))
    assert [c["source"]["topic"]["code"] for c in _call(app, patients.bell())] == ["tdxd-consideration"]
    app_state(app).engine.ledger.flush()
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'her2cds_ledger_misses_total{what="write"} 1.0' in metrics


# --- shadow mode and repeats


def test_shadow_mode_derives_and_records_but_never_returns(settings_factory, tmp_path):
    app = _app(settings_factory, tmp_path, cards={"tdxd_consideration": {"enabled": True, "mode": "shadow"}})
    assert _call(app, patients.bell()) == []
    [row] = _rows(app)
    assert (row["topic"], row["held_back"]) == ("tdxd-consideration", "shadow")
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert (
        'her2cds_cards_held_back_total{service="her2-order-select",topic="tdxd-consideration",why="shadow"} 1.0'
        in metrics
    )


@pytest.mark.parametrize(
    ("cfg", "derived"),
    [({"enabled": False}, 0), ({"enabled": True, "mode": "off"}, 0), ({"enabled": True, "mode": "live"}, 1)],
)
def test_off_derives_nothing(settings_factory, tmp_path, cfg, derived):
    app = _app(settings_factory, tmp_path, cards={"tdxd_consideration": cfg})
    assert len(_call(app, patients.bell())) == derived and len(_rows(app)) == derived


def test_a_repeat_held_back_on_order_sign_is_recorded(settings_factory, tmp_path):
    app, chart = _app(settings_factory, tmp_path), patients.bell()
    _call(app, chart, "order-select")
    assert _call(app, chart, "order-sign") == []
    assert [r["held_back"] for r in _rows(app)] == [None, "repeat"]


# --- snooze by override reason

SNOOZE = {"snooze": {"patient-declined": {"days": 90}, "data-incorrect": {"until_evidence_changes": True}}}


def test_patient_declined_snoozes_the_topic_for_that_patient_only(settings_factory, tmp_path):
    app = _app(settings_factory, tmp_path, cards=SNOOZE)
    [card] = _call(app, patients.bell(), patient="p1")
    _feedback(app, card["uuid"], "patient-declined")
    assert _call(app, patients.bell(), patient="p1") == []
    assert len(_call(app, patients.bell(), patient="p2")) == 1  # another patient: not snoozed
    assert [r["held_back"] for r in _rows(app)] == [None, "snooze", None]
    with app_state(app).store.engine.connect() as conn:
        days = conn.execute(sa.text("SELECT julianday(until) - julianday(created_at) FROM cds_snooze")).scalar()
    assert round(days) == 90


def test_data_incorrect_snoozes_until_the_evidence_changes(settings_factory, tmp_path):
    app, chart = _app(settings_factory, tmp_path, cards=SNOOZE), patients.bell()
    [card] = _call(app, chart)
    _feedback(app, card["uuid"], "data-incorrect")
    assert _call(app, chart) == []
    changed = [*chart, b.her2_ihc("1+", "2026-10-01", site="liver")]
    assert len(_call(app, changed)) == 1  # a new HER2 result: the card is back


@pytest.mark.parametrize(
    "rule_key, sent, system",
    [
        ("patient-declined", "patient-refuses", "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"),
        ("patient-refuses", "patient-refuses", "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"),
        ("patient-refuses", "patient-declined", "http://her2-cds.org/fhir/CodeSystem/override-reason"),
    ],
    ids=["our rule, the HL7 code the card offered", "HL7 rule, HL7 code", "HL7 rule, our code (an older EHR)"],
)
def test_a_snooze_rule_fires_whichever_code_names_its_reason(settings_factory, tmp_path, rule_key, sent, system):
    app = _app(settings_factory, tmp_path, cards={"snooze": {rule_key: {"days": 90}}})
    [card] = _call(app, patients.bell(), patient="p1")
    offered = {r["code"]: r for r in card["overrideReasons"]}
    assert "patient-refuses" in offered or sent == "patient-declined"
    body = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T11:00:00Z",
                          "overrideReason": {"reason": {"code": sent, "system": system}}}]}  # fmt: skip
    assert app.test_client().post("/cds-services/her2-order-select/feedback", json=body).status_code == 200
    assert _call(app, patients.bell(), patient="p1") == []


def test_an_unconfigured_reason_and_an_acceptance_snooze_nothing(settings_factory, tmp_path):
    app = _app(settings_factory, tmp_path, cards=SNOOZE)
    [card] = _call(app, patients.bell())
    _feedback(app, card["uuid"], "already-addressed")
    assert len(_call(app, patients.bell())) == 1


def test_warnings_and_critical_cards_are_never_snoozed(settings_factory, tmp_path):
    app = _app(settings_factory, tmp_path, cards={"snooze": {"ild-risk-accepted": {"days": 90}}})
    tdxd = [
        b.med_request("fam-trastuzumab deruxtecan", "2026-11-25", status="draft", dose=(6.4, "mg/kg"), id="draft-tdxd")
    ]
    [card] = _call(app, patients.bell(), "order-sign", drafts=tdxd)
    assert card["indicator"] == "warning"
    _feedback(app, card["uuid"], "ild-risk-accepted", service="her2-order-sign")
    [again] = _call(app, patients.bell(), "order-sign", drafts=tdxd)
    assert again["indicator"] == "warning"


def test_retention_purges_old_rows(settings_factory, tmp_path):
    from datetime import datetime, timedelta, timezone

    app = _app(settings_factory, tmp_path)
    _call(app, patients.bell())
    ledger = app_state(app).engine.ledger
    ledger.flush()
    assert ledger.purge(730) == 0
    assert ledger.purge(730, now=datetime.now(timezone.utc) + timedelta(days=731)) == 1


# --- migrations


def test_a_first_release_sqlite_database_is_migrated_and_keeps_its_feedback(tmp_path):
    path = tmp_path / "first-release.db"
    with sqlite3.connect(path) as conn:  # the table as the first release made it (create_all, no Alembic)
        conn.execute(
            "CREATE TABLE cds_feedback (entry_key VARCHAR(64) PRIMARY KEY, service_id VARCHAR(100) NOT NULL,"
            " card_uuid VARCHAR(200) NOT NULL, outcome VARCHAR(20) NOT NULL, accepted_suggestions TEXT,"
            " override_reason_system VARCHAR(500), override_reason_code VARCHAR(200), override_comment TEXT,"
            " outcome_timestamp VARCHAR(40) NOT NULL, received_at DATETIME NOT NULL)"
        )
        conn.execute(
            "INSERT INTO cds_feedback VALUES ('k1','her2-order-select','c1','accepted',NULL,NULL,NULL,NULL,"
            "'2026-01-01T00:00:00Z','2026-01-01 00:00:00')"
        )
    engine = make_engine(f"sqlite:///{path}")
    assert revision(engine) is None
    migrate(engine)
    migrate(engine)  # idempotent
    assert revision(engine) == "0003"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT card_uuid FROM cds_feedback")).scalars().all() == ["c1"]
        assert conn.execute(sa.text("SELECT count(*) FROM cds_card_ledger")).scalar() == 0


def test_postgresql_migrates_once_when_workers_start_together(pg_url):
    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    name = f"her2_mig_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = pg_url.rsplit("/", 1)[0] + "/" + name
        engines = [make_engine(url) for _ in range(4)]
        errors: list[Exception] = []

        def run(engine):
            try:
                migrate(engine)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and {revision(e) for e in engines} == {"0003"}
        for e in engines:
            e.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- versioned, attributable rules


def test_discovery_carries_the_rule_set_version_and_hti1_source_attributes(settings_factory, tmp_path):
    import json

    local = tmp_path / "local-endocrine.json"
    local.write_text(
        json.dumps(
            {
                "resourceType": "ValueSet",
                "status": "active",
                "url": "http://her2-cds.org/fhir/ValueSet/endocrine-therapy",
                "compose": {"include": [{"system": "urn:oid:1.2.3", "concept": [{"code": "L1"}]}]},
            }
        )
    )
    app = create_app(settings_factory(value_sets={"extra_files": [str(local)]}))
    services = app.test_client().get("/cds-services").get_json()["services"]
    assert len(services) == 3
    for svc in services:
        attrs = svc["extension"]["her2-cds.org/source-attributes"]
        assert attrs["ruleset_version"] == RULESET_VERSION
        for key in ("developer", "funding_source", "intended_population", "intended_users", "last_clinical_review"):
            assert attrs[key]
        assert set(attrs["intended_use"]) == {"her2-rescore", "tdxd-consideration", "ild-monitoring"}
        citations = " ".join(attrs["citations"])
        for doi in ("10.1056/NEJMoa2407086", "10.1056/NEJMoa2203690", "10.1200/JCO.22.02864"):
            assert doi in citations
        assert "BLA 761139" in citations and attrs["cautions"]
        versions = attrs["value_set_versions"]
        assert versions["http://her2-cds.org/fhir/ValueSet/tdxd"] in ("0.1.0", "0.2.0")
        assert versions["http://her2-cds.org/fhir/ValueSet/endocrine-therapy"].endswith(
            "+ local file local-endocrine.json (1 codes)"
        )


def test_the_evidence_digest_keeps_its_stored_format():
    """Snoozes 'until the evidence changes' stored by earlier releases compare against this digest: sha256 of
    the JSON list [topic, summary, evidence without the order in progress, unknowns] (json.dumps defaults)."""
    from cds_service.cards.held_back import evidence_digest
    from cds_service.rules.decision import CardDecision

    d = CardDecision(
        topic="her2-rescore",
        indicator="warning",
        summary="Re-score HER2",
        evidence=["HER2 history: IHC 0 (2024-01-02)", "order in progress: capecitabine", "HR status positive: ER 90%"],
        unknowns=["no pathology report — “quoted”"],
    )
    lines = ["her2-rescore", "Re-score HER2", "HER2 history: IHC 0 (2024-01-02)", "HR status positive: ER 90%"]
    expected = hashlib.sha256(json.dumps([*lines, "no pathology report — “quoted”"]).encode()).hexdigest()
    assert evidence_digest(d) == expected
    d.evidence[1] = "order in progress: paclitaxel"  # the order in progress never changes the digest
    assert evidence_digest(d) == expected


def test_the_published_source_attributes_are_the_reviewed_text():
    """The HTI-1 source attributes discovery publishes are reviewed words (intended use, population, cautions,
    citations, the label revision): a change to them is a deliberate review, made here too
    (tests/fixtures/source_attributes.json)."""
    from pathlib import Path

    from cds_service.rules.ruleset import source_attributes

    reviewed = json.loads((Path(__file__).parent / "fixtures" / "source_attributes.json").read_text("utf-8"))
    assert source_attributes() == reviewed
