"""JWT verification with real signed tokens (ES384 / RS384) and every way a token can be wrong."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.web.app import create_app

from .conftest import PUBLIC_BASE, TEST_ISS

DISCOVERY = f"{PUBLIC_BASE}/cds-services"


@pytest.fixture
def secured(settings_factory, jwks):
    def build(**auth):
        cfg = {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}], **auth}
        return create_app(settings_factory(auth=cfg, public_base_url=PUBLIC_BASE)).test_client()

    return build


def _get(client, token, path="/cds-services"):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_valid_token_is_accepted(secured, make_token):
    assert _get(secured(), make_token(DISCOVERY)).status_code == 200


def test_audience_tolerates_trailing_slash(secured, make_token):
    assert _get(secured(), make_token(DISCOVERY + "/")).status_code == 200


def test_feedback_audience_ends_in_feedback(secured, make_token):
    c = secured()
    body = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]}
    url = f"{PUBLIC_BASE}/cds-services/her2-order-select"
    wrong = c.post(
        "/cds-services/her2-order-select/feedback", json=body, headers={"Authorization": f"Bearer {make_token(url)}"}
    )
    assert wrong.status_code == 401
    right = c.post(
        "/cds-services/her2-order-select/feedback",
        json=body,
        headers={"Authorization": f"Bearer {make_token(url + '/feedback')}"},
    )
    assert right.status_code == 200


def _unsigned(aud):
    now = int(time.time())
    return jwt.encode(
        {"iss": TEST_ISS, "aud": aud, "iat": now, "exp": now + 60, "jti": "n"},
        None,
        algorithm="none",
        headers={"kid": "k1"},
    )


def _hs256_with_public_key(jwks, aud):
    now = int(time.time())
    secret = json.dumps(jwks["keys"][0]).encode()
    import base64
    import hashlib
    import hmac

    def b64(d):
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"iss": TEST_ISS, "aud": aud, "iat": now, "exp": now + 60, "jti": "h"}).encode())
    sig = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(sig)}"


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "garbage",
        "alg-none",
        "hs256-public-key",
        "wrong-kid",
        "missing-kid-several-keys",
        "untrusted-iss",
        "wrong-aud",
        "expired",
        "not-yet-valid",
        "too-long-lived",
        "other-key",
        "rs384-not-allowed",
    ],
)
def test_bad_tokens_are_401_without_detail(secured, make_token, jwks, case):
    c = secured()
    if case == "missing":
        resp = c.get("/cds-services")
    else:
        token = {
            "garbage": lambda: "not.a.jwt",
            "alg-none": lambda: _unsigned(DISCOVERY),
            "hs256-public-key": lambda: _hs256_with_public_key(jwks, DISCOVERY),
            "wrong-kid": lambda: make_token(DISCOVERY, kid="k9"),
            "untrusted-iss": lambda: make_token(DISCOVERY, iss="https://evil.example"),
            "wrong-aud": lambda: make_token(f"{PUBLIC_BASE}/cds-services/her2-order-sign"),
            "expired": lambda: make_token(DISCOVERY, iat_offset=-1000, lifetime=300),
            "not-yet-valid": lambda: make_token(DISCOVERY, iat_offset=600),
            "too-long-lived": lambda: make_token(DISCOVERY, lifetime=7 * 24 * 3600),
            "other-key": lambda: make_token(DISCOVERY, key=ec.generate_private_key(ec.SECP384R1())),
            "rs384-not-allowed": lambda: make_token(
                DISCOVERY, alg="RS384", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
            "missing-kid-several-keys": lambda: jwt.encode(
                {"iss": TEST_ISS, "aud": DISCOVERY, "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "x"},
                ec.generate_private_key(ec.SECP384R1()),
                algorithm="ES384",
            ),
        }[case]()
        if case == "rs384-not-allowed":
            c = secured(algorithms=["ES384"])
        if case == "missing-kid-several-keys":
            second = dict(jwks["keys"][0], kid="k2")
            c = secured(issuers=[{"iss": TEST_ISS, "jwks": {"keys": [jwks["keys"][0], second]}}])
        resp = _get(c, token)
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "unauthorized"}


def test_replayed_jti_is_refused(secured, make_token):
    c = secured()
    token = make_token(DISCOVERY, jti="once")
    assert _get(c, token).status_code == 200
    assert _get(c, token).status_code == 401


def test_rs384_token_accepted_when_key_is_rsa(settings_factory, make_token):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "r1"
    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": {"keys": [jwk]}}]},
            public_base_url=PUBLIC_BASE,
        )
    )
    token = make_token(DISCOVERY, kid="r1", key=key, alg="RS384")
    assert _get(app.test_client(), token).status_code == 200


class _JwksServer:
    """A local JWKS endpoint whose key set can be rotated; counts fetches."""

    def __init__(self, jwks):
        self.jwks = jwks
        self.fetches = 0
        self.delay = 0.0  # seconds before answering
        self.status = 200
        self.padding = 0  # extra bytes in the body (a huge key set)
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.fetches += 1
                time.sleep(outer.delay)
                data = dict(outer.jwks, padding="x" * outer.padding) if outer.padding else outer.jwks
                body = json.dumps(data).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_jwks_url_fetched_cached_and_refetched_on_unknown_kid(settings_factory, make_token, jwks, monkeypatch):
    srv = _JwksServer({"keys": []})
    try:
        app = create_app(
            settings_factory(
                auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks_url": srv.url}]},
                public_base_url=PUBLIC_BASE,
            )
        )
        c = app.test_client()
        assert _get(c, make_token(DISCOVERY)).status_code == 401  # kid k1 not published yet
        srv.jwks = jwks
        from cds_service.web import jwt_verifier as auth

        monkeypatch.setattr(auth, "JWKS_REFETCH_SECONDS", 0)  # no 30 s wait before a re-fetch
        assert _get(c, make_token(DISCOVERY)).status_code == 200
        fetches = srv.fetches
        assert _get(c, make_token(DISCOVERY)).status_code == 200
        assert srv.fetches == fetches  # cached
        token = make_token(DISCOVERY, headers={"jku": srv.url})
        assert _get(c, token).status_code == 200  # jku equal to the configured URL
    finally:
        srv.server.shutdown()


def test_a_jku_other_than_the_configured_jwks_url_is_refused(settings_factory, make_token, jwks, key_server):
    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks_url": key_server.url}]},
            public_base_url=PUBLIC_BASE,
        )
    ).test_client()
    assert _get(app, make_token(DISCOVERY, headers={"jku": "https://evil.example/jwks"})).status_code == 401
    assert _get(app, make_token(DISCOVERY, headers={"jku": key_server.url})).status_code == 200


SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


def test_pinned_keys_ignore_the_jku_but_still_check_the_signature(secured, make_token, key_server, caplog):
    """The CDS Hooks sandbox, built locally, signs with its own key and always names the public sandbox's
    jku: with the issuer's keys pinned, the jku is never fetched and never a reason to refuse."""
    c = secured()
    with caplog.at_level("INFO", logger="her2_cds.auth"):
        assert _get(c, make_token(DISCOVERY, headers={"jku": SANDBOX_JKU})).status_code == 200
        assert _get(c, make_token(DISCOVERY, headers={"jku": key_server.url})).status_code == 200
    assert key_server.fetches == 0
    assert "jku" in caplog.text and "ignored" in caplog.text and "pinned" in caplog.text
    assert caplog.text.count("ignored") == 1  # once per issuer, not once per token
    forged = make_token(DISCOVERY, headers={"jku": key_server.url}, key=ec.generate_private_key(ec.SECP384R1()))
    assert _get(c, forged).status_code == 401  # the key behind the jku is not trusted


