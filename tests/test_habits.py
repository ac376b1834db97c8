"""The habits an operator expects on the first afternoon: one JSON object per log line, a development server
that says so, --version, an offline `evaluate`, no temp directories left behind, a README example that works."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.cli import main
from cds_service.paths import hooks_dir
from cds_service.web.state import app_state

from .own_servers import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
SANDBOX_GUIDE = README.parent / "docs" / "sandbox.md"


def _serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "HER2_CDS_CONFIG")}
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--no-auth", "--port", str(port), *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    deadline = time.time() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc, port
        except requests.RequestException:
            assert proc.poll() is None and time.time() < deadline, "serve did not start"
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return [line for line in err.splitlines() if line.strip()]


def _call(port: int) -> None:
    body = json.loads((hooks_dir() / "examples" / "ultralow-hr-positive.patient-view.json").read_text())
    assert (
        requests.post(f"http://127.0.0.1:{port}/cds-services/her2-patient-view", json=body, timeout=10).status_code
        == 200
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_log_line_is_one_json_object(tmp_path, workers):
    proc, port = _serve(tmp_path, "--workers", workers)
    try:
        _call(port)
        time.sleep(0.3)
    finally:
        lines = _stop(proc)
    records = [json.loads(line) for line in lines]  # raises on any line that is not one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    requests_logged = [r for r in records if r["logger"] == "her2_cds.audit"]
    assert [r["route"] for r in requests_logged] == ["/cds-services/<service_id>"]
    assert requests_logged[0]["status"] == 200 and requests_logged[0]["cards"]
    assert not any("\x1b[" in line for line in lines)  # no terminal colour codes
    dev_warning = [r for r in records if "development server" in r["message"]]
    if workers == "1":
        assert dev_warning and dev_warning[0]["level"] == "WARNING" and "--workers" in dev_warning[0]["message"]
    else:
        assert not dev_warning and any(r["logger"].startswith("gunicorn") for r in records)
        assert list((tmp_path / "tmp").iterdir()) == []  # the metrics directory went with the server


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"her2-cds \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_evaluate_opens_no_database_and_contacts_no_cache(tmp_path, monkeypatch, capsys):
    """A configuration that names an unreachable PostgreSQL and Redis: evaluate still answers, offline, and
    leaves no file behind."""
    cfg = tmp_path / "prod.yaml"
    cfg.write_text("storage: {database_url: 'postgresql://u@127.0.0.1:1/none', cache_url: 'redis://127.0.0.1:1/0'}\n")
    monkeypatch.chdir(tmp_path)
    example = hooks_dir() / "examples" / "ultralow-hr-positive.patient-view.json"
    assert main(["evaluate", str(example), "--config", str(cfg), "--text"]) == 0
    assert "HER2" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod.yaml"]


def test_the_readme_configuration_example_is_valid_as_written(tmp_path, capsys):
    """The YAML block under README "Configuration", with the two files it names written beside it."""
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    block = section[section.index("```yaml\n") + 8 : section.index("```", section.index("```yaml\n") + 8)]
    (tmp_path / "her2-cds.yaml").write_text(block)
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    files = re.findall(r"jwks_file: (\S+)", block)
    assert files, "the README example no longer shows jwks_file"
    for name in files:
        (tmp_path / name).write_text(json.dumps({"keys": [dict(jwk, kid="test-client-1")]}))
    for name in re.findall(r"extra_files: \[(\S+?)\]", block):
        (tmp_path / name).write_text(
            json.dumps(
                {
                    "resourceType": "ValueSet",
                    "status": "active",
                    "url": "http://her2-cds.org/fhir/ValueSet/endocrine-therapy",
                    "compose": {
                        "include": [
                            {
                                "system": "urn:oid:1.2.3.local-formulary",
                                "concept": [{"code": "LET25", "display": "letrozole"}],
                            }
                        ]
                    },
                }
            )
        )
    assert main(["check-config", str(tmp_path / "her2-cds.yaml")]) == 0, capsys.readouterr().err


def test_the_readme_sandbox_configuration_works_with_a_sandbox_token(tmp_path, capsys, monkeypatch):
    """docs/sandbox.md: the YAML as written (its key file made at the path it names),
    then a call signed like the locally built sandbox signs it (its issuer, the public sandbox's jku)."""
    from cds_service.config import load
    from cds_service.web.app import create_app

    monkeypatch.chdir(tmp_path)  # the YAML's sqlite:///her2-cds.db is relative: never the checkout
    text = SANDBOX_GUIDE.read_text()
    section = text[text.index("# Trying it in the CDS Hooks sandbox") :]
    start = section.index("```yaml\n") + 8
    block = "\n".join(line.removeprefix("   ") for line in section[start : section.index("```", start)].splitlines())
    (tmp_path / "service").mkdir()
    cfg = tmp_path / "service" / "sandbox.yaml"
    cfg.write_text(block)
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = dict(json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), kid="sandbox-key", alg="ES384")
    [keys] = re.findall(r"jwks_file: (\S+)", block)
    (cfg.parent / keys).parent.mkdir(parents=True)
    (cfg.parent / keys).write_text(json.dumps({"keys": [jwk]}))
    assert main(["check-config", str(cfg)]) == 0, capsys.readouterr().err
    settings = load(cfg)
    path = "/cds-services/her2-patient-view"
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "https://sandbox.cds-hooks.org",
            "aud": settings.public_base_url + path,
            "iat": now,
            "exp": now + 300,
            "jti": "sandbox-1",
        },
        key,
        algorithm="ES384",
        headers={"kid": "sandbox-key", "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"},
    )
    body = json.loads((hooks_dir() / "examples" / "ultralow-hr-positive.patient-view.json").read_text())
    origin = sorted(settings.cors_origins)[0]
    resp = (
        create_app(settings)
        .test_client()
        .post(path, json=body, headers={"Authorization": f"Bearer {token}", "Origin": origin})
    )
    assert resp.status_code == 200 and resp.get_json()["cards"]
    assert resp.headers["Access-Control-Allow-Origin"] == origin


