"""FHIR fallback against a real local FHIR server process: paging, parallelism, faults, allow-list."""

from __future__ import annotations

import json
import logging
import time

import pytest

from cds_service.logs import formatter
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .helpers import assert_cds_response, empty_prefetch, hook_request

TOKEN = "fhir-access-token-SECRET-42"


def _resources(n_conditions: int = 7):
    res = [{"resourceType": "Patient", "id": "p1", "gender": "female"}]
    for i in range(n_conditions):
        res.append(
            {
                "resourceType": "Condition",
                "id": f"c{i}",
                "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
            }
        )
    res.append(
        {
            "resourceType": "Condition",
            "id": "other",
            "subject": {"reference": "Patient/p2"},
            "code": {"text": "someone else"},
        }
    )
    return res


def _request(fhir_base: str, prefetch: dict | None = None, token: str | None = TOKEN):
    body = hook_request("patient-view", prefetch=prefetch if prefetch is not None else {}, fhirServer=fhir_base)
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "her2-cds",
        }
    return body


@pytest.fixture
def app_for(settings_factory, fhir_server):
    def build(**fhir):
        cfg = {"allowed_servers": [fhir_server.base], "timeout_seconds": 1, **fhir}
        return create_app(settings_factory(fhir=cfg))

    return build


def _gather(app, body):
    engine = app_state(app).engine
    return engine.invoke(engine.services["her2-patient-view"], body).gathered


def test_fallback_fetches_every_missing_key_with_token_and_pages(app_for, fhir_server):
    fhir_server.reset(_resources(7), page_size=3)
    app = app_for()
    gathered = _gather(app, _request(fhir_server.base))
    assert sorted(r["id"] for r in gathered.by_key["conditions"]) == [f"c{i}" for i in range(7)]
    assert [r["id"] for r in gathered.by_key["patient"]] == ["p1"]
    assert gathered.unavailable == {}
    log = fhir_server.log()
    assert all(entry["auth"] == f"Bearer {TOKEN}" for entry in log)
    condition_calls = [e for e in log if e["path"].startswith("/Condition")]
    assert len(condition_calls) == 3  # 7 results, pages of 3
    assert gathered.fallback_calls == len(log)


def test_prefetched_keys_are_not_fetched(app_for, fhir_server):
    fhir_server.reset(_resources(2))
    prefetch = empty_prefetch()
    del prefetch["conditions"]
    gathered = _gather(app_for(), _request(fhir_server.base, prefetch))
    log = fhir_server.log()
    assert [e["path"].split("?")[0] for e in log] == ["/Condition"]
    assert len(gathered.by_key["conditions"]) == 2


def test_paged_prefetch_bundle_is_completed_from_the_server(app_for, fhir_server):
    fhir_server.reset(_resources(5), page_size=2)
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{fhir_server.base}/Condition?patient=p1&_offset=2&_count=2"}],
        "entry": [{"resource": r} for r in _resources(2)[1:3]],
    }
    prefetch = {**empty_prefetch(), "conditions": first}
    gathered = _gather(app_for(), _request(fhir_server.base, prefetch))
    assert [r["id"] for r in gathered.by_key["conditions"]] == ["c0", "c1", "c2", "c3", "c4"]


def test_fallback_queries_run_in_parallel(app_for, fhir_server):
    fhir_server.reset(_resources(1), delay=0.3, page_size=50)
    app = app_for(timeout_seconds=2)
    started = time.perf_counter()
    resp = app.test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base))
    elapsed = time.perf_counter() - started
    keys = len(empty_prefetch())
    assert resp.status_code == 200
    assert len(fhir_server.log()) == keys - 3  # the four Observation searches by code go as one
    assert elapsed < 0.3 * 2, f"{keys} queries of 0.3 s took {elapsed:.2f} s: not all in parallel"


def test_slow_server_gives_degraded_answer_within_deadline(app_for, fhir_server, settings_factory):
    fhir_server.reset(_resources(1), delay=3)
    app = create_app(
        settings_factory(
            fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 0.5},
            limits={"request_deadline_seconds": 1.0},
        )
    )
    started = time.perf_counter()
    gathered = _gather(app, _request(fhir_server.base))
    assert time.perf_counter() - started < 1.5
    assert set(gathered.unavailable) == set(empty_prefetch())
    assert all(v in ("timed out", "deadline passed") for v in gathered.unavailable.values())


