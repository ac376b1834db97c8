"""The CDS Hooks routes as one Blueprint: discovery, invocation, the operator's explain, feedback, CORS preflight,
health, readiness and metrics. Authentication is the Blueprint's gate (web/auth.py), never a route's chore."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from cds_service import contracts
from cds_service.gather.gathering import MissingPrefetch
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
    service = state.services[service_id]
    kept = None
    try:
        body, prefetch = read_hook_json() if not explain else (read_json(), None)
        if prefetch is not None:
            context = body.get("context")
            kept = state.engine.recall(
                service, prefetch, context.get("patientId") if isinstance(context, dict) else None
            )
            if kept is None:
                body["prefetch"] = parse_member(prefetch)
    except BadBody as exc:
        return error(400, exc.message)
    # a prefetch recalled by its exact bytes passed this check when those bytes first came (the schema checks
    # prefetch on its own: no rule ties it to another member), so the rest of the body is what is checked here
    problems = contracts.check_request(service, body)
    if problems:
        return error(400, "invalid hook request", problems)
    g.log["hookInstance"] = str(body["hookInstance"])[:100]
    try:
        outcome = state.engine.invoke(
            service, body, explain=explain, client=getattr(g, "client", None), prefetch=prefetch, recalled=kept
        )
    except MissingPrefetch as exc:
        g.log["missing_prefetch"] = exc.keys
        g.log["why"] = exc.reason
        return error(
            412, "required prefetch data is missing and cannot be fetched", missing=exc.keys, reason=exc.reason
        )
    metrics = state.metrics
    gathered = outcome.gathered
    if gathered is not None:
        g.log["fallback_calls"] = gathered.fallback_calls
        g.log["left_out_not_this_patients"] = gathered.binding.other_patient
        g.log["left_out_wrong_type"] = gathered.binding.wrong_type
        if gathered.binding.left_out:
            metrics.left_out.labels(service=service_id).inc(gathered.binding.left_out)
        if gathered.unavailable:
            g.log["unavailable"] = sorted(gathered.unavailable)
        metrics.fallback_calls.labels(service=service_id).inc(gathered.fallback_calls)
        metrics.fallback_errors.labels(service=service_id).inc(gathered.fallback_errors)
    g.log["cards"] = outcome.topics
    if outcome.repeats_left_out:
        g.log["repeats_left_out"] = outcome.repeats_left_out
    if outcome.failed:
        g.log["derivation_failed"] = True
        metrics.internal_errors.labels(service=service_id).inc()
    if outcome.failed_topics:
        g.log["card_failures"] = outcome.failed_topics
        for topic in outcome.failed_topics:
            metrics.card_failures.labels(service=service_id, topic=topic).inc()
    for topic in outcome.topics:
        metrics.cards.labels(service=service_id, topic=topic).inc()
    if outcome.held_back:
        g.log["held_back"] = outcome.held_back
    if outcome.missed:
        g.log["not_known"] = outcome.missed
        for what in outcome.missed:
            metrics.ledger_misses.labels(what=what).inc()
    for topic, why in outcome.held_topics:
        metrics.held_back.labels(service=service_id, topic=topic, why=why).inc()
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
    snooze_rules = state.settings.cards["snooze"]
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
