"""A chart sent again is answered from the facts kept by its prefetch's exact bytes, without parsing it
(web/body.read_hook_json, FactsMemo.keep / recall): the answer is the one a fresh service gives, the rest of the body
is still checked and read, and nothing that depended on more than those bytes (a fetch, a page, the context) is
ever recalled."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import orjson
import pytest

from cds_service.paths import hooks_dir
from cds_service.web.app import create_app
from cds_service.web.body import parse_member, read_hook_json
from cds_service.web.state import app_state

from .fixtures import builders as b
from .helpers import cards_without_ids, empty_prefetch, prefetch_from
from .test_fallback import _pathology_patient
from .test_fallback import _request as _fhir_request  # a patient-view with fhirServer and its token

EXAMPLES = sorted((hooks_dir() / "examples").glob("*.json"))
SERVICE_OF = {"order-select": "her2-order-select", "order-sign": "her2-order-sign", "patient-view": "her2-patient-view"}


def _example(name: str = "bell.order-select-ribociclib") -> dict[str, Any]:
    return json.loads((hooks_dir() / "examples" / f"{name}.json").read_text("utf-8"))


def _post(client: Any, body: dict[str, Any] | bytes, service: str | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hook = json.loads(data)["hook"] if service is None else None
    path = f"/cds-services/{service or SERVICE_OF[hook]}"
    return client.post(path, data=data, headers={"Content-Type": "application/json"})


def _memo(app: Any) -> Any:
    return app_state(app).engine.facts


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_resent_prefetch_is_recalled_and_answered_as_a_fresh_service_answers(path, settings_factory):
    first = json.loads(path.read_text("utf-8"))
    again = {**copy.deepcopy(first), "hookInstance": str(uuid.uuid4())}
    if first["hook"] == "order-select":  # the order was edited: another drug, the same chart
        again["context"]["draftOrders"]["entry"][0]["resource"] = b.med_request(
            "capecitabine", "2026-11-25", status="draft", id="draft-edit"
        )
    app = create_app(settings_factory())
    client = app.test_client()
    assert _post(client, first).status_code == 200
    answer = _post(client, again)
    assert answer.status_code == 200
    assert _memo(app).recalled == 1
    fresh = _post(create_app(settings_factory()).test_client(), again)
    assert cards_without_ids(answer.get_json()) == cards_without_ids(fresh.get_json())


def test_the_same_chart_written_otherwise_is_not_recalled_but_answered_alike(settings_factory):
    body = _example()
    app = create_app(settings_factory())
    client = app.test_client()
    first = _post(client, body)
    spaced = json.dumps({**body, "prefetch": body["prefetch"]}, indent=1).encode()  # other bytes, same chart
    second = _post(client, spaced)
    assert (second.status_code, _memo(app).recalled) == (200, 0)  # derived again (then kept by these bytes)
    assert cards_without_ids(first.get_json()) == cards_without_ids(second.get_json())


def test_order_sign_after_order_select_recalls_the_same_prefetch(settings_factory):
    """The services read the same prefetch keys: order-sign, which follows order-select with the same chart, is
    answered from the facts order-select derived, and as a fresh service answers it."""
    select = _example()
    sign = {**copy.deepcopy(select), "hook": "order-sign", "hookInstance": str(uuid.uuid4())}
    sign["context"] = {
        "userId": "Practitioner/1",
        "patientId": select["context"]["patientId"],
        "draftOrders": select["context"]["draftOrders"],
    }
    app = create_app(settings_factory())
    client = app.test_client()
    assert _post(client, select).status_code == 200
    answer = _post(client, sign)
    assert (answer.status_code, _memo(app).recalled) == (200, 1)
    fresh = _post(create_app(settings_factory(storage={"cache_url": "memory://"})).test_client(), sign)  # own memory
    assert cards_without_ids(answer.get_json()) == cards_without_ids(fresh.get_json())


def test_a_prefetch_is_recalled_only_for_the_same_keys_and_day():
    from datetime import date

    from cds_service.facts.derive import derive
    from cds_service.facts.memo import FactsMemo, Kept
    from cds_service.fhir.terminology import load_terminology

    from .fixtures import patients

    memo = FactsMemo(10_000_000, 600)
    facts = derive(patients.bell(), load_terminology(), date(2026, 11, 25))
    memo.keep(b'{"a": 1}', "patient\nconditions", date(2026, 11, 25), Kept(facts, {"x": "y"}))
    assert memo.recall(b'{"a": 1}', "patient\nconditions", date(2026, 11, 25)) is not None
    assert memo.recall(b'{"a": 1}', "patient", date(2026, 11, 25)) is None
    assert memo.recall(b'{"a": 1}', "patient\nconditions", date(2026, 11, 26)) is None
    assert memo.recall(b'{"a":1}', "patient\nconditions", date(2026, 11, 25)) is None
    kept = memo.recall(b'{"a": 1}', "patient\nconditions", date(2026, 11, 25))
    assert kept is not None and kept.unavailable == {"x": "y"} and kept.facts is facts
    assert memo.recalled == 2


@pytest.mark.parametrize(
    "spoil, field",
    [
        (lambda body: body.pop("hookInstance"), "hookInstance"),
        (lambda body: body.update(context="not an object"), "context"),
        (lambda body: body.update(fhirServer="ftp://elsewhere"), "fhirServer"),
        (lambda body: body.update(hook="patient-view"), "hook"),
    ],
)
def test_the_rest_of_a_recalled_request_is_still_checked(settings_factory, spoil, field):
    body = _example()
    app = create_app(settings_factory())
    client = app.test_client()
    assert _post(client, body).status_code == 200
    spoilt = copy.deepcopy(body)
    spoil(spoilt)
    answer = _post(client, spoilt, "her2-order-select")
    fresh = _post(create_app(settings_factory()).test_client(), spoilt, "her2-order-select")
    assert answer.status_code == fresh.status_code == 400
    assert answer.get_json() == fresh.get_json()
    assert field in json.dumps(answer.get_json())


@pytest.mark.parametrize(
    "prefetch, says",
    [
        (b'{"conditions": {"entry": []}}', "prefetch"),  # no resourceType: the schema refuses it
        (b'{"conditions": [1, 2]}', "prefetch"),
        (b'{"conditions": {"resourceType": "Bundle", "total": NaN}}', "NaN and Infinity are not JSON numbers"),
        (b'{"conditions": {"resourceType": "Bundle", "total": 1e999}}', "NaN and Infinity are not JSON numbers"),
        (b'"a string"', "prefetch"),
    ],
)
def test_a_bad_prefetch_is_refused_every_time_and_never_kept(settings_factory, prefetch, says):
    body = json.dumps({k: v for k, v in _example().items() if k != "prefetch"}).encode()
    raw = body[:-1] + b', "prefetch": ' + prefetch + b"}"
    app = create_app(settings_factory())
    client = app.test_client()
    answers = [_post(client, raw, "her2-order-select") for _ in range(2)]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].get_json() == answers[1].get_json() and says in json.dumps(answers[0].get_json())
    assert _memo(app).recalled == 0 and len(_memo(app)) == 0


BROKEN_BODIES = [
    b"[1, 2]",
    b'"a string"',
    b"{}",
    b'{"hook": "order-select",}',
    b'{"hook": "order-select", "hook": 3}',
    b'{"hook": "\\ud800", "hookInstance": "x", "context": {}}',
    b'{"hook": "order-select", "hookInstance": "x", "context": {"n": 1e999}}',
    b'{"hook": "order-select", "hookInstance": "x", "context": {"n": 123456789012345678901234567890}}',
    b'{"hook": "order-select", "hookInstance": "x", "context": ' + b"[" * 1500 + b"]" * 1500 + b"}",
    b'{"prefetch": {}}',
    b'{"prefetch": ' + b"[" * 1500 + b"]" * 1500 + b"}",
    b'{"prefetch": {"conditions": {"resourceType": "Bundle"}}, "hook": "order-select"}',
    b'{"hook": "order-select", "hookInstance": "x", "context": {}, "prefetch": {"a": {"resourceType": Infinity}}}',
]


@pytest.mark.parametrize("raw", BROKEN_BODIES)
def test_a_body_that_does_not_split_is_refused_as_a_whole_parse_refuses_it(settings_factory, raw):
    """The operator's explain route parses the body whole (read_json): the hook route, which splits it, answers a
    broken body with the same status and the same words."""
    import hashlib

    token = "operator-token-for-the-differential"
    app = create_app(settings_factory(operator={"explain_token_sha256": hashlib.sha256(token.encode()).hexdigest()}))
    client = app.test_client()
    headers = {"Content-Type": "application/json"}
    split = client.post("/cds-services/her2-order-select", data=raw, headers=headers)
    whole = client.post(
        "/cds-services/her2-order-select/explain", data=raw, headers={**headers, "X-HER2-CDS-Operator": token}
    )
    assert split.status_code == whole.status_code == 400
    assert split.get_json() == whole.get_json()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_split_and_parsed_the_body_is_what_a_whole_parse_gives(path, settings_factory):
    raw = path.read_bytes()
    app = create_app(settings_factory())
    with app.test_request_context("/", method="POST", data=raw, content_type="application/json"):
        body, prefetch = read_hook_json()
    assert prefetch is not None and "prefetch" not in body
    assert {**body, "prefetch": parse_member(prefetch)} == orjson.loads(raw)


def test_what_was_fetched_is_fetched_again_never_recalled(settings_factory, fhir_server):
    """A prefetch missing a key, or paged: the answer depends on the server (and the context), not on the bytes."""
    condition = {
        "resourceType": "Condition",
        "id": "c0",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
    }
    fhir_server.reset([{"resourceType": "Patient", "id": "p1"}, condition], page_size=1)
    app = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 2}))
    client = app.test_client()
    missing = empty_prefetch()
    del missing["conditions"]
    paged = {
        **empty_prefetch(),
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": f"{fhir_server.base}/Condition?patient=p1&_offset=0&_count=1"}],
            "entry": [],
        },
    }
    for prefetch in (missing, paged):
        body = _fhir_request(fhir_server.base, prefetch)
        calls = []
        for _ in range(3):
            fhir_server.reset([{"resourceType": "Patient", "id": "p1"}, condition], page_size=1)
            assert _post(client, body).status_code == 200
            calls.append(len([e for e in fhir_server.log() if e["path"].startswith("/Condition")]))
        assert calls == [1, 1, 1]
    assert _memo(app).recalled == 0


def test_a_complete_prefetch_with_a_fhir_server_is_recalled_and_nothing_is_fetched(settings_factory, fhir_server):
    fhir_server.reset([])
    app = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 2}))
    client = app.test_client()
    body = _fhir_request(fhir_server.base, _example("builta-binary-only.patient-view")["prefetch"])
    answers = [_post(client, {**body, "hookInstance": str(uuid.uuid4())}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200] and _memo(app).recalled == 1
    assert fhir_server.log() == []
    assert cards_without_ids(answers[0].get_json()) == cards_without_ids(answers[1].get_json())


def test_what_a_recalled_prefetch_could_not_read_is_still_said(settings_factory):
    """The gaps of the first gathering (here: a Bundle whose entry is not a list) are kept with the facts and said
    again, on the card and in the facts."""
    body = _example("builta-binary-only.patient-view")
    body["prefetch"]["procedures"] = {"resourceType": "Bundle", "type": "searchset", "entry": "not a list"}
    app = create_app(settings_factory())
    client = app.test_client()
    answers = [_post(client, {**body, "hookInstance": str(uuid.uuid4())}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200] and _memo(app).recalled == 1
    fresh = _post(create_app(settings_factory()).test_client(), body)
    texts = [cards_without_ids(a.get_json()) for a in (*answers, fresh)]
    assert texts[0] == texts[1] == texts[2]
    assert "Bundle.entry is not a list" in texts[1]


def test_with_the_memo_off_nothing_is_recalled(settings_factory):
    app = create_app(settings_factory(limits={"facts_memo_mb": 0}))
    client = app.test_client()
    answers = [_post(client, _example()) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert (_memo(app).recalled, len(_memo(app))) == (0, 0)
    assert cards_without_ids(answers[0].get_json()) == cards_without_ids(answers[1].get_json())


def test_report_results_fetched_to_complete_a_prefetch_are_fetched_again(settings_factory, fhir_server):
    """Pathology reports prefetched without their results: the results come from the server, so every resend asks
    it again."""

    patient = _pathology_patient()
    fhir_server.reset(patient, page_size=50)
    app = create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 2}))
    client = app.test_client()
    prefetch = prefetch_from([r for r in patient if r["resourceType"] != "Observation"])
    body = _fhir_request(fhir_server.base, prefetch)
    for _ in range(2):
        fhir_server.reset(patient, page_size=50)
        answer = _post(client, {**body, "hookInstance": str(uuid.uuid4())})
        assert answer.status_code == 200
        assert any(e["path"].startswith("/Observation?_id=") for e in fhir_server.log())
    assert _memo(app).recalled == 0