@pytest.mark.parametrize(
    "fault, reason",
    [
        ({"status": 500}, "HTTP 500"),
        ({"status": 401}, "HTTP 401"),
        ({"status": 403}, "HTTP 403"),
        ({"html": True}, "response is not JSON"),
    ],
)
def test_server_faults_are_degraded_not_500(app_for, fhir_server, fault, reason):
    fhir_server.reset(_resources(1), **fault)
    app = app_for()
    resp = app.test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base))
    assert resp.status_code == 200
    assert_cds_response(resp.get_json())
    assert set(_gather(app, _request(fhir_server.base)).unavailable.values()) == {reason}


def test_looping_next_link_stops(app_for, fhir_server):
    fhir_server.reset(_resources(5), page_size=2, next="loop")
    gathered = _gather(app_for(), _request(fhir_server.base))
    assert len([e for e in fhir_server.log() if e["path"].startswith("/Condition")]) == 2
    # the looped page's copies are all kept for the status policy, which reads one per id
    assert {r["id"] for r in gathered.by_key["conditions"]} == {"c0", "c1"}


def test_next_link_to_another_host_is_not_followed(app_for, fhir_server):
    fhir_server.reset(_resources(5), page_size=2, next="foreign")
    gathered = _gather(app_for(), _request(fhir_server.base))
    assert "outside the request's FHIR server" in gathered.unavailable["conditions"]
    assert len(gathered.by_key["conditions"]) == 2


def test_page_cap_is_reported(app_for, fhir_server):
    fhir_server.reset(_resources(9), page_size=2)
    gathered = _gather(app_for(max_pages=2), _request(fhir_server.base))
    assert len(gathered.by_key["conditions"]) == 4
    assert "pages" in gathered.unavailable["conditions"]


def test_unreachable_server_is_degraded(settings_factory):
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    app = create_app(settings_factory(fhir={"allowed_servers": [dead], "timeout_seconds": 0.5}))
    resp = app.test_client().post("/cds-services/her2-patient-view", json=_request(dead))
    assert resp.status_code == 200
    assert _gather(app, _request(dead)).unavailable["conditions"].startswith("unreachable")


def test_without_token_the_server_is_not_called_unless_allowed(app_for, fhir_server):
    fhir_server.reset(_resources(1))
    resp = app_for().test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base, token=None))
    assert resp.status_code == 412
    assert fhir_server.log() == []
    resp = (
        app_for(allow_unauthenticated=True)
        .test_client()
        .post("/cds-services/her2-patient-view", json=_request(fhir_server.base, token=None))
    )
    assert resp.status_code == 200
    assert all(e["auth"] is None for e in fhir_server.log())


def test_order_select_without_a_drug_fetches_nothing(app_for, fhir_server):
    """order-select fires while the clinician is still choosing: no medication yet → [] at once,
    without fallback queries (and without a 412 for the missing prefetch)."""
    fhir_server.reset(_resources(2))
    body = _request(fhir_server.base)
    body["hook"] = "order-select"
    body["context"] = {
        "userId": "Practitioner/1",
        "patientId": "p1",
        "selections": ["MedicationRequest/d1"],
        "draftOrders": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "d1",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/p1"},
                    }
                }
            ],
        },
    }
    resp = app_for().test_client().post("/cds-services/her2-order-select", json=body)
    assert resp.status_code == 200 and resp.get_json() == {"cards": []}
    assert fhir_server.log() == []
    del body["fhirServer"], body["fhirAuthorization"]
    assert app_for().test_client().post("/cds-services/her2-order-select", json=body).get_json() == {"cards": []}


def test_token_never_logged(app_for, fhir_server, caplog):
    fhir_server.reset(_resources(2), status=500)
    caplog.set_level(logging.DEBUG)
    app = app_for()
    app.test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base))
    text = caplog.text
    assert TOKEN not in text
    records = [json.loads(formatter().format(r)) for r in caplog.records if r.name == "her2_cds.audit"]
    merged = 3  # the four Observation keys go as one query
    assert records and records[-1]["status"] == 200 and records[-1]["fallback_calls"] == len(empty_prefetch()) - merged


