"""Feedback in PostgreSQL and the jti replay cache in Redis: the real servers on 127.0.0.1."""

from __future__ import annotations

import uuid

import pytest

from cds_service.storage.first_use import MemoryFirstUse, RedisFirstUse
from cds_service.web.app import create_app
from cds_service.web.state import app_state


def test_feedback_in_postgresql_is_idempotent(settings_factory, pg_url):
    app = create_app(settings_factory(storage={"database_url": pg_url, "cache_url": "memory://"}))
    card = str(uuid.uuid4())
    body = {
        "feedback": [
            {
                "card": card,
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-25T10:00:00Z",
                "acceptedSuggestions": [{"id": "s1"}],
            }
        ]
    }
    c = app.test_client()
    for _ in range(2):
        assert c.post("/cds-services/her2-patient-view/feedback", json=body).status_code == 200
    rows = [r for r in app_state(app).store.entries("her2-patient-view") if r["card_uuid"] == card]
    assert len(rows) == 1 and rows[0]["outcome"] == "accepted"
    assert c.get("/readyz").get_json()["checks"]["database"] is True


def test_unreachable_database_starts_not_ready_and_feedback_is_503(settings_factory):
    app = create_app(settings_factory(storage={"database_url": "postgresql://nobody@127.0.0.1:1/none"}))
    c = app.test_client()
    ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["database"] is False
    body = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]}
    resp = c.post("/cds-services/her2-patient-view/feedback", json=body)
    assert resp.status_code == 503 and "retry" in resp.get_json()["error"] and resp.headers["Retry-After"] == "2"


def test_redis_replay_cache_is_shared_between_instances(redis_url):
    a, b = RedisFirstUse(redis_url), RedisFirstUse(redis_url)
    key = str(uuid.uuid4())
    assert a.first_use(key, 30) is True
    assert b.first_use(key, 30) is False


