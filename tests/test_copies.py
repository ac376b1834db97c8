"""Paged and repeated resources go through the status policy (issue 21, item 6): every copy of an id is weighed,
wherever it stands in the answer. Black box through the test FHIR server (an amendment on a later page of the
search), then the precedence pinned row by row."""

from __future__ import annotations

import copy

import pytest

from cds_service.fhir.extraction import _dedupe, copy_rank
from cds_service.web.app import create_app

from .fixtures import builders as b
from .fixtures import patients
from .helpers import hook_request

TOKEN = "fhir-access-token-SECRET-42"


def _ihc(chart):
    return next(r for r in chart if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "85319-2")


def _amended_to_3_plus(original):
    amended = copy.deepcopy(original)
    amended["status"] = "amended"
    amended["valueCodeableConcept"] = {"text": "3+"}
    return amended


def _cards(settings_factory, fhir_server, resources, page_size=2):
    fhir_server.reset(resources, page_size=page_size)
    app = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 2}))
    body = hook_request("patient-view", prefetch={}, fhirServer=fhir_server.base)
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "her2-cds",
    }
    resp = app.test_client().post("/cds-services/her2-patient-view", json=body)
    assert resp.status_code == 200
    return resp.get_json()["cards"]


@pytest.mark.parametrize("amendment_first", [False, True])
def test_an_amendment_on_another_page_wins_over_the_original(settings_factory, fhir_server, amendment_first):
    chart = patients.bell()
    assert any(
        c["source"]["topic"]["code"] == "tdxd-consideration" for c in _cards(settings_factory, fhir_server, chart)
    )
    amended = _amended_to_3_plus(_ihc(chart))
    resources = [amended, *chart] if amendment_first else [*chart, amended]
    cards = _cards(settings_factory, fhir_server, resources, page_size=1)  # one result per page: surely apart
    assert fhir_server.log() and sum("Observation" in e["path"] for e in fhir_server.log()) > 2  # it paged
    topics = [c["source"]["topic"]["code"] for c in cards]
    assert "tdxd-consideration" not in topics, [c["summary"] for c in cards]  # IHC 3+: HER2-positive, no T-DXd-low


def _obs(status="final", version=None, updated=None, issued=None, value="1+"):
    r = b.her2_ihc(value, "2024-05-02")
    r["id"] = "h1"
    r["status"] = status
    meta = {}
    if version is not None:
        meta["versionId"] = version
    if updated is not None:
        meta["lastUpdated"] = updated
    if meta:
        r["meta"] = meta
    if issued is not None:
        r["issued"] = issued
    return r


ROWS = [  # (first copy, second copy, which wins: "first" | "second")
    (_obs("final"), _obs("amended", value="3+"), "second"),
    (_obs("amended", value="3+"), _obs("final"), "first"),
    (_obs("corrected", value="3+"), _obs("final"), "first"),
    (_obs("final"), _obs("preliminary"), "first"),
    (_obs("preliminary"), _obs("final"), "second"),
    (_obs("final"), _obs("entered-in-error"), "second"),
    (_obs("entered-in-error"), _obs("amended"), "first"),
    (_obs("final", updated="2026-02-01T00:00:00Z"), _obs("final", updated="2026-01-01T00:00:00Z"), "first"),
    (_obs("final", updated="2026-01-01T00:00:00Z"), _obs("final", updated="2026-02-01T00:00:00Z"), "second"),
    (_obs("final", issued="2026-02-01T00:00:00Z"), _obs("final", issued="2026-01-01T00:00:00Z"), "first"),
    (_obs("final", version="3"), _obs("amended", version="2"), "first"),  # the server's own versions decide
    (_obs("final", version="10"), _obs("final", version="9"), "first"),  # numerically
    (_obs("final"), _obs("final"), "second"),  # a tie: the later copy
]


@pytest.mark.parametrize("first, second, winner", ROWS)
def test_which_copy_of_an_id_is_read(first, second, winner):
    [kept] = _dedupe([first, second])
    assert kept is (first if winner == "first" else second)
    assert (copy_rank(first) > copy_rank(second)) == (winner == "first") or copy_rank(first) == copy_rank(second)
