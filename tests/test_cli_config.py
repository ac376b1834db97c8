"""Configuration validation, local value sets, the CLI (check-config, evaluate, serve) and the examples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cds_service.cli import main
from cds_service.config import ConfigError, load
from cds_service.fhir.terminology import load_terminology
from cds_service.paths import hooks_dir

from .helpers import assert_cds_response

EXAMPLES = {
    "builta-binary-only.patient-view": ["her2-rescore"],
    "builta-her2-low.order-select-eribulin": ["tdxd-consideration"],
    "builta-after-pneumonitis.order-sign-tdxd": ["ild-monitoring"],
    "bell.order-select-ribociclib": ["tdxd-consideration"],
    "bell.order-sign-tdxd-gastric-dose": ["ild-monitoring"],
    "ultralow-hr-positive.patient-view": ["tdxd-consideration"],
    "her2-positive.patient-view": [],
    "triple-negative-her2-low.patient-view": ["tdxd-consideration"],
}


def test_every_example_is_listed():
    assert {p.stem for p in (hooks_dir() / "examples").glob("*.json")} == set(EXAMPLES)


@pytest.mark.parametrize("name, topics", EXAMPLES.items())
def test_examples_give_their_cards(name, topics, capsys):
    code = main(["evaluate", str(hooks_dir() / "examples" / f"{name}.json")])
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    cards = assert_cds_response(body)
    assert [c["source"]["topic"]["code"] for c in cards] == topics


def test_evaluate_text_form(capsys):
    main(["evaluate", str(hooks_dir() / "examples" / "bell.order-sign-tdxd-gastric-dose.json"), "--text"])
    out = capsys.readouterr().out
    assert "WARNING · ild-monitoring" in out and "6.4 mg/kg" in out and "→ suggestion" in out


def test_evaluate_bad_file(tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text("{")
    assert main(["evaluate", str(bad)]) == 1
    assert "cannot read" in capsys.readouterr().out


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "her2-cds.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "yaml_text, where, what",
    [
        ("auth:\n  algorithms: [HS256]\n", "auth.algorithms[0]", "is not one of"),
        ("auth:\n  issuers:\n    - iss: x\n", "auth.issuers[0]", ""),
        (
            "cards:\n  her2_rescore: {enabled: yes, stale_after_months: 0}\n",
            "cards.her2_rescore.stale_after_months",
            "",
        ),
        ("fhir:\n  allowed_servers: [ftp://x]\n", "fhir.allowed_servers[0]", ""),
        ("storage:\n  database_url: mysql://x\n", "storage.database_url", ""),
        ("cards:\n  texts: {tdxd.summary: hi}\n", "cards.texts", ""),
        ("surprise: 1\n", "(top level)", "surprise"),
        ("- a list\n", "(top level)", "mapping"),
        ("auth: [\n", "", "not valid YAML"),
    ],
)
def test_config_errors_name_file_path_and_problem(tmp_path, yaml_text, where, what):
    path = _write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load(path)
    message = str(err.value)
    assert path in message and where in message and what in message


def test_check_config_command(tmp_path, capsys):
    good = _write(tmp_path, "public_base_url: https://cds.example.org\ncards:\n  ild_monitoring: {enabled: false}\n")
    assert main(["check-config", good]) == 0
    assert "valid" in capsys.readouterr().out
    bad = _write(tmp_path, "limits: {max_body_bytes: 1}\n")
    assert main(["check-config", bad]) == 2
    assert "limits.max_body_bytes" in capsys.readouterr().err


def test_docker_files_point_at_real_parts(tmp_path):
    """No Docker engine here: check what the image and compose file rely on instead. The compose
    configuration validates, and the Dockerfile's gunicorn command names modules that import (in a
    separate process: the gunicorn settings set PROMETHEUS_MULTIPROC_DIR for the workers)."""
    import yaml

    root = Path(__file__).resolve().parents[1] / "docker"
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    mounted = compose["services"]["her2-cds"]["volumes"][0].split(":")[0]
    seed = compose["services"]["seed"]["command"]
    assert seed[:2] == ["her2-cds", "seed"] and "http://fhir:8080/fhir" in seed  # the HAPI server compose starts
    assert compose["services"]["proxy"]["ports"] == ["8080:8080"] and "ports" not in compose["services"]["her2-cds"]
    assert main(["check-config", str(root / mounted)]) == 0
    dockerfile = (root / "Dockerfile").read_text().splitlines()
    cmd = json.loads(next(line for line in dockerfile if line.startswith("CMD "))[4:])
    conf, (module, attr) = cmd[cmd.index("-c") + 1].removeprefix("python:"), cmd[-1].split(":")
    probe = (
        f"import importlib; c = importlib.import_module({conf!r}); w = importlib.import_module({module!r}); "
        f"assert c.bind and c.workers >= 1 and callable(getattr(w, {attr!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HER2_CDS_CONFIG", "HER2_CDS_DEV")}
    bare = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bare.returncode == 3 and "refusing to start: public_base_url is not set" in bare.stderr  # no config
    (tmp_path / "min.yaml").write_text("public_base_url: https://cds.example.org\n")
    env["HER2_CDS_CONFIG"] = str(tmp_path / "min.yaml")
    nobody = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert nobody.returncode == 3 and "auth.issuers is empty: no CDS client is trusted" in nobody.stderr
    (tmp_path / "min.yaml").write_text(
        "public_base_url: https://cds.example.org\n"
        "auth: {issuers: [{iss: https://ehr.example.org, jwks_url: https://ehr.example.org/jwks}]}\n"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, timeout=60)
    # the default SQLite file lands in the working directory, which must be the service user's /data
    assert (tmp_path / "her2-cds.db").exists()
    assert dockerfile.index("WORKDIR /data") > dockerfile.index("USER cds")


def test_config_from_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("HER2_CDS_CONFIG", _write(tmp_path, "cards:\n  her2_rescore: {enabled: false}\n"))
    assert load().cards.topics["her2_rescore"].enabled is False


def test_local_value_set_adds_codes_without_touching_ours(tmp_path):
    local = {
        "resourceType": "ValueSet",
        "id": "local-endocrine",
        "status": "active",
        "url": "http://her2-cds.org/fhir/ValueSet/endocrine-therapy",
        "compose": {
            "include": [
                {"system": "urn:oid:1.2.3.local-formulary", "concept": [{"code": "LET25", "display": "letrozole"}]}
            ]
        },
    }
    path = tmp_path / "local.json"
    path.write_text(json.dumps(local))
    ts = load_terminology([str(path)])
    hit = ts.classify_drug({"coding": [{"system": "urn:oid:1.2.3.local-formulary", "code": "LET25"}]})
    assert hit and hit.value_set == "endocrine-therapy" and hit.by == "code"
    assert (
        load_terminology().classify_drug({"coding": [{"system": "urn:oid:1.2.3.local-formulary", "code": "LET25"}]})
        is None
    )


def test_malformed_value_set_stops_start_up(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default sqlite:///her2-cds.db is relative: never the checkout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "ValueSet", "status": "active", "compose": {"include": "letrozole"}}))
    cfg = _write(tmp_path, f"value_sets:\n  extra_files: [{bad}]\n")
    assert main(["check-config", cfg]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "compose" in err
    with pytest.raises(ConfigError):
        from cds_service.web.app import create_app

        create_app(load(cfg))


LOCAL_SYSTEM = "urn:oid:1.2.3.local-formulary"
ENDOCRINE = "http://her2-cds.org/fhir/ValueSet/endocrine-therapy"


def _local_vs(tmp_path, **fields) -> str:
    path = tmp_path / "local-vs.json"
    path.write_text(json.dumps({"resourceType": "ValueSet", "status": "active", **fields}))
    return str(path)


def _letrozole_matches(files) -> bool:
    hit = load_terminology(files).classify_drug({"coding": [{"system": LOCAL_SYSTEM, "code": "LET25"}]})
    return bool(hit) and hit.value_set == "endocrine-therapy"


@pytest.mark.parametrize("form", ["versioned canonical", "expansion", "nested expansion"])
def test_local_value_sets_in_the_forms_terminology_servers_return_are_read(tmp_path, form):
    concept = {"system": LOCAL_SYSTEM, "code": "LET25", "display": "Letrozole 2.5 mg (formulary)"}
    fields = {
        "versioned canonical": {
            "url": ENDOCRINE + "|2.1.0",
            "compose": {"include": [{"system": LOCAL_SYSTEM, "concept": [{"code": "LET25"}]}]},
        },
        "expansion": {"url": ENDOCRINE, "expansion": {"timestamp": "2026-11-01T00:00:00Z", "contains": [concept]}},
        "nested expansion": {
            "url": ENDOCRINE,
            "expansion": {
                "timestamp": "2026-11-01T00:00:00Z",
                "contains": [{"abstract": True, "display": "aromatase inhibitors", "contains": [concept]}],
            },
        },
    }[form]
    assert _letrozole_matches([_local_vs(tmp_path, **fields)])


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {
                "url": "http://her2-cds.org/fhir/ValueSet/endocrine-therapies",
                "compose": {"include": [{"system": LOCAL_SYSTEM, "concept": [{"code": "LET25"}]}]},
            },
            "matches none of this service's value sets; did you mean " + ENDOCRINE,
        ),
        (
            {
                "url": "http://hospital.example/ValueSet/endocrine",
                "compose": {"include": [{"system": LOCAL_SYSTEM, "concept": [{"code": "LET25"}]}]},
            },
            "matches none of this service's value sets; ours start with http://her2-cds.org/fhir/ValueSet/",
        ),
        (
            {"url": ENDOCRINE, "compose": {"include": [{"concept": [{"code": "LET25"}]}]}},
            "compose.include[0] has no system",
        ),
        (
            {"url": ENDOCRINE, "compose": {"include": [{"valueSet": ["http://hospital.example/ValueSet/ai"]}]}},
            "compose.include[0].valueSet is not supported",
        ),
        (
            {
                "url": ENDOCRINE,
                "compose": {
                    "include": [
                        {
                            "system": LOCAL_SYSTEM,
                            "filter": [{"property": "concept", "op": "descendent-of", "value": "AI"}],
                        }
                    ]
                },
            },
            "only op 'is-a' is supported",
        ),
        (
            {"url": ENDOCRINE, "expansion": {"timestamp": "2026-11-01T00:00:00Z", "contains": [{"code": "LET25"}]}},
            "code(s) LET25 have no system",
        ),
        ({"url": ENDOCRINE}, "adds no code to endocrine-therapy"),
        (
            {
                "url": ENDOCRINE,
                "compose": {
                    "include": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "concept": [{"code": "72965"}]}
                    ]
                },
            },
            "adds no code to endocrine-therapy",
        ),
    ],
)
def test_a_local_value_set_that_would_be_ignored_stops_check_config(tmp_path, capsys, fields, reason):
    path = _local_vs(tmp_path, **fields)
    cfg = _write(tmp_path, f"value_sets:\n  extra_files: [{path}]\n")
    assert main(["check-config", cfg]) == 2
    err = capsys.readouterr().err
    assert path in err and reason in err, err


def test_check_config_says_what_each_local_value_set_added(tmp_path, capsys):
    path = _local_vs(
        tmp_path,
        url=ENDOCRINE,
        compose={
            "include": [{"system": LOCAL_SYSTEM, "concept": [{"code": "LET25", "display": "Letrozole (formulary)"}]}]
        },
    )
    cfg = _write(tmp_path, f"value_sets:\n  extra_files: [{path}]\n")
    assert main(["check-config", cfg]) == 0
    out = capsys.readouterr().out
    assert f"{path}: adds 2 codes or terms to endocrine-therapy" in out and "configuration is valid" in out


def test_serve_starts_says_what_it_uses_and_answers(tmp_path):
    env = {**os.environ, "HER2_CDS_CONFIG": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--port", "0", "--dev"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = []
        deadline = time.time() + 20
        while time.time() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "listening" in line or "Running on" in line:
                break
        text = "".join(lines)
        assert "configuration: embedded defaults" in text
        assert "sqlite:///her2-cds.db" in text and "sqlite:///her2-cds-replay.db" in text  # jti cache: this host's
        assert "sandbox.cds-hooks.org" in text and "!!!" in text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_serve_without_config_trusts_nobody(tmp_path):
    from .own_servers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HER2_CDS_CONFIG": ""},
        cwd=tmp_path,
    )
    try:
        text = ""
        deadline = time.time() + 20
        while time.time() < deadline and "listening" not in text:
            text += proc.stderr.readline()
        assert "no CDS client is trusted yet" in text
        for _ in range(50):
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert resp.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_serve_with_workers_runs_gunicorn_and_adds_up_metrics(tmp_path):
    """`serve --workers 2`: gunicorn with the production settings; /metrics counts every worker's
    requests whichever worker answers it."""
    from .own_servers import free_port

    port = free_port()
    env = {**os.environ, "HER2_CDS_CONFIG": ""}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2", "--no-auth"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        for _ in range(20):
            with requests.Session() as fresh:  # new connections spread over the workers
                assert fresh.get(f"{base}/cds-services", timeout=5).status_code == 200
        for _ in range(4):
            text = requests.get(f"{base}/metrics", timeout=5).text
            assert 'her2cds_requests_total{route="/cds-services",service="unknown",status="200"} 20.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=20)[1]
    assert "Booting worker" in err