class Clock:
    """Time that a test moves on (the cache reads it through its `clock`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_replay_cache_forgets_expired_keys_and_refuses_only_when_full_of_live_ones():
    from cds_service.storage.first_use import CacheFull

    clock = Clock()
    cache = MemoryFirstUse(max_entries=2, clock=clock)
    assert cache.first_use("a", 60) and cache.first_use("b", 60)
    assert cache.first_use("a", 60) is False  # a replay
    with pytest.raises(CacheFull):
        cache.first_use("c", 60)  # full of live entries: refuse rather than forget
    clock.now += 61
    assert cache.first_use("c", 60) and cache.first_use("a", 60)  # a and b expired: room, and a is new again
    assert len(cache) == 2


def test_a_full_cache_never_refuses_while_expired_keys_remain_and_evicts_without_rebuilding():
    """200,000 keys, half of them expired: every new token is accepted and the expired keys are gone (the old
    code refused every token once full, and rebuilt its dict under the lock on each call)."""
    from cds_service.storage.first_use import CacheFull

    clock = Clock()
    cache = MemoryFirstUse(max_entries=200_000, clock=clock)
    for i in range(100_000):
        cache.first_use(f"old-{i}", 10)
    clock.now += 5
    for i in range(100_000):
        cache.first_use(f"live-{i}", 600)
    clock.now += 6  # the old half has expired; the cache is full
    assert all(cache.first_use(f"new-{i}", 600) for i in range(100_000))
    assert len(cache) == 200_000  # the expired half made room, one key at a time
    assert cache.first_use("live-7", 600) is False  # a live one is still a replay
    with pytest.raises(CacheFull):
        cache.first_use("one-more", 600)  # now full of unexpired keys only


def test_a_full_jti_cache_is_a_503_on_our_side_and_a_metric(settings_factory, make_token, jwks):
    from .conftest import PUBLIC_BASE, TEST_ISS

    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
            public_base_url=PUBLIC_BASE,
            storage={"memory_cache_max_entries": 2, "cache_url": "memory://"},
        )
    ).test_client()
    auth = [{"Authorization": f"Bearer {make_token(PUBLIC_BASE + '/cds-services')}"} for _ in range(3)]
    statuses = [app.get("/cds-services", headers=h) for h in auth]
    assert [r.status_code for r in statuses] == [200, 200, 503] and statuses[2].headers["Retry-After"] == "2"
    assert 'her2cds_auth_failures_total{reason="jti cache full"} 1.0' in app.get("/metrics").get_data(as_text=True)


def test_two_app_instances_share_replay_cache_via_redis(settings_factory, make_token, jwks, redis_url):
    from .conftest import PUBLIC_BASE, TEST_ISS

    settings = dict(
        auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
        public_base_url=PUBLIC_BASE,
        storage={"cache_url": redis_url, "database_url": "sqlite://"},
    )
    one = create_app(settings_factory(**settings)).test_client()
    two = create_app(settings_factory(**settings)).test_client()
    token = make_token(f"{PUBLIC_BASE}/cds-services")
    assert one.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert two.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_unreachable_redis_refuses_tokens_with_503_not_500(settings_factory, make_token, jwks):
    """Freshness of a jti cannot be proven without the shared cache: fail closed, and say the
    problem is on the service's side (503, Retry-After), not the client's token."""
    from .conftest import PUBLIC_BASE, TEST_ISS

    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
            public_base_url=PUBLIC_BASE,
            storage={"cache_url": "redis://127.0.0.1:1/0"},
        )
    )
    resp = app.test_client().get(
        "/cds-services", headers={"Authorization": f"Bearer {make_token(f'{PUBLIC_BASE}/cds-services')}"}
    )
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert "retry" in resp.get_json()["error"]
    assert app.test_client().get("/readyz").get_json()["checks"]["cache"] is False


def test_cards_shown_on_one_replica_are_not_repeated_at_sign_on_another(settings_factory, redis_url):
    """order-select may reach one instance and order-sign another: the 'already shown' memory is
    in Redis too (its own namespace, hashed keys)."""
    from .fixtures import builders as b
    from .fixtures import patients
    from .helpers import hook_request, prefetch_from

    settings = dict(storage={"cache_url": redis_url, "database_url": "sqlite://"})
    one, two = (create_app(settings_factory(**settings)).test_client() for _ in range(2))
    chart = prefetch_from(patients.bell())
    order = [b.med_request("capecitabine", "2026-11-25", status="draft", id="d-cape")]
    user = f"Practitioner/{uuid.uuid4()}"  # Redis outlives a test run

    def topics(client, hook):
        body = hook_request(hook, prefetch=chart, draft_orders=order)
        body["context"]["userId"] = user
        return [
            c["source"]["topic"]["code"]
            for c in client.post(f"/cds-services/her2-{hook}", json=body).get_json()["cards"]
        ]

    assert topics(one, "order-select") == ["tdxd-consideration"]
    assert topics(two, "order-sign") == []


def test_a_database_error_logs_no_statement_values(settings_factory, tmp_path, caplog):
    """The table vanishes under the service: the feedback is refused with 503 and the log holds neither the
    clinician's comment nor the statement's parameters."""
    import sqlite3

    from cds_service.web.app import create_app

    db = tmp_path / "gone.db"
    app = create_app(settings_factory(storage={"database_url": f"sqlite:///{db}"}))
    client = app.test_client()
    secret = "patient said she is moving to Lyon next week"
    body = {
        "feedback": [
            {
                "card": "c1",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-25T10:00:00Z",
                "overrideReason": {"reason": {"code": "patient-declined"}, "userComment": secret},
            }
        ]
    }
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE cds_feedback")
    with caplog.at_level("DEBUG"):
        resp = client.post("/cds-services/her2-order-select/feedback", json=body)
    assert resp.status_code == 503
    assert "feedback could not be stored: OperationalError" in caplog.text
    assert secret not in caplog.text and "patient-declined" not in caplog.text and "INSERT" not in caplog.text


def test_feedback_fields_longer_than_their_columns_are_a_400(settings_factory):
    from cds_service.web.app import create_app

    client = create_app(settings_factory()).test_client()
    body = {
        "feedback": [
            {
                "card": "c1",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-25T10:00:00Z",
                "overrideReason": {"reason": {"code": "x" * 201}},
            }
        ]
    }
    resp = client.post("/cds-services/her2-order-select/feedback", json=body)
    assert resp.status_code == 400
    assert resp.get_json()["problems"][0]["field"] == "feedback[0].overrideReason.reason.code"
    body["feedback"][0]["overrideReason"]["reason"]["code"] = "x" * 200
    assert client.post("/cds-services/her2-order-select/feedback", json=body).status_code == 200


def test_a_token_issued_before_the_memory_cache_started_is_refused(settings_factory, make_token, jwks):
    """A restarted service has forgotten the jtis it saw: a token issued before its start may be a replay. It is
    refused as a fault on our side (503, Retry-After), not as a bad credential: the next token goes through."""
    import time

    from .conftest import PUBLIC_BASE, TEST_ISS

    old = make_token(f"{PUBLIC_BASE}/cds-services", iat_offset=-2)
    time.sleep(1.1)
    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}], "leeway_seconds": 0},
            public_base_url=PUBLIC_BASE,
            storage={"cache_url": "memory://"},
        )
    ).test_client()
    refused = app.get("/cds-services", headers={"Authorization": f"Bearer {old}"})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    new = make_token(f"{PUBLIC_BASE}/cds-services")
    assert app.get("/cds-services", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    metrics = app.get("/metrics").get_data(as_text=True)
    assert 'her2cds_auth_failures_total{reason="issued before the replay cache started"} 1.0' in metrics


def test_replay_is_refused_after_redis_restarts_without_persistence(settings_factory, make_token, jwks, tmp_path):
    """Our own Redis instance (another port, no persistence, as the compose file runs it), restarted between
    two uses of one token: the second use is refused because the cache's epoch moved."""
    import time

    from .conftest import PUBLIC_BASE, TEST_ISS
    from .own_servers import OwnRedis

    cache = OwnRedis(tmp_path)
    cache.start()
    try:
        app = create_app(
            settings_factory(
                auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}], "leeway_seconds": 0},
                public_base_url=PUBLIC_BASE,
                storage={"cache_url": cache.url, "database_url": "sqlite://"},
            )
        ).test_client()
        time.sleep(1.1)
        token = make_token(f"{PUBLIC_BASE}/cds-services")
        headers = {"Authorization": f"Bearer {token}"}
        assert app.get("/cds-services", headers=headers).status_code == 200
        assert app.get("/cds-services", headers=headers).status_code == 401  # replay, remembered
        cache.stop()
        time.sleep(1.1)
        cache.start()
        assert app.get("/cds-services", headers=headers).status_code == 503  # memory lost: refused, as our fault
        time.sleep(1.1)
        fresh = make_token(f"{PUBLIC_BASE}/cds-services")
        assert app.get("/cds-services", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    finally:
        cache.stop()


@pytest.mark.parametrize("fault", ["table dropped", "server unreachable"])
def test_postgresql_error_paths_log_no_values(settings_factory, pg_url, caplog, fault):
    """On a database of its own (created and dropped by the test), the feedback table vanishes, or the
    server is unreachable: 503, and neither the comment nor a statement parameter reaches the log."""
    import sqlalchemy as sa

    from cds_service.web.app import create_app

    admin = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    name = f"her2_fault_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    try:
        if fault == "server unreachable":
            url = "postgresql://postgres@127.0.0.1:1/" + name
        app = create_app(settings_factory(storage={"database_url": url}))
        if fault == "table dropped":
            db = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
            with db.begin() as conn:
                conn.execute(sa.text("DROP TABLE cds_feedback"))
            db.dispose()
        secret = "she asked us not to tell her daughter"
        body = {
            "feedback": [
                {
                    "card": "c1",
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-25T10:00:00Z",
                    "overrideReason": {"reason": {"code": "patient-declined"}, "userComment": secret},
                }
            ]
        }
        with caplog.at_level("DEBUG"):
            resp = app.test_client().post("/cds-services/her2-order-select/feedback", json=body)
        assert resp.status_code == 503
        assert "feedback could not be stored:" in caplog.text
        assert secret not in caplog.text and "patient-declined" not in caplog.text and "INSERT" not in caplog.text
        app_state(app).store.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_with_the_database_unreachable_hook_calls_answer_at_once_with_their_cards(settings_factory):
    """PostgreSQL down from the start, snoozes configured, no patient-key file (the key lives in the database):
    every hook call answers 200 with its card, without waiting on the database each time; snoozes are "not known",
    counted as misses."""
    import time

    from .fixtures import builders as b
    from .fixtures import patients
    from .helpers import hook_request, prefetch_from

    app = create_app(
        settings_factory(
            storage={"database_url": "postgresql://postgres@127.0.0.1:1/none"},
            cards={"snooze": {"patient-declined": {"days": 90}}},
        )
    )
    client = app.test_client()
    body = hook_request(
        "order-select",
        prefetch=prefetch_from(patients.bell()),
        draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")],
    )
    started = time.monotonic()
    answers = [client.post("/cds-services/her2-order-select", json=body) for _ in range(20)]
    elapsed = time.monotonic() - started
    assert [r.status_code for r in answers] == [200] * 20
    assert all(len(r.get_json()["cards"]) == 1 for r in answers)
    assert elapsed < 3.0, elapsed  # not 20 waits on a database that is not there
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'her2cds_ledger_misses_total{what="patient key"}' in metrics