def test_real_socket_round_trip(app_for, fhir_server, live_server):
    import requests

    fhir_server.reset(_resources(3))
    srv = live_server(app_for())
    disc = requests.get(f"{srv.url}/cds-services", timeout=5)
    assert disc.status_code == 200 and len(disc.json()["services"]) == 3
    resp = requests.post(f"{srv.url}/cds-services/her2-patient-view", json=_request(fhir_server.base), timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert_cds_response(resp.json())
    bad = requests.post(
        f"{srv.url}/cds-services/her2-patient-view", data="{", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert bad.status_code == 400 and "malformed" in bad.json()["error"]


def _pathology_patient():
    """A patient whose HER2/ER/PR results exist only as locally coded results of a pathology report."""
    from .fixtures import builders as b
    from .fixtures import realworld as rw

    her2 = rw.local_result("HER2 IHC", {"valueString": "1+"}, "2025-04-01")
    er = rw.local_result("ER", {"valueString": "Positive, 90%"}, "2025-04-01")
    pr = rw.local_result("PR", {"valueString": "Negative (<1%)"}, "2025-04-01")
    report = rw.pathology_report([her2, er, pr], "2025-04-01")
    return [
        b.patient(),
        b.breast_cancer("2019-01-01"),
        b.metastasis("liver", "2023-01-10"),
        report,
        her2,
        er,
        pr,
        b.med_statement("letrozole", "2023-02-01", "2025-03-01", status="stopped", reason="progression"),
    ]


@pytest.mark.parametrize("include_results, report_queries", [(True, 1), (False, 2)])
def test_pathology_reports_and_their_results_are_fetched(app_for, fhir_server, include_results, report_queries):
    """`_include=DiagnosticReport:result` where the server honours it; one `Observation?_id=` query where not."""
    fhir_server.reset(_pathology_patient(), page_size=50, include_results=include_results)
    app = app_for()
    started = time.perf_counter()
    resp = app.test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base))
    elapsed = time.perf_counter() - started
    cards = {c["source"]["topic"]["code"]: c for c in assert_cds_response(resp.get_json())}
    assert "meets" in cards["tdxd-consideration"]["summary"]
    log = [e["path"] for e in fhir_server.log()]
    report_calls = [p for p in log if p.startswith("/DiagnosticReport") or p.startswith("/Observation?_id=")]
    assert len(report_calls) == report_queries, log
    assert any("category=" in p and "LP7839-6" in p for p in report_calls)
    assert len(log) <= 12 and elapsed < 2.0


def test_report_results_that_cannot_be_fetched_are_said(app_for):
    from .helpers import prefetch_from

    resources = [r for r in _pathology_patient() if r["resourceType"] != "Observation"]
    prefetch = prefetch_from(resources)
    resp = (
        app_for()
        .test_client()
        .post("/cds-services/her2-patient-view", json=hook_request("patient-view", prefetch=prefetch))
    )
    cards = assert_cds_response(resp.get_json())
    assert any("referenced by pathology reports were not delivered" in c["detail"] for c in cards)


def test_an_ehr_without_the_pathology_key_is_not_refused(app_for):
    from .fixtures import patients
    from .helpers import prefetch_from

    prefetch = prefetch_from(patients.bell())
    del prefetch["pathology"]
    resp = (
        app_for()
        .test_client()
        .post("/cds-services/her2-patient-view", json=hook_request("patient-view", prefetch=prefetch))
    )
    assert resp.status_code == 200
    assert any("pathology" in c["detail"] for c in assert_cds_response(resp.get_json()))


@pytest.mark.parametrize("server_path", ["/../../admin", "/%2e%2e/%2e%2e/admin", "/%2E%2e/admin", "/./x/../.."])
def test_a_fhir_server_with_dot_segments_is_not_on_the_allow_list(app_for, fhir_server, server_path):
    """fhirServer = <allowed>/../../admin must never receive the token (it passed a string-prefix check)."""
    fhir_server.reset(_resources(1))
    resp = (
        app_for().test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base + server_path))
    )
    assert resp.status_code == 412 and resp.get_json()["reason"] == "fhirServer is not on this service's allow-list"
    assert fhir_server.log() == []


def test_a_next_link_with_dot_segments_is_not_followed(app_for, fhir_server):
    fhir_server.reset(_resources(7), page_size=3)
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{fhir_server.base}/Condition/%2e%2e/%2e%2e/admin?x=1"}],
        "entry": [{"resource": r} for r in _resources(1)[1:]],
    }
    gathered = _gather(app_for(), _request(fhir_server.base, {**empty_prefetch(), "conditions": first}))
    assert "outside the request's FHIR server" in gathered.unavailable["conditions"]
    assert not any("admin" in e["path"] for e in fhir_server.log())


