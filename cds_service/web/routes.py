"""The CDS Hooks routes as one Blueprint: discovery, invocation, the operator's explain, feedback, CORS preflight,
health, readiness and metrics. Authentication is the Blueprint's gate (web/auth.py), never a route's chore."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from cds_service import contracts
from cds_service.engine import InvalidRequest, Prefetch
from cds_service.gather.gathering import MissingPrefetch
from cds_service.web import audit
from cds_service.web.auth import RETRY_AFTER_SECONDS, gate, operator_only, public
from cds_service.web.body import BadBody, error, json_response, parse_member, read_hook_json, read_json
from cds_service.web.state import AppState, app_state

bp = Blueprint("cds", __name__)
bp.before_request(gate)


def _state() -> AppState:
    return app_state(current_app)


@bp.route("/cds-services", methods=["OPTIONS"])
@bp.route("/cds-services/<service_id>", methods=["OPTIONS"])
@bp.route("/cds-services/<service_id>/feedback", methods=["OPTIONS"])
def preflight(service_id: str | None = None) -> Response:
    resp = Response(status=204)
    resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    resp.headers["Access-Control-Max-Age"] = "600"
    return resp


@bp.get("/cds-services")
def discovery() -> Response:
    return json_response({"services": list(_state().services.values())})


@bp.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    return _invoke(_state(), service_id, explain=False)


@bp.route(
    "/cds-services/<service_id>/explain",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    provide_automatic_options=False,
)
@operator_only
def explain(service_id: str) -> Response:
    """The cards plus why: facts, verdicts, unmatched codings. For operators only: it needs the usual JWT and the
    operator token (X-HER2-CDS-Operator) whose SHA-256 is configured; otherwise it does not exist, in any method
    (every method is routed here so that the gate answers 404 before Flask could answer 405 or OPTIONS)."""
    if request.method != "POST":
        return error(405, f"method {request.method} not allowed here")
    return _invoke(_state(), service_id, explain=True)


def _invoke(state: AppState, service_id: str, explain: bool) -> Response:
    """Parse, check the envelope, one engine call, one audit record. The prefetch is left as bytes: the engine
    parses and checks it only when no facts are kept for exactly these bytes (the chart sent again on every edit)."""
    service = state.services[service_id]
    try:
        body, raw = read_hook_json() if not explain else (read_json(), None)
        problems = contracts.check_request(service, body)
        if problems and raw is not None:  # said as for the whole body: the prefetch's problems too
            problems = contracts.check_request(service, {**body, "prefetch": parse_member(raw)})
        if problems:
            return error(400, "invalid hook request", problems)
        g.log["hookInstance"] = str(body["hookInstance"])[:100]
        prefetch = Prefetch(raw, parse_member) if raw is not None else None
        outcome = state.engine.invoke(service, body, prefetch, getattr(g, "client", None), explain)
    except BadBody as exc:
        return error(400, exc.message)
    except InvalidRequest as exc:
        return error(400, "invalid hook request", exc.problems)
    except MissingPrefetch as exc:
        g.log["missing_prefetch"] = exc.keys
        g.log["why"] = exc.reason
        return error(
            412, "required prefetch data is missing and cannot be fetched", missing=exc.keys, reason=exc.reason
        )
    audit.record(outcome)
    if explain:
        g.log["explain"] = True
        return json_response({**outcome.body, "explanation": outcome.explanation})
    return json_response(outcome.body)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    state = _state()
    try:
        body = read_json()
    except BadBody as exc:
        return error(400, exc.message)
    problems = contracts.check_feedback(body)
    if problems:
        return error(400, "invalid feedback", problems)
    issuer = getattr(g, "client", None)
    snooze_rules = state.engine.snooze_rules
    try:
        if state.ledger is not None:
            state.ledger.flush()  # the card this feedback is about may still be in the writer's queue
            foreign = _cards_of_another_issuer(state, body["feedback"], issuer)
            if foreign:
                g.log["feedback_refused"] = foreign
                return error(403, f"{foreign} card(s) of this feedback were not issued to this client; nothing stored")
        new = state.store.store(service_id, body["feedback"], issuer)
    except Exception as exc:  # noqa: BLE001 - the database is down: say so, lose nothing silently
        # the class only: a driver's message or a traceback could carry the clinician's comment
        logging.getLogger("her2_cds").error("feedback could not be stored: %s", type(exc).__name__)
        resp = error(503, "feedback could not be stored; retry later")
        resp.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return resp
    for entry in new:
        state.metrics.feedback.labels(service=service_id, outcome=entry["outcome"]).inc()
    g.log["feedback_new"] = len(new)
    if state.ledger is not None and snooze_rules and new:  # a replay is not new: it changes nothing
        try:
            made = state.ledger.snooze_from_feedback(new, snooze_rules, issuer)
            if made:
                g.log["snoozed"] = made
        except Exception as exc:  # noqa: BLE001 - the feedback is stored; the snooze is a convenience
            logging.getLogger("her2_cds").error("snooze could not be stored: %s", type(exc).__name__)
            state.metrics.ledger_misses.labels(what="snooze write").inc()
    return json_response({})


def _cards_of_another_issuer(state: AppState, entries: list[dict[str, Any]], issuer: str | None) -> int:
    """How many of the cards feedback is about were issued to another client (by the ledger): one EHR may not
    speak for another's cards, nor snooze another's patient."""
    assert state.ledger is not None
    issued = state.ledger.issuers_of(list({e["card"] for e in entries}))
    return sum(1 for who in issued.values() if who != issuer)


@bp.get("/healthz")
@public
def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.get("/readyz")
@public
def readyz() -> Response:
    state = _state()
    checks = {"config": True, "database": state.store.ping(), "cache": state.replay.ping()}
    return json_response({"ready": all(checks.values()), "checks": checks}, 200 if all(checks.values()) else 503)


@bp.get("/metrics")
@public
def metrics() -> Response:
    payload, ctype = _state().metrics.render()
    return Response(payload, mimetype=ctype.split(";")[0], content_type=ctype)
