"""Every way of starting the service says the same things at start (gunicorn with the Docker image's command,
`her2-cds serve --workers N`, `her2-cds serve`), a production start refuses what would make it useless or
unsafe, and every configuration mistake is loud at `check-config` and at start (cds_service/startup.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cds_service.cli import main
from cds_service.config import load

from .conftest import PUBLIC_BASE, TEST_ISS
from .own_servers import free_port, serve_workers, wait_up

# what every start says, whatever starts it (a line each, as the banner words them)
SAID = (
    "configuration: ",
    "feedback database: sqlite:///",
    "jti replay cache: sqlite:///",
    f"trusted CDS clients (iss): {TEST_ISS} (keys pinned)",
    "no FHIR server allowed",
)


def _config(tmp_path: Path, jwks, **extra) -> Path:
    cfg = {
        "public_base_url": PUBLIC_BASE,
        "auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
        "storage": {"database_url": f"sqlite:///{tmp_path}/db.sqlite"},
        **extra,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "HER2_CDS_DEV", "HER2_CDS_CONFIG")
    }
    return env | extra


def _gunicorn(config: Path, port: int, cwd: Path, out) -> subprocess.Popen[bytes]:
    """The Docker image's command (docker/Dockerfile CMD), on a port of the test's."""
    env = _env(HER2_CDS_CONFIG=str(config), HER2_CDS_BIND=f"127.0.0.1:{port}", HER2_CDS_WORKERS="2")
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:cds_service.gunicorn_conf", "cds_service.wsgi:app"]
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _single(config: Path, port: int, cwd: Path, out) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "cds_service.cli", "serve", "--config", str(config), "--port", str(port)]
    return subprocess.Popen(argv, env=_env(), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _messages(log: Path) -> list[str]:
    """The message of each JSON log line (gunicorn's own lines included), and any plain line as it is."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(str(json.loads(line).get("message", line)))
        except (ValueError, AttributeError):
            out.append(line)
    return out


@pytest.mark.parametrize("how", ["gunicorn (the Docker image)", "serve --workers 2", "serve"])
def test_every_way_of_starting_says_the_same_things_once(tmp_path, jwks, how):
    config, port, log = _config(tmp_path, jwks), free_port(), tmp_path / "start.log"
    start = {"gunicorn (the Docker image)": _gunicorn, "serve --workers 2": serve_workers, "serve": _single}[how]
    with log.open("wb") as out:
        proc = start(config, port, tmp_path, out)
        try:
            wait_up(f"http://127.0.0.1:{port}", what=how)
        finally:
            proc.send_signal(signal.SIGTERM if how != "serve" else signal.SIGINT)
            proc.wait(timeout=30)
    said = _messages(log)
    for words in SAID:
        hits = [m for m in said if m.startswith(words) or words in m]
        assert len(hits) == 1, (how, words, said)  # said, and said once (not once per worker)
    assert not any("AUTHENTICATION IS OFF" in m for m in said)


REFUSALS = [
    ({"public_base_url": None}, "public_base_url is not set"),
    ({"auth": {"required": True, "issuers": []}}, "auth.issuers is empty: no CDS client is trusted"),
    ({"cards": {"snooze": {"patient-declind": {"days": 30}}}}, "did you mean 'patient-declined'?"),
    ({"ledger": {"patient_key_secret_file": "/nonexistent/her2-key"}}, "cannot read /nonexistent/her2-key"),
]


def _refused(tmp_path: Path, jwks, extra: dict) -> Path:
    config = _config(tmp_path, jwks)
    data = yaml.safe_load(config.read_text())
    data.update(extra)
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.mark.parametrize("extra, refusal", REFUSALS, ids=["no public URL", "nobody trusted", "snooze typo", "no key"])
def test_a_production_start_refuses_what_would_make_it_useless_or_unsafe(tmp_path, jwks, extra, refusal):
    """What start() says for each (the same function every way of starting calls)."""
    from cds_service.config import ConfigError
    from cds_service.startup import start

    try:
        said = start(load(_refused(tmp_path, jwks, extra)), production=True)
    except ConfigError as exc:
        said = str(exc)
    assert said is not None and refusal in said


@pytest.mark.parametrize(
    "how, case", [("gunicorn", 1), ("serve --workers 2", 2), ("gunicorn", 3)], ids=["gunicorn", "serve", "no key"]
)
def test_each_way_of_starting_stops_on_a_refusal(tmp_path, jwks, how, case):
    """Through real processes: gunicorn's master stops before any worker (exit 3), serve exits 2; a configuration
    error (the key file) stops them the same way. (No public URL: tests/test_production_guards.py.)"""
    extra, refusal = REFUSALS[case]
    start, code = {"gunicorn": (_gunicorn, 3), "serve --workers 2": (serve_workers, 2)}[how]
    log = tmp_path / "start.log"
    with log.open("wb") as out:
        proc = start(_refused(tmp_path, jwks, extra), free_port(), tmp_path, out)
        assert proc.wait(timeout=60) == code
    text = log.read_text(errors="replace")
    assert "refusing to start" in text and refusal in text, text[-2000:]


def test_development_modes_warn_and_start(tmp_path, jwks):
    from cds_service.startup import banner, refusal_to_serve

    settings = load(_config(tmp_path, jwks, public_base_url=None, auth={"required": True, "issuers": []}), dev=True)
    assert refusal_to_serve(settings) is None  # --dev trusts the sandbox and guesses the URL, loudly
    assert any("public_base_url is not set" in line for level, line in banner(settings) if level == "WARNING")


# --- mistakes that used to pass every check
def _check(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "check.yaml"
    path.write_text(text)
    code = main(["check-config", str(path)])  # a ConfigError is said on stderr, exit 2; a mistake, exit 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds 0 bytes; a key needs at least 16"),
        (b"short\n", "holds 5 bytes"),
    ],
)
def test_a_secret_file_that_holds_no_key_is_a_config_error(tmp_path, capsys, content, message):
    key = tmp_path / "key"
    key.write_bytes(content)
    code, said = _check(tmp_path, f"ledger: {{patient_key_secret_file: {key}}}\n", capsys)
    assert code != 0 and "ledger.patient_key_secret_file" in said and message in said
    assert content.strip().decode() not in said or not content.strip()  # the key itself is never printed


