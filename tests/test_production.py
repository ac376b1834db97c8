"""Served like production: two gunicorn instances (2 workers each) behind one public URL, sharing
PostgreSQL (feedback) and Redis (jti replay cache)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy
import yaml

from .conftest import TEST_ISS
from .fixtures import patients
from .helpers import hook_request, prefetch_from
from .own_servers import serve_workers, wait_up

PUBLIC = "https://cds.prod.example"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_instances(tmp_path: Path, pg_url, redis_url, jwks):
    cfg = {
        "public_base_url": PUBLIC,
        "auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
        "storage": {"database_url": pg_url, "cache_url": redis_url},
    }
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(cfg))
    procs, urls = [], []
    for _ in range(2):
        port = _free_port()
        env = {
            **os.environ,
            "HER2_CDS_CONFIG": str(path),
            "HER2_CDS_BIND": f"127.0.0.1:{port}",
            "HER2_CDS_WORKERS": "2",
            "HER2_CDS_THREADS": "2",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:cds_service.gunicorn_conf", "cds_service.wsgi:app"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_up(url, path="/readyz", what="gunicorn")
    yield urls
    for p in procs:
        p.terminate()
        p.wait(timeout=15)


def test_two_instances_share_replay_cache_and_feedback(two_instances, make_token, pg_url):
    a, b = two_instances
    path = "/cds-services/her2-patient-view"
    body = hook_request("patient-view", prefetch=prefetch_from(patients.bell()))
    token = make_token(PUBLIC + path)
    first = requests.post(a + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert first.status_code == 200 and first.json()["cards"]
    again = requests.post(b + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert again.status_code == 401  # the jti was seen by the other instance

    statuses = []
    for i in range(12):
        url = (a, b)[i % 2]
        resp = requests.post(
            url + path, json=body, timeout=10, headers={"Authorization": f"Bearer {make_token(PUBLIC + path)}"}
        )
        statuses.append(resp.status_code)
    assert statuses == [200] * 12

    card = str(uuid.uuid4())
    fb = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-25T11:00:00Z"}]}
    for url in (a, b, a):
        resp = requests.post(
            url + path + "/feedback",
            json=fb,
            timeout=10,
            headers={"Authorization": f"Bearer {make_token(PUBLIC + path + '/feedback')}"},
        )
        assert resp.status_code == 200
    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        n = conn.execute(sqlalchemy.text("SELECT count(*) FROM cds_feedback WHERE card_uuid = :c"), {"c": card})
        assert n.scalar() == 1
    metrics = requests.get(a + "/metrics", timeout=5).text
    assert "her2cds_requests_total" in metrics
    assert json.loads(requests.get(b + "/readyz", timeout=5).text)["checks"]["cache"] is True


def test_feedback_burst_right_after_serve_workers_2_starts_on_postgresql(tmp_path, pg_url, make_token, jwks):
    """`her2-cds serve --workers 2` builds the app in each worker after the fork: no PostgreSQL socket is
    shared, so the first burst of feedback is stored whole, with no 503 and no hang."""
    from concurrent.futures import ThreadPoolExecutor

    port = _free_port()
    cfg = {
        "public_base_url": PUBLIC,
        "auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
        "storage": {"database_url": pg_url},
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = serve_workers(str(path), port, tmp_path)
    url = f"http://127.0.0.1:{port}/cds-services/her2-order-select/feedback"
    try:
        wait_up(f"http://127.0.0.1:{port}", what="serve --workers 2")
        cards = [str(uuid.uuid4()) for _ in range(40)]

        audience = PUBLIC + "/cds-services/her2-order-select/feedback"

        def post(card: str) -> int:
            body = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-25T11:00:00Z"}]}
            headers = {"Authorization": f"Bearer {make_token(audience)}"}
            return requests.post(url, json=body, timeout=15, headers=headers).status_code

        started = time.time()
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(post, cards))
        assert statuses == [200] * 40 and time.time() - started < 15
        engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            n = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM cds_feedback WHERE card_uuid = ANY(:c)"), {"c": cards}
            )
            assert n.scalar() == 40
    finally:
        proc.terminate()
        proc.wait(timeout=15)