def test_cookies_a_fhir_server_sets_are_never_sent_back(app_for, fhir_server):
    fhir_server.reset(_resources(7), page_size=3, set_cookie=True)
    app = app_for()
    for _ in range(3):  # the pool's threads keep their sessions between requests (and users)
        _gather(app, _request(fhir_server.base))
    log = fhir_server.log()
    assert len(log) > 20 and all(entry["cookie"] is None for entry in log)


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://OK.example:443/fhir/Patient/1", True),
        ("https://ok.example/f%68ir/Patient", False),  # a server that does not decode reads another path
        ("https://ok.example/fhirx/Patient", False),
        ("https://ok.example:8443/fhir/x", False),
        ("https://user:pw@ok.example/fhir/x", False),
        ("http://ok.example/fhir/x", False),
        ("https://ok.example:99999/fhir", False),
        ("ftp://ok.example/fhir", False),
        ("https://ok.example/fhir/%252e%252e/admin", False),  # a dot segment to a server that decodes twice
        ("https://ok.example/fhir\\..\\admin", False),  # backslashes: parsers disagree
        ("https://ok.example\\@evil.example/fhir", False),
        (" https://ok.example/fhir/x", False),
        ("https://ok.example/fhir/x\nHost: evil.example", False),
        ("https://ok.example/fhir/x#frag", False),
        ("https://ok.example/fhir;x/../../admin", False),
        ("https://ok.example/fhir/Observation?patient=p1&code=a,b", True),  # a next link keeps its query
    ],
)
def test_allow_list_compares_normalised_urls(url, allowed):
    from cds_service.gather.fhir_client import is_allowed

    assert is_allowed(url, ["https://ok.example/fhir/"]) is allowed


def test_a_trickling_server_is_cut_at_the_deadline(fhir_server):
    """Each byte arrives within the socket timeout, so only a wall-clock deadline stops the read: the thread
    is back within 0.3 s of the deadline, and nothing is parsed after it."""
    from cds_service.gather.fhir_client import FhirClient

    fhir_server.reset(_resources(3), page_size=50, trickle=0.05)
    client = FhirClient([fhir_server.base], timeout=1.0, max_pages=5)
    started = time.monotonic()
    data, error = client.get_json(f"{fhir_server.base}/Condition?patient=p1", TOKEN, started + 0.8)
    elapsed = time.monotonic() - started
    assert data is None and error == "deadline passed"
    assert 0.75 < elapsed < 1.1, elapsed


def test_a_trickling_server_gives_a_degraded_answer_within_the_deadline(fhir_server, settings_factory):
    fhir_server.reset(_resources(3), page_size=50, trickle=0.05)
    app = create_app(
        settings_factory(
            fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 1}, limits={"request_deadline_seconds": 1.0}
        )
    )
    started = time.monotonic()
    resp = app.test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base))
    assert resp.status_code == 200 and time.monotonic() - started < 1.5
    gathered = _gather(app, _request(fhir_server.base))
    assert gathered.unavailable and set(gathered.unavailable.values()) == {"deadline passed"}


def test_one_request_reads_no_more_than_its_byte_budget(fhir_server, settings_factory):
    """Many large answers to one request: once its budget is spent, further reads stop and say why."""
    big = [
        {
            "resourceType": "Condition",
            "id": f"c{i}",
            "subject": {"reference": "Patient/p1"},
            "code": {"text": "x" * 20_000},
        }
        for i in range(30)
    ]
    fhir_server.reset([{"resourceType": "Patient", "id": "p1"}, *big], page_size=50)
    app = create_app(
        settings_factory(
            fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 2, "max_bytes_per_request": 200_000}
        )
    )
    gathered = _gather(app, _request(fhir_server.base))
    assert gathered.unavailable["conditions"] == "this request's FHIR byte budget is spent"
    roomy = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 2}))
    assert "conditions" not in _gather(roomy, _request(fhir_server.base)).unavailable


