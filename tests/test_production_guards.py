"""Production guards (issue 21, item 7): the explain route does not exist for non-operators in any method; a
chunked body over the limit sent straight to gunicorn is a 413, never a cut body parsed; a production start
(gunicorn directly, as the Docker image runs it, or `serve --workers N`) refuses to run without public_base_url,
while the development modes may guess it, loudly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from cds_service.web.app import create_app

from .conftest import PUBLIC_BASE, TEST_ISS
from .fixtures import patients
from .helpers import hook_request, prefetch_from
from .own_servers import free_port, serve_workers, wait_up

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
EXPLAIN = "/cds-services/her2-patient-view/explain"


@pytest.fixture
def operator_app(settings_factory, jwks):
    return create_app(
        settings_factory(
            public_base_url=PUBLIC_BASE,
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
            operator={"explain_token_sha256": hashlib.sha256(b"op-secret").hexdigest()},
        )
    ).test_client()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("who", ["nobody", "jwt only", "wrong operator token", "operator token without jwt"])
def test_the_explain_route_is_a_404_in_every_method_for_non_operators(operator_app, make_token, method, who):
    headers = {"Origin": "https://ehr.example", "Access-Control-Request-Method": "POST"}
    if who in ("jwt only", "wrong operator token"):
        headers["Authorization"] = f"Bearer {make_token(PUBLIC_BASE + EXPLAIN)}"
    if who == "wrong operator token":
        headers["X-HER2-CDS-Operator"] = "op-secret-2"
    if who == "operator token without jwt":  # with the operator token the route exists: the JWT is what is missing
        headers["X-HER2-CDS-Operator"] = "op-secret"
        expected = 405 if method == "OPTIONS" else 401
        assert operator_app.open(EXPLAIN, method=method, headers=headers).status_code == expected
        return
    resp = operator_app.open(EXPLAIN, method=method, headers=headers, json={} if method == "POST" else None)
    assert resp.status_code == 404
    assert "Access-Control-Allow-Methods" not in resp.headers and "Allow" not in resp.headers


def test_an_operator_may_post_and_only_post(operator_app, make_token):
    body = hook_request("patient-view", prefetch=prefetch_from(patients.her2_positive()))

    def headers():
        return {"Authorization": f"Bearer {make_token(PUBLIC_BASE + EXPLAIN)}", "X-HER2-CDS-Operator": "op-secret"}

    assert operator_app.post(EXPLAIN, json=body, headers=headers()).status_code == 200
    assert operator_app.get(EXPLAIN, headers=headers()).status_code == 405


# ---- gunicorn, no nginx in front


@pytest.fixture
def gunicorn_service(tmp_path: Path, jwks):
    port = free_port()
    cfg = {
        "public_base_url": PUBLIC_BASE,
        "auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
        "limits": {"max_body_bytes": 200_000},
    }
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(cfg))
    proc = serve_workers(tmp_path / "svc.yaml", port, tmp_path)
    wait_up(f"http://127.0.0.1:{port}", what="serve --workers 2")
    yield port
    proc.terminate()
    proc.wait(timeout=20)


def _chunks(data: bytes, size: int = 16_384):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("kb", [201, 400, 2000])
def test_a_chunked_body_over_the_limit_is_a_413(gunicorn_service, make_token, kb):
    path = "/cds-services/her2-patient-view"
    body = hook_request("patient-view", prefetch=prefetch_from(patients.bell()))
    body["padding"] = "x" * (kb * 1000)
    resp = requests.post(
        f"http://127.0.0.1:{gunicorn_service}{path}",
        data=_chunks(json.dumps(body).encode()),  # a generator: Transfer-Encoding: chunked, no Content-Length
        headers={"Authorization": f"Bearer {make_token(PUBLIC_BASE + path)}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert resp.status_code == 413, resp.text[:200]


def test_a_chunked_body_under_the_limit_is_read_whole(gunicorn_service, make_token):
    path = "/cds-services/her2-patient-view"
    body = json.dumps(hook_request("patient-view", prefetch=prefetch_from(patients.bell()))).encode()
    resp = requests.post(
        f"http://127.0.0.1:{gunicorn_service}{path}",
        data=_chunks(body, 1000),
        headers={"Authorization": f"Bearer {make_token(PUBLIC_BASE + path)}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert resp.status_code == 200 and "cards" in resp.json()


# ---- a production start without public_base_url


def _config(tmp_path: Path, jwks, **extra) -> Path:
    cfg = {"auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]}, **extra}
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_gunicorn_as_the_docker_image_runs_it_refuses_to_start_without_public_base_url(tmp_path, jwks):
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "HER2_CDS_DEV")}
    env.update(HER2_CDS_CONFIG=str(_config(tmp_path, jwks)), HER2_CDS_BIND=f"127.0.0.1:{free_port()}")
    env["HER2_CDS_WORKERS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "python:cds_service.gunicorn_conf", "cds_service.wsgi:app"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "refusing to start: public_base_url is not set" in proc.stderr


def test_serve_with_workers_refuses_to_start_without_public_base_url(tmp_path, jwks):
    out = (tmp_path / "serve.log").open("wb")
    proc = serve_workers(_config(tmp_path, jwks), free_port(), tmp_path, out)
    assert proc.wait(timeout=60) == 2
    assert "refusing to start: public_base_url is not set" in (tmp_path / "serve.log").read_text()


def test_the_development_mode_guesses_the_public_url_loudly(tmp_path, jwks):
    from cds_service.config import load
    from cds_service.startup import banner, refusal_to_serve

    settings = load(_config(tmp_path, jwks), dev=True)
    assert refusal_to_serve(settings) is None
    assert any(level == "WARNING" and "public_base_url is not set" in line for level, line in banner(settings))
    assert refusal_to_serve(load(_config(tmp_path, jwks, public_base_url=PUBLIC_BASE))) is None
    assert refusal_to_serve(load(_config(tmp_path, jwks))) is not None