def test_serve_can_allow_a_sandbox_fhir_server_from_the_command_line(tmp_path):
    proc, _ = _serve(tmp_path, "--dev", "--allow-fhir-server", "http://localhost:8081/fhir")
    records = [json.loads(line) for line in _stop(proc)]
    [allowed] = [r["message"] for r in records if r["message"].startswith("FHIR fallback allowed to:")]
    assert "http://localhost:8081/fhir" in allowed and "https://launch.smarthealthit.org/v/r4/fhir" in allowed


def test_a_served_app_warms_itself_without_recording_anything(settings_factory, caplog):
    """serving_app (what gunicorn's workers and `serve` build) runs a shipped example through the whole path
    once: the value-set verdicts are filled, and no ledger row or repeat memory is left behind."""
    import sqlalchemy as sa

    from cds_service.web.app import serving_app

    caplog.set_level("INFO", logger="her2_cds")
    app = serving_app(settings_factory())
    state = app_state(app)
    assert state.engine.terminology.memoised_verdicts > 0  # the warm-up filled the value-set verdicts
    with_terms = [vs for vs in state.engine.terminology.sets.values() if vs.terms]
    assert with_terms and all(vs._regex is not None for vs in with_terms)  # every text regex compiled already
    assert any("warmed up in" in r.getMessage() for r in caplog.records)
    exposed = state.metrics.render()[0].decode()
    for service in state.services:  # the series every answered call touches exist already, at zero
        assert (
            f'her2cds_requests_total{{route="/cds-services/<service_id>",service="{service}",status="200"}} 0.0'
            in exposed
        )
    state.engine.ledger.flush()
    with state.store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cds_card_ledger")).scalar() == 0
        # the patient key is read (made) at start, not by the first card
        assert conn.execute(sa.text("SELECT count(*) FROM cds_site WHERE name = 'patient_key'")).scalar() == 1
    assert len(state.engine.facts) == 0  # the warm-up leaves nothing in the facts memo


def test_the_warm_up_records_are_valid_fhir_and_cover_every_type_read():
    """One record per FHIR type the service validates, each valid R4 (warm_models raises otherwise)."""
    from cds_service.fhir.validation import MODELS, WARM_UP_RECORDS, warm_models

    warm_models()
    assert sorted(r["resourceType"] for r in WARM_UP_RECORDS) == sorted(MODELS)


def test_the_wsgi_entry_point_tunes_its_process_and_the_factory_does_not(tmp_path, settings_factory):
    """gc.freeze and the collector's thresholds are the server entry point's business (process-wide), never the
    app factory's, which tests call many times."""
    import gc

    from cds_service.process import GC_THRESHOLDS
    from cds_service.web.app import create_app

    before = gc.get_threshold()
    create_app(settings_factory())
    assert gc.get_threshold() == before
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  database_url: sqlite:///{tmp_path}/w.db\nauth:\n  required: false\n")
    probe = "import gc, cds_service.wsgi; print(gc.get_threshold(), gc.get_freeze_count() > 0)"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "HER2_CDS_CONFIG": str(cfg)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip().splitlines()[-1] == f"{GC_THRESHOLDS} True", out.stderr[-500:]


def test_a_served_app_warms_its_token_verifier_without_accepting_anything(settings_factory, jwks, make_token):
    """The pinned keys' objects are built and one signature checked at start (the first ECDSA check imports
    OpenSSL's backend module, 3 ms, which the first call used to pay); the replay cache is untouched, and the first
    real token is then verified once, and refused when replayed."""
    from cds_service.web.app import serving_app
    from cds_service.web.jwt_verifier import _key_object

    from .conftest import TEST_ISS

    _key_object.cache_clear()
    settings = settings_factory(
        public_base_url="https://cds.test.example",
        auth={"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
    )
    app = serving_app(settings)
    assert _key_object.cache_info().currsize >= 1  # ES384 for the pinned EC key
    misses = _key_object.cache_info().misses
    state = app_state(app)
    assert len(state.replay) == 0  # the warm-up's token went to no replay cache
    token = make_token("https://cds.test.example/cds-services/her2-patient-view")
    claims = state.verifier.verify(f"Bearer {token}", "https://cds.test.example/cds-services/her2-patient-view")
    assert claims["iss"] == TEST_ISS
    assert _key_object.cache_info().misses == misses  # the first real token found its key built
    from cds_service.web.jwt_verifier import AuthError

    with pytest.raises(AuthError, match="replayed"):
        state.verifier.verify(f"Bearer {token}", "https://cds.test.example/cds-services/her2-patient-view")