def test_a_slow_server_never_takes_the_threads_another_server_needs(fhir_server, settings_factory):
    """A FHIR server that answers in 1.5 s gets 8 requests at once (88 queries, more than its 4 threads);
    meanwhile a request to a second, healthy server is answered at once, with every key."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .conftest import FhirServer

    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fhir_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    healthy = FhirServer(f"http://127.0.0.1:{int(proc.stdout.readline().split()[1])}", proc)
    try:
        fhir_server.reset(_resources(2), delay=1.5)
        healthy.reset(_resources(2))
        app = create_app(
            settings_factory(
                fhir={"allowed_servers": [fhir_server.base, healthy.base], "timeout_seconds": 2, "max_workers": 4},
                limits={"request_deadline_seconds": 2.0},
            )
        )
        with ThreadPoolExecutor(9) as pool:
            slow = [pool.submit(_gather, app, _request(fhir_server.base)) for _ in range(8)]
            time.sleep(0.2)
            started = time.monotonic()
            good = _gather(app, _request(healthy.base))
            took = time.monotonic() - started
            slow = [f.result() for f in slow]
        assert good.unavailable == {} and len(good.by_key["conditions"]) == 2 and took < 0.5, took
        assert all(g.unavailable for g in slow)  # the slow server's queries queued on its own threads
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_observation_searches_are_merged_and_split_by_each_keys_codes(settings_factory, fhir_server):
    """One `Observation?code=a,b,c` query serves the HER2, receptor, disease-status and renal keys; its answer is
    split locally by code, and the specimens it includes go to the key that asked for them."""
    from .fixtures import builders as b

    her2, er, egfr = (
        b.her2_ihc("1+", "2025-01-01"),
        b.receptor("ER", 90, "2025-01-01"),
        b.observation(b.cc(b.LOINC, "33914-3", "eGFR"), "2025-02-01", valueQuantity={"value": 50, "unit": "mL/min"}),
    )
    specimen = {"resourceType": "Specimen", "id": "sp1", "subject": b.subject()}
    her2["specimen"] = {"reference": "Specimen/sp1"}
    other = b.observation(b.cc(b.LOINC, "2339-0", "Glucose"), "2025-01-01")
    fhir_server.reset([b.patient(), her2, er, egfr, specimen, other], page_size=50)
    results = {}
    for merge in (True, False):
        fhir_server.control(log=[])
        app = create_app(
            settings_factory(fhir={"allowed_servers": [fhir_server.base], "merge_observation_queries": merge})
        )
        gathered = _gather(app, _request(fhir_server.base))
        obs_queries = [e["path"] for e in fhir_server.log() if e["path"].startswith("/Observation")]
        results[merge] = {k: sorted(r["id"] for r in v) for k, v in gathered.by_key.items()}
        assert len(obs_queries) == (1 if merge else 4)
    assert results[True] == results[False]
    assert results[True]["her2Observations"] == sorted([her2["id"], "sp1"])
    assert results[True]["receptorObservations"] == [er["id"]]
    assert results[True]["renalFunction"] == [egfr["id"]]
    assert results[True]["diseaseStatus"] == []


def _metastatic_specimen_patient() -> list[dict]:
    """HER2 IHC 0 from a liver biopsy (its site only in the Specimen)."""
    from .fixtures import builders as b

    spec = {
        "resourceType": "Specimen",
        "id": "sp-liver",
        "subject": b.subject(),
        "collection": {"bodySite": b.cc(b.SCT, "10200004", "Liver structure")},
        "type": {"text": "Liver core biopsy (metastasis)"},
    }
    her2 = b.her2_ihc(0, "2025-06-01", specimen="sp-liver")
    return [b.patient(), b.breast_cancer("2019-01-01"), b.metastasis("liver", "2023-01-10"), spec, her2]


@pytest.mark.parametrize("include_specimens, specimen_queries", [(True, 0), (False, 1)])
def test_specimens_a_server_did_not_include_are_fetched(app_for, fhir_server, include_specimens, specimen_queries):
    """A server that ignores `_include=Observation:specimen`: one `Specimen?_id=` query, and the card knows the
    result came from a metastatic site (it said "specimen site not recorded")."""
    fhir_server.reset(_metastatic_specimen_patient(), page_size=50, include_specimens=include_specimens)
    resp = app_for().test_client().post("/cds-services/her2-patient-view", json=_request(fhir_server.base))
    cards = {c["source"]["topic"]["code"]: c for c in assert_cds_response(resp.get_json())}
    log = [e["path"] for e in fhir_server.log()]
    assert len([p for p in log if p.startswith("/Specimen?_id=sp-liver")]) == specimen_queries, log
    detail = cards["her2-rescore"]["detail"]
    assert "Liver core biopsy (metastasis)" in detail and "specimen site not recorded" not in detail
    assert "not delivered" not in detail


def test_specimens_that_cannot_be_fetched_are_said_as_not_delivered(app_for):
    from .helpers import prefetch_from

    resources = [r for r in _metastatic_specimen_patient() if r["resourceType"] != "Specimen"]
    body = hook_request("patient-view", prefetch=prefetch_from(resources))
    resp = app_for().test_client().post("/cds-services/her2-patient-view", json=body)
    detail = {c["source"]["topic"]["code"]: c for c in assert_cds_response(resp.get_json())}["her2-rescore"]["detail"]
    assert "specimen not delivered" in detail and "specimen site not recorded" not in detail
    assert "1 specimen(s) referenced by results were not delivered and cannot be fetched" in detail