def test_a_secret_file_with_a_key_passes(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_bytes(os.urandom(24).hex().encode())
    code, said = _check(tmp_path, f"ledger: {{patient_key_secret_file: {key}}}\n", capsys)
    assert code == 0 and "configuration is valid" in said


def test_a_snooze_rule_must_name_an_override_reason_the_cards_offer(tmp_path, capsys):
    code, said = _check(tmp_path, "cards: {snooze: {patient-declind: {days: 30}}}\n", capsys)
    assert code == 1  # the file is valid YAML and schema: the mistake is found against the cards
    assert "cards.snooze.patient-declind: no card offers this override reason" in said
    assert "did you mean 'patient-declined'?" in said
    code, said = _check(tmp_path, "cards: {snooze: {patient-declined: {days: 30}}}\n", capsys)
    assert code == 0


def test_a_production_config_check_says_what_a_production_start_would_refuse(tmp_path, capsys):
    code, said = _check(tmp_path, "auth: {required: true}\n", capsys)
    assert code == 0 and "configuration is valid" in said
    assert "a production start (gunicorn, serve --workers N) refuses it: public_base_url is not set" in said


ENDOCRINE = "http://her2-cds.org/fhir/ValueSet/endocrine-therapy"


def _local_vs(tmp_path: Path, include: dict) -> Path:
    vs = {"resourceType": "ValueSet", "id": "local", "url": ENDOCRINE, "status": "active",
          "compose": {"include": [include]}}  # fmt: skip
    path = tmp_path / "local-vs.json"
    path.write_text(json.dumps(vs))
    return path


@pytest.mark.parametrize(
    "include, message",
    [
        (
            {
                "system": "http://snomed.info/sct",
                "filter": [{"property": "concept", "op": "is-a", "value": "76232005"}],
            },
            "is-a in http://snomed.info/sct needs a terminology server",
        ),
        (
            {"system": "http://loinc.org", "filter": [{"property": "concept", "op": "is-a", "value": "LP1"}]},
            "ship the expansion instead",
        ),
        (
            {"system": "http://snomed.info/sctt", "concept": [{"code": "76232005"}]},
            "'http://snomed.info/sctt' is not a code system records use; did you mean 'http://snomed.info/sct'?",
        ),
        (
            {"system": "https://loinc.org", "concept": [{"code": "1234-5"}]},
            "did you mean 'http://loinc.org'?",
        ),
    ],
    ids=["SNOMED is-a", "LOINC is-a", "sctt", "https loinc"],
)
def test_a_local_value_set_the_service_cannot_evaluate_is_refused_with_the_way_out(tmp_path, capsys, include, message):
    path = _local_vs(tmp_path, include)
    code, said = _check(tmp_path, f"value_sets: {{extra_files: [{path}]}}\n", capsys)
    assert code != 0 and message in said


@pytest.mark.parametrize(
    "include",
    [
        {
            "system": "http://www.whocc.no/atc",
            "filter": [{"property": "concept", "op": "is-a", "value": "L02BX"}],
        },  # a class not shipped
        {"system": "http://hospital.example.org/fhir/CodeSystem/formulary", "concept": [{"code": "LET25"}]},
    ],
    ids=["ATC is-a: a code that spells its parents", "a site's own code system"],
)
def test_what_the_service_can_evaluate_passes(tmp_path, capsys, include):
    path = _local_vs(tmp_path, include)
    code, said = _check(tmp_path, f"value_sets: {{extra_files: [{path}]}}\n", capsys)
    assert code == 0 and "configuration is valid" in said


def test_the_shipped_value_sets_use_is_a_only_where_codes_spell_their_parents():
    from cds_service.fhir.terminology import CODE_PREFIX_HIERARCHIES
    from cds_service.paths import profiles_dir

    for path in profiles_dir().glob("ValueSet-*.json"):
        for inc in (json.loads(path.read_text()).get("compose") or {}).get("include", []):
            if inc.get("filter"):
                assert inc["system"] in CODE_PREFIX_HIERARCHIES, (path.name, inc["system"])


def test_a_snooze_rule_may_name_the_hl7_code_the_card_offers(tmp_path, capsys):
    code, said = _check(tmp_path, "cards: {snooze: {patient-refuses: {days: 30}}}\n", capsys)
    assert code == 0, said
    code, said = _check(tmp_path, "cards: {snooze: {patient-refuse: {days: 30}}}\n", capsys)
    assert code == 1 and "did you mean 'patient-refuses'?" in said
