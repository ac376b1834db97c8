"""README is a guide whose every command works: each command in its `sh` blocks is run here as written (ports
and paths made the test's own), or named with the test or CI step that runs it; and it stays short."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cds_service.cli import main

from .own_servers import free_port, wait_up

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent

# commands this test does not run itself, and what runs them
ELSEWHERE = {
    "python3 -m venv .venv && .venv/bin/pip install -q -e .": ".ci/run (a fresh clone installs the same way)",
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest': ".ci/run",
    "docker compose -f docker/compose.yaml up --build": (
        "tests/test_cli_config.py::test_docker_files_point_at_real_parts (no Docker engine here: the compose "
        "configuration is checked and the image's command is run)"
    ),
}


def commands() -> list[str]:
    """Every command of README's sh blocks, continuation lines joined, comments dropped."""
    text = README.read_text("utf-8")
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.strip()
            line = re.sub(r"\s+#.*$", "", line)
            if line:
                out.append(line)
    return out


def test_readme_is_a_guide_under_350_lines():
    lines = README.read_text("utf-8").splitlines()
    assert len(lines) < 350, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:3] == ["## Quick start", "## Cards", "## Configuration"], headings
    for link in re.findall(r"\]\((docs/[^)#]+)", README.read_text("utf-8")):
        assert (ROOT / link).exists(), link


def test_every_command_is_run_by_a_test_or_ci():
    ran_here = {c for c in commands() if c.startswith((".venv/bin/her2-cds", "curl ", "HER2_CDS_CONFIG="))}
    others = set(commands()) - ran_here
    assert others <= set(ELSEWHERE), sorted(others - set(ELSEWHERE))
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest' in ci
    assert "test_docker_files_point_at_real_parts" in (ROOT / "tests" / "test_cli_config.py").read_text()


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith(".venv/bin/her2-cds evaluate")])
def test_the_evaluate_commands_as_written(command, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("HER2_CDS_CONFIG", raising=False)
    assert main(shlex.split(command)[1:]) == 0
    assert capsys.readouterr().out.strip()


def test_serve_no_auth_and_the_curl_as_written(tmp_path):
    """`her2-cds serve --no-auth --port 8080 &`, then the curl (on a free port, from a scratch directory)."""
    serve = next(c for c in commands() if c.startswith(".venv/bin/her2-cds serve"))
    curl = next(c for c in commands() if c.startswith("curl "))
    port = free_port()
    argv = [str(VENV_BIN / "her2-cds"), *shlex.split(serve.rstrip("&").strip())[1:]]
    argv[argv.index("--port") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if k not in ("HER2_CDS_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(f"http://127.0.0.1:{port}", what="her2-cds serve --no-auth")
        args = shlex.split(curl.replace("localhost:8080", f"127.0.0.1:{port}"))
        args = [a.replace("@hooks/", f"@{ROOT}/hooks/") for a in args]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
        assert '"cards"' in out and "ild-monitoring" in out
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        log.close()


def test_the_production_command_as_written(tmp_path, jwks):
    """The gunicorn line, with a configuration a production start accepts."""
    from .conftest import PUBLIC_BASE, TEST_ISS

    command = next(c for c in commands() if c.startswith("HER2_CDS_CONFIG="))
    config = tmp_path / "her2-cds.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "public_base_url": PUBLIC_BASE,
                "auth": {"issuers": [{"iss": TEST_ISS, "jwks": jwks}]},
                "storage": {"database_url": f"sqlite:///{tmp_path}/db.sqlite"},
            }
        )
    )
    words = shlex.split(command)
    assert words[0] == "HER2_CDS_CONFIG=/etc/her2-cds.yaml" and words[1] == ".venv/bin/gunicorn"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "HER2_CDS_DEV")}
    env.update(HER2_CDS_CONFIG=str(config), HER2_CDS_BIND=f"127.0.0.1:{port}", HER2_CDS_WORKERS="1")
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), *words[2:]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_up(f"http://127.0.0.1:{port}", what="gunicorn as README runs it")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert f"trusted CDS clients (iss): {TEST_ISS}" in (tmp_path / "gunicorn.log").read_text()


SANDBOX_GUIDE = ROOT / "docs" / "sandbox.md"
TAMOXIFEN = {  # as the sandbox's drug list codes it (RxNorm 105630)
    "coding": [
        {
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "105630",
            "display": "Tamoxifen 10 MG Oral Tablet [Nolvadex]",
        }
    ],
    "text": "Tamoxifen 10 MG Oral Tablet [Nolvadex]",
}


EXAMPLE_OF = {  # the seeded patients (her2-cds seed loads the examples' patients under these ids)
    "builta-binary-only": "builta-binary-only.patient-view.json",
    "bell": "bell.order-select-ribociclib.json",
    "builta-her2-low": "builta-her2-low.order-select-eribulin.json",
    "ultralow-hr-positive": "ultralow-hr-positive.patient-view.json",
    "her2-positive": "her2-positive.patient-view.json",
}


@pytest.mark.parametrize(
    "patient, hook, topics",
    [
        ("builta-binary-only", "patient-view", ["her2-rescore"]),
        ("builta-binary-only", "order-select", ["her2-rescore"]),
        ("bell", "order-select", ["tdxd-consideration"]),
        ("builta-her2-low", "order-select", ["tdxd-consideration"]),
        ("ultralow-hr-positive", "patient-view", ["tdxd-consideration"]),
        ("her2-positive", "patient-view", []),
    ],
)
def test_the_sandbox_walkthrough_shows_the_cards_it_names(client, patient, hook, topics):
    """docs/sandbox.md's table, with the drug from the sandbox's own list: each row gets the cards it names."""
    import json

    from .helpers import SERVICE_FOR_HOOK

    guide = SANDBOX_GUIDE.read_text("utf-8")
    assert f"`{patient}`" in guide and "Tamoxifen 10 MG Oral Tablet [Nolvadex]" in guide
    example = json.loads((ROOT / "hooks" / "examples" / EXAMPLE_OF[patient]).read_text("utf-8"))
    body = {
        **example,
        "hook": hook,
        "context": {k: v for k, v in example["context"].items() if k in ("userId", "patientId")},
    }
    if hook == "order-select":
        draft = {"resourceType": "MedicationRequest", "id": "sbx", "status": "draft", "intent": "order",
                 "subject": {"reference": f"Patient/{example['context']['patientId']}"},
                 "medicationCodeableConcept": TAMOXIFEN}  # fmt: skip
        body["context"]["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        }
        body["context"]["selections"] = ["MedicationRequest/sbx"]
    resp = client.post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]] == topics
