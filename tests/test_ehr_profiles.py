"""docs/integration.md, checked: every EHR configuration it shows is a valid configuration, and the service
accepts the tokens that EHR sends, in that EHR's shape (algorithm, jku, nbf earlier than iat, sub, the iss and
aud forms), and refuses the same token with a changed issuer or audience. The key sets are served from
127.0.0.1 in place of the vendor's URL (no network here)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.config import load
from cds_service.fhir.terminology import load_terminology
from cds_service.startup import problems
from cds_service.web.app import create_app

from .fixtures import patients
from .helpers import hook_request, prefetch_from
from .test_auth import _JwksServer

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "integration.md"
BLOCK = re.compile(r"<!-- ehr: ([a-z-]+) -->\s*```yaml\n(.*?)```", re.S)


def profiles() -> dict[str, dict[str, Any]]:
    found = {name: yaml.safe_load(text) for name, text in BLOCK.findall(GUIDE.read_text("utf-8"))}
    assert {"epic", "oracle-health", "athenaone"} <= set(found), sorted(found)
    return found


# what each EHR sends: (algorithm, jku header, nbf seconds before iat, the hook it calls)
SHAPES = {
    "epic": ("RS384", True, 60, "order-select"),
    "oracle-health": ("ES384", False, 0, "patient-view"),
    "athenaone": ("RS384", False, 0, "order-sign"),
}


def _key(alg: str) -> tuple[Any, dict[str, Any]]:
    if alg.startswith("RS"):
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="ehr-1", alg=alg, use="sig")
    return key, jwk


def _token(key: Any, alg: str, iss: str, aud: str, jku: str | None, nbf_before: int) -> str:
    now = int(time.time())
    claims = {"iss": iss, "sub": "her2-cds-client", "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    if nbf_before:
        claims["nbf"] = now - nbf_before
    headers = {"kid": "ehr-1", "typ": "JWT", **({"jku": jku} if jku else {})}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_ehr_configuration_in_the_guide_is_valid(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(profiles()[name]))
    settings = load(path)
    assert problems(settings, load_terminology(settings.value_set_files)) == []
    assert settings.auth.required and settings.auth.issuers and settings.public_base_url


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_ehr_gets_its_cards_with_the_tokens_it_sends(name, tmp_path):
    alg, with_jku, nbf_before, hook = SHAPES[name]
    cfg = profiles()[name]
    key, jwk = _key(alg)
    keys = _JwksServer({"keys": [jwk]})
    try:
        issuer = cfg["auth"]["issuers"][0]
        issuer["jwks_url"] = keys.url  # the vendor's key URL, served here
        cfg["storage"] = {"database_url": f"sqlite:///{tmp_path}/db.sqlite", "cache_url": "memory://"}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        client = create_app(load(path)).test_client()
        route = f"/cds-services/her2-{hook}"
        aud = cfg["public_base_url"] + route
        body = hook_request(hook, prefetch=prefetch_from(patients.builta_binary_only()))
        if hook != "patient-view":
            from .fixtures import builders as b

            body = hook_request(
                hook,
                prefetch=prefetch_from(patients.builta_binary_only()),
                draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="d1")],
            )
        jku = keys.url if with_jku else None
        good = _token(key, alg, issuer["iss"], aud, jku, nbf_before)
        resp = client.post(route, json=body, headers={"Authorization": f"Bearer {good}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        shadow = (cfg.get("cards") or {}).get("her2_rescore", {}).get("mode") == "shadow"  # recorded, not shown
        assert [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]] == ([] if shadow else ["her2-rescore"])
        for wrong in (
            _token(key, alg, issuer["iss"] + "/", aud, jku, nbf_before),  # another issuer string
            _token(key, alg, issuer["iss"], cfg["public_base_url"] + "/cds-services/her2-other", jku, nbf_before),
        ):
            assert client.post(route, json=body, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    finally:
        keys.server.shutdown()