def test_keys_pinned_in_a_jwks_file_next_to_the_configuration(tmp_path, make_token, jwks):
    from cds_service.config import ConfigError, load

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sandbox-jwks.json").write_text(json.dumps(jwks))
    cfg = tmp_path / "her2-cds.yaml"
    cfg.write_text(
        f"public_base_url: {PUBLIC_BASE}\nstorage: {{database_url: 'sqlite://'}}\n"
        f"auth: {{required: true, issuers: [{{iss: '{TEST_ISS}', jwks_file: keys/sandbox-jwks.json}}]}}\n"
    )
    c = create_app(load(cfg)).test_client()
    assert _get(c, make_token(DISCOVERY, headers={"jku": SANDBOX_JKU})).status_code == 200
    assert _get(c, make_token(DISCOVERY, key=ec.generate_private_key(ec.SECP384R1()))).status_code == 401
    (tmp_path / "keys" / "sandbox-jwks.json").write_text('{"keys": "none"}')
    with pytest.raises(ConfigError, match=r"auth.issuers\[0\].jwks_file: .*sandbox-jwks.json is not a JWK Set"):
        load(cfg)
    (tmp_path / "keys" / "sandbox-jwks.json").unlink()
    with pytest.raises(ConfigError, match=r"jwks_file: cannot read .*sandbox-jwks.json"):
        load(cfg)


def test_auth_off_needs_no_token(settings_factory):
    c = create_app(settings_factory(auth={"required": False})).test_client()
    assert c.get("/cds-services").status_code == 200


@pytest.fixture
def key_server(jwks):
    """A local JWKS endpoint for one test, shut down after it."""
    srv = _JwksServer(jwks)
    yield srv
    srv.server.shutdown()


def _two_issuers(settings_factory, srv_url, jwks):
    other = "https://other-ehr.example"
    app = create_app(
        settings_factory(
            auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks_url": srv_url}, {"iss": other, "jwks": jwks}]},
            public_base_url=PUBLIC_BASE,
        )
    )
    return app, other


def test_a_slow_key_server_delays_only_its_own_issuer_and_is_fetched_once(
    settings_factory, make_token, jwks, key_server
):
    from concurrent.futures import ThreadPoolExecutor

    key_server.delay = 5.0
    app, other = _two_issuers(settings_factory, key_server.url, jwks)

    def call(iss):
        started = time.monotonic()
        status = _get(app.test_client(), make_token(DISCOVERY, iss=iss)).status_code
        return status, time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(call, TEST_ISS) for _ in range(6)]
        time.sleep(0.2)
        fast = pool.submit(call, other).result()
        slow = [f.result() for f in slow]
    assert fast[0] == 200 and fast[1] < 0.5
    assert all(status == 401 and took < 4.5 for status, took in slow), slow
    assert key_server.fetches == 1  # one fetch in flight; the others waited for it, then backed off


def test_a_failing_key_server_is_backed_off_not_fetched_by_every_token(settings_factory, make_token, jwks, key_server):
    key_server.status = 500
    c = _two_issuers(settings_factory, key_server.url, jwks)[0].test_client()
    for _ in range(5):
        assert _get(c, make_token(DISCOVERY)).status_code == 401
    assert key_server.fetches == 1
    metrics = c.get("/metrics").get_data(as_text=True)
    assert 'her2cds_auth_failures_total{reason="cannot fetch JWKS"} 5.0' in metrics


def test_a_huge_key_set_is_not_read_whole(settings_factory, make_token, jwks, key_server):
    key_server.padding = 3_000_000
    app, _ = _two_issuers(settings_factory, key_server.url, jwks)
    assert _get(app.test_client(), make_token(DISCOVERY)).status_code == 401
    assert key_server.fetches == 1
