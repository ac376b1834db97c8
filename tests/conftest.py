"""Shared fixtures: settings, Flask clients, a real FHIR server process, a real socket server, JWTs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server

from cds_service.config import Settings, load, merge
from cds_service.web.app import create_app

HERE = Path(__file__).parent
TEST_ISS = "https://ehr.test.example"
PUBLIC_BASE = "https://cds.test.example"


PG_URL = os.environ.get("HER2_CDS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HER2_CDS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _server_or_skip(name: str, reachable: bool) -> None:
    """Under CI (CI=true) a missing server fails the test; on a laptop without it, skip loudly."""
    if reachable:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required under CI and is not reachable")
    pytest.skip(f"{name} not reachable on this machine (runs under CI)")


CHECKOUT = Path(__file__).resolve().parent.parent
_OWN_DIRS = (
    ".venv/",
    "node_modules/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".mypy_cache/",
    "her2_cds.egg-info/",
)


def _stray_files() -> set[str]:
    """Files in the checkout that git does not track (ignored ones included), but for tool caches."""
    out = subprocess.run(
        ["git", "ls-files", "--others", "--directory", "--no-empty-directory"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
    ).stdout.split()
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        f for f in out + ignored if "__pycache__" not in f and not f.startswith(_OWN_DIRS) and not f.endswith(_OWN_DIRS)
    }


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_checkout() -> Iterator[None]:
    """No test writes into the checkout (a database, a report, a key file): the session fails if one did."""
    if not (CHECKOUT / ".git").exists():
        yield
        return
    before = _stray_files()
    yield
    new = _stray_files() - before
    assert not new, f"tests wrote into the checkout: {sorted(new)}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    from cds_service.storage.feedback import FeedbackStore

    _server_or_skip("PostgreSQL", FeedbackStore(PG_URL).ping())
    return PG_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    from cds_service.storage.first_use import RedisFirstUse

    _server_or_skip("Redis", RedisFirstUse(REDIS_URL).ping())
    return REDIS_URL


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def jwks(signing_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update(kid="k1", use="sig", alg="ES384")
    return {"keys": [jwk]}


@pytest.fixture
def make_token(signing_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    def make(
        aud: str,
        *,
        iss: str = TEST_ISS,
        kid: str = "k1",
        lifetime: int = 300,
        iat_offset: int = 0,
        jti: str | None = None,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        alg: str = "ES384",
    ) -> str:
        now = int(time.time()) + iat_offset
        claims = {
            "iss": iss,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or str(uuid.uuid4()),
            "sub": "test-client",
        }
        hdr = {"kid": kid, "typ": "JWT"}
        hdr.update(headers or {})
        return jwt.encode(claims, key or signing_key, algorithm=alg, headers=hdr)

    return make


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "storage": {
                "database_url": f"sqlite:///{tmp_path}/feedback.db",
                "cache_url": f"sqlite:///{tmp_path}/replay.db",
            },
            "auth": {"required": False},
        }
        return load(None, overrides=merge(base, overrides))

    return build


@pytest.fixture
def client(settings_factory: Callable[..., Settings]):
    return create_app(settings_factory()).test_client()


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirServer]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fhir_server.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.startswith("PORT "), "the test FHIR server did not start"
    server = FhirServer(f"http://127.0.0.1:{int(line.split()[1])}", proc)
    yield server
    proc.terminate()
    proc.wait(timeout=5)


class FhirServer:
    """Handle on the FHIR server process: load resources, inject faults, read its log."""

    def __init__(self, base: str, proc: subprocess.Popen[str]) -> None:
        self.base = base
        self.proc = proc

    def control(self, **kw: Any) -> None:
        requests.post(f"{self.base}/_control", json=kw, timeout=5).raise_for_status()

    def reset(self, resources: list[dict[str, Any]] | None = None, **kw: Any) -> None:
        self.control(reset=True, resources=resources or [], **kw)

    def log(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.base}/_log", timeout=5).json()


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], LiveServer]]:
    started: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        srv = LiveServer(app)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


SHARED_SERVERS = {"pg_url", "redis_url"}  # the machine's PostgreSQL and Redis: one database, one keyspace


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under parallel workers (pytest-xdist, --dist loadgroup), the tests that use the machine's shared PostgreSQL
    database or Redis keyspace run in one group, one after another, on one worker; the rest spread out."""
    for item in items:
        if SHARED_SERVERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("shared-servers"))
