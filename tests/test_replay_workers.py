"""Replay holds with the defaults, and restarts refuse nobody (issue 21, item 5). Black box: `her2-cds serve
--workers 4` with the embedded defaults (no Redis: the jti store is the host's SQLite file, in the working
directory), real sockets, a fresh connection per request so that every worker answers some."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from .conftest import PUBLIC_BASE, TEST_ISS
from .own_servers import free_port, serve_workers, wait_up

PATH = "/cds-services"


@pytest.fixture
def served(tmp_path: Path, jwks):
    """Start `serve --workers 4` (max_requests from the test); yields (base URL, process, its output file)."""
    procs = []

    def start(max_requests: int = 10000) -> str:
        port = free_port()
        cfg = {"public_base_url": PUBLIC_BASE, "auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]}}
        path = tmp_path / "serve.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = (tmp_path / "serve.log").open("wb")
        proc = serve_workers(path, port, tmp_path, out, workers=4, HER2_CDS_MAX_REQUESTS=str(max_requests))
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_up(base, 40, what="serve --workers 4")
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=20)


def _get(base: str, token: str) -> int:
    with requests.Session() as s:  # a new connection: gunicorn's workers take turns accepting
        return s.get(base + PATH, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def test_one_token_sent_twelve_times_to_four_workers_is_accepted_once(served, make_token, tmp_path):
    """Sent at once, on twelve connections (the workers take turns accepting; the recycling test below proves
    that another process knows the token, whichever worker answers here)."""
    base = served()
    token = make_token(PUBLIC_BASE + PATH)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: _get(base, token), range(12)))
    assert statuses.count(200) == 1 and statuses.count(401) == 11, statuses
    assert (tmp_path / "her2-cds-replay.db").exists()  # the default store: the host's SQLite file


def test_recycled_workers_know_every_token_already_seen_and_refuse_none_issued_before(served, make_token):
    """Workers recycled every 20 requests: tokens issued before a worker started are accepted by it (no 503), and
    a token used before the recycling is still a replay after it."""
    base = served(max_requests=20)
    early = [make_token(PUBLIC_BASE + PATH) for _ in range(10)]
    used = make_token(PUBLIC_BASE + PATH)
    assert _get(base, used) == 200
    statuses = [_get(base, make_token(PUBLIC_BASE + PATH)) for _ in range(150)]  # every worker recycled, more than once
    assert set(statuses) == {200}, statuses
    assert [_get(base, t) for t in early] == [200] * 10
    assert _get(base, used) == 401


def test_a_slow_clock_within_the_leeway_is_not_refused_after_a_start(served, make_token):
    """An EHR whose clock is 20 s behind (leeway 30 s), right after the service starts: accepted, not 503."""
    base = served()
    assert _get(base, make_token(PUBLIC_BASE + PATH, iat_offset=-20)) == 200
