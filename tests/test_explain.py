"""Why a card fired or did not: `evaluate --explain` and the operator-only explain route."""

from __future__ import annotations

import hashlib
import json

from cds_service.cli import main
from cds_service.web.app import create_app

from .conftest import PUBLIC_BASE, TEST_ISS
from .fixtures import builders as b
from .fixtures import patients
from .helpers import hook_request, prefetch_from

LOCAL = "urn:oid:2.16.840.1.113883.3.999.formulary"


def _explain(tmp_path, capsys, resources, hook="patient-view", drafts=None) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(hook_request(hook, prefetch=prefetch_from(resources), draft_orders=drafts)))
    main(["evaluate", str(path), "--explain"])
    return capsys.readouterr().out


def _no_prior_therapy_her2_low():
    return [
        b.patient(),
        b.breast_cancer("2024-01-01"),
        b.metastasis("liver", "2025-03-01"),
        b.receptor("ER", "positive", "2025-03-10"),
        b.receptor("PR", "positive", "2025-03-10"),
        b.her2_ihc("1+", "2025-03-10", site="liver"),
    ]


def test_her2_positive_no_card_says_why(tmp_path, capsys):
    out = _explain(tmp_path, capsys, patients.her2_positive())
    assert out.startswith("No cards.")
    assert "T-DXd consideration:\n    no card: HER2-positive history on record" in out
    assert "HER2 re-scoring:\n    no card: HER2-positive history on record" in out
    assert "✘ HER2-low or HER2-ultralow: HER2-positive: IHC 3+" in out
    assert "ILD monitoring:\n    no card: no T-DXd on record as active" in out


def test_her2_low_with_no_prior_therapy_shows_the_failed_criteria(tmp_path, capsys):
    out = _explain(tmp_path, capsys, _no_prior_therapy_her2_low())
    assert "No cards." in out
    assert "DESTINY-Breast06: not met" in out and "DESTINY-Breast04: not met" in out
    assert "✔ HER2-low or HER2-ultralow: HER2-low: IHC 1+" in out
    assert "✔ HR-positive" in out
    assert "✘ progression on ≥1 endocrine therapy in the metastatic setting: no endocrine therapy recorded" in out
    assert "✘ prior chemotherapy (metastatic, or adjuvant with recurrence ≤6 months)" in out
    assert "Lines of therapy:\n    none recorded" in out


def test_an_unmapped_local_drug_code_is_listed(tmp_path, capsys):
    local = b.med_statement("letrozole", "2025-04-01")
    local["medicationCodeableConcept"] = {"coding": [{"system": LOCAL, "code": "F-88231"}]}
    out = _explain(tmp_path, capsys, [*_no_prior_therapy_her2_low(), local])
    assert f"MedicationStatement.medicationCodeableConcept: {LOCAL}|F-88231" in out
    assert "Lines of therapy:\n    none recorded" in out  # not read as a drug: the operator sees why


def test_the_facts_section_names_each_derived_fact(tmp_path, capsys):
    out = _explain(tmp_path, capsys, patients.bell())
    for section in (
        "HER2:",
        "HR:",
        "Setting:",
        "Lines of therapy:",
        "Chemotherapy:",
        "ILD risk:",
        "Orders in the request:",
    ):
        assert f"\n{section}\n" in out, section
    assert "metastatic: yes, since" in out and "progressed" in out


def _secured(settings_factory, jwks, token: str | None):
    cfg = {"auth": {"required": True, "issuers": [{"iss": TEST_ISS, "jwks": jwks}]}, "public_base_url": PUBLIC_BASE}
    if token is not None:
        cfg["operator"] = {"explain_token_sha256": hashlib.sha256(token.encode()).hexdigest()}
    return create_app(settings_factory(**cfg)).test_client()


def test_the_explain_route_is_for_operators_only(settings_factory, jwks, make_token, caplog):
    body = hook_request("patient-view", prefetch=prefetch_from(patients.her2_positive()))
    path = "/cds-services/her2-patient-view"

    def call(client, route, operator=None):
        headers = {"Authorization": f"Bearer {make_token(PUBLIC_BASE + route)}"}
        if operator is not None:
            headers["X-HER2-CDS-Operator"] = operator
        return client.post(route, json=body, headers=headers)

    closed = _secured(settings_factory, jwks, None)
    assert call(closed, path + "/explain", "anything").status_code == 404  # no operator token configured
    open_ = _secured(settings_factory, jwks, "op-secret-1")
    assert call(open_, path + "/explain").status_code == 404
    assert call(open_, path + "/explain", "op-secret-2").status_code == 404
    plain = call(open_, path)
    assert plain.status_code == 200 and "explanation" not in plain.get_json()  # the EHR never gets it
    caplog.set_level("INFO")
    resp = call(open_, path + "/explain", "op-secret-1")
    assert resp.status_code == 200
    explanation = resp.get_json()["explanation"]
    assert explanation["rules"]["T-DXd consideration"][0].startswith("no card: HER2-positive history on record")
    assert "IHC 3+" not in caplog.text and "obs-" not in caplog.text  # never logged
    no_jwt = open_.post(path + "/explain", json=body, headers={"X-HER2-CDS-Operator": "op-secret-1"})
    assert no_jwt.status_code == 401  # the operator token adds to the JWT, never replaces it
