"""What the service answers, end to end through the Flask app, to compare two versions of the code that should
answer the same (a structural change: issue 24).

    python -m tests.realworld_responses ../shared/realworld ../shared/realworld2 --out /tmp/before.json
    ... change the code ...
    python -m tests.realworld_responses ../shared/realworld ../shared/realworld2 --compare /tmp/before.json

Three tables, each answer with its card and suggestion uuids taken out:
- every example request in hooks/examples, as sent, and re-sent to the other hooks (its drafts kept);
- every record in the directories given and every fixture chart, through every hook: patient-view, and
  order-select / order-sign with a T-DXd draft (5.4 mg/kg, then 4.4 mg/kg) and with an eribulin draft, each
  also through the operator's explain route (facts and verdicts, line by line);
- the web layer on a table of request shapes (bad bodies, wrong hooks, unknown services, methods, feedback);
- the benchmarks' generated charts: bench_unseen's 150 order-selects never seen and bench_http's changing chart,
  each also through explain (issue 26: the fast path gives the same facts and cards).
One app serves each table in order, so repeats held back by the repeat window are compared too. Exit status 1
when --compare finds a difference.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from hashlib import sha256
from pathlib import Path
from typing import Any

from cds_service.config import load
from cds_service.web.app import create_app
from cds_service.web.state import app_state
from tests.fixtures import builders as b
from tests.fixtures import patients
from tests.helpers import SERVICE_FOR_HOOK, hook_request, prefetch_from
from tests.realworld_facts import EXAMPLES, differential, record_charts

OPERATOR_TOKEN = "differential-operator-token"
HOOKS = ("patient-view", "order-select", "order-sign")


def _draft(name: str, dose: tuple[float, str] | None) -> dict[str, Any]:
    return b.med_request(name, "2026-12-05", status="draft", intent="proposal", dose=dose, id=f"draft-{name[:8]}")


DRAFTS = {
    "tdxd-5.4": _draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg")),
    "tdxd-4.4": _draft("fam-trastuzumab deruxtecan", (4.4, "mg/kg")),
    "eribulin": _draft("eribulin", None),
}


def _app(work: Path) -> Any:
    settings = load(
        None,
        overrides={
            "storage": {"database_url": f"sqlite:///{work}/db.sqlite", "cache_url": f"sqlite:///{work}/cache.sqlite"},
            "auth": {"required": False},
            "operator": {"explain_token_sha256": sha256(OPERATOR_TOKEN.encode()).hexdigest()},
        },
    )
    return create_app(settings).test_client()


def _answer(resp: Any) -> dict[str, Any]:
    """Status and body, uuids out (they are new on every answer)."""
    body = resp.get_json(silent=True)
    text = json.dumps(body, sort_keys=True)
    for card in (body or {}).get("cards", []) if isinstance(body, dict) else []:
        text = text.replace(card.get("uuid", "\0"), "<uuid>")
        for s in card.get("suggestions", []):
            text = text.replace(s.get("uuid", "\0"), "<uuid>")
    return {"status": resp.status_code, "body": json.loads(text)}


def _post(client: Any, hook: str, body: dict[str, Any], explain: bool = False) -> dict[str, Any]:
    route = f"/cds-services/{SERVICE_FOR_HOOK[hook]}" + ("/explain" if explain else "")
    headers = {"X-HER2-CDS-Operator": OPERATOR_TOKEN} if explain else {}
    return _answer(client.post(route, json=body, headers=headers))


def _through_every_hook(client: Any, resources: list[dict[str, Any]], patient_id: str) -> dict[str, Any]:
    prefetch = prefetch_from(resources)
    out: dict[str, Any] = {}
    for hook in HOOKS:
        variants = {"": []} if hook == "patient-view" else {k: [v] for k, v in DRAFTS.items()}
        for name, drafts in variants.items():
            body = hook_request(hook, patient_id, prefetch=copy.deepcopy(prefetch), draft_orders=drafts)
            body["hookInstance"] = "d1f0c6a4-0000-4000-8000-000000000000"
            out[f"{hook} {name}".strip()] = _post(client, hook, body)
            out[f"{hook} {name} explain".strip()] = _post(client, hook, body, explain=True)
    return out


def _charts(directories: list[Path]) -> dict[str, tuple[list[dict[str, Any]], str]]:
    charts = record_charts(directories)
    for name in sorted(n for n in dir(patients) if not n.startswith("_")):
        make = getattr(patients, name)
        if callable(make) and getattr(make, "__module__", "") == patients.__name__:
            charts[f"fixtures/{name}"] = (make(), "p1")
    return charts


def _examples(client: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        request = json.loads(path.read_text())
        for hook in HOOKS:
            body = copy.deepcopy(request)
            body["hook"] = hook
            if hook == "patient-view":
                body["context"].pop("draftOrders", None)
                body["context"].pop("selections", None)
            out[f"{path.name} → {hook}"] = _post(client, hook, body)
            out[f"{path.name} → {hook} explain"] = _post(client, hook, body, explain=True)
    return out


def _shapes(client: Any) -> dict[str, Any]:
    """The web layer: what each request shape gets."""
    good = hook_request("patient-view", "p1", prefetch=prefetch_from(patients.bell()))
    good["hookInstance"] = "d1f0c6a4-0000-4000-8000-000000000001"
    select_no_drug = hook_request(
        "order-select", "p1", draft_orders=[{"resourceType": "MedicationRequest", "id": "x", "status": "draft"}]
    )
    select_no_drug["hookInstance"] = "d1f0c6a4-0000-4000-8000-000000000002"
    pv, sel = "/cds-services/her2-patient-view", "/cds-services/her2-order-select"
    no_instance = json.dumps({k: v for k, v in good.items() if k != "hookInstance"}).encode()
    no_prefetch = json.dumps({k: v for k, v in good.items() if k != "prefetch"}).encode()
    unknown_card = {
        "card": "9b5f1d1c-0000-4000-8000-000000000000",
        "outcome": "accepted",
        "outcomeTimestamp": "2026-12-05T10:00:00Z",
        "acceptedSuggestions": [{"id": "9b5f1d1c-0000-4000-8000-000000000001"}],
    }
    raw: list[tuple[str, str, str, bytes | None, dict[str, str]]] = [
        ("discovery", "GET", "/cds-services", None, {}),
        ("health", "GET", "/healthz", None, {}),
        ("good", "POST", pv, json.dumps(good).encode(), {}),
        ("good again (kept by its prefetch bytes)", "POST", pv, json.dumps(good).encode(), {}),
        ("order-select without a drug", "POST", sel, json.dumps(select_no_drug).encode(), {}),
        ("not JSON", "POST", pv, b"{not json", {}),
        ("empty body", "POST", pv, b"", {}),
        ("an array", "POST", pv, b"[]", {}),
        (
            "no hookInstance",
            "POST",
            pv,
            no_instance,
            {},
        ),
        ("the wrong hook", "POST", pv, json.dumps({**good, "hook": "order-sign"}).encode(), {}),
        ("context without patientId", "POST", pv, json.dumps({**good, "context": {"userId": "x"}}).encode(), {}),
        ("prefetch a string", "POST", pv, json.dumps({**good, "prefetch": "x"}).encode(), {}),
        ("prefetch key a number", "POST", pv, json.dumps({**good, "prefetch": {"patient": 3}}).encode(), {}),
        (
            "no prefetch, no FHIR server",
            "POST",
            pv,
            no_prefetch,
            {},
        ),
        ("unknown service", "POST", "/cds-services/nope", json.dumps(good).encode(), {}),
        ("GET an invocation", "GET", pv, None, {}),
        ("explain without the operator token", "POST", pv + "/explain", json.dumps(good).encode(), {}),
        ("explain by GET", "GET", pv + "/explain", None, {"X-HER2-CDS-Operator": OPERATOR_TOKEN}),
        ("preflight", "OPTIONS", pv, None, {"Origin": "https://ehr.example", "Access-Control-Request-Method": "POST"}),
        ("feedback not JSON", "POST", pv + "/feedback", b"nope", {}),
        ("feedback empty", "POST", pv + "/feedback", json.dumps({"feedback": []}).encode(), {}),
        (
            "feedback for an unknown card",
            "POST",
            pv + "/feedback",
            json.dumps({"feedback": [unknown_card]}).encode(),
            {},
        ),
    ]
    out: dict[str, Any] = {}
    for name, method, path, data, headers in raw:
        resp = client.open(path, method=method, data=data, content_type="application/json", headers=headers)
        answer = _answer(resp)
        answer["headers"] = {k: resp.headers.get(k) for k in ("Content-Type", "Allow", "Access-Control-Allow-Methods")}
        out[name] = answer
    return out


def _generated(client: Any) -> dict[str, Any]:
    """The order-selects the benchmarks send (tests/benchmarks: bench_unseen's seeds, bench_http's changing chart)."""
    from tests.benchmarks.bench_http import _request  # the benchmarks' own request builder

    bodies = {f"unseen {seed}": _request(300, seed) for seed in range(1000, 1150)}
    bodies["changing"] = _request(300, changing=True)
    out: dict[str, Any] = {}
    for name, body in bodies.items():
        out[name] = _post(client, "order-select", body)
        out[f"{name} explain"] = _post(client, "order-select", body, explain=True)
    return out


def responses_of_all(directories: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        client = _app(Path(work))
        out["examples"] = _examples(client)
        for name, (resources, patient_id) in _charts(directories).items():
            out[name] = _through_every_hook(client, resources, patient_id)
        (Path(work) / "web").mkdir()
        web = _app(Path(work) / "web")
        out["web"] = _shapes(web)
        (Path(work) / "generated").mkdir()
        generated = _app(Path(work) / "generated")
        out["generated"] = _generated(generated)
        for used in (client, web, generated):  # the ledger writes behind: done before the directory goes
            ledger = app_state(used.application).ledger
            if ledger is not None:
                ledger.flush()
    return out


def main(argv: list[str] | None = None) -> int:
    return differential(__doc__, responses_of_all, "requests", argv)


if __name__ == "__main__":
    sys.exit(main())
