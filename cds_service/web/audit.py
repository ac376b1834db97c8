"""Around every request: a start time, then CORS and security headers, metrics and one PHI-free audit line; and
what a hook invocation adds to both (record)."""

from __future__ import annotations

import time

from flask import Response, current_app, g, request

from cds_service.engine import Outcome
from cds_service.logs import audit as audit_line
from cds_service.logs import audit_logger
from cds_service.web.state import app_state

UNMETERED = ("/metrics", "/healthz", "/readyz")
_audit = audit_logger()


def start() -> None:
    g.started = time.perf_counter()
    g.log = {}


def finish(resp: Response) -> Response:
    state = app_state(current_app)
    origin = request.headers.get("Origin")
    refused_origin = None
    if origin and (origin in state.origins or "*" in state.origins):
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Expose-Headers"] = "Content-Type"
    elif origin:  # the browser drops the answer without a word: say it here
        refused_origin = origin[:200]
    resp.headers["Vary"] = "Origin"
    resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    route = request.url_rule.rule if request.url_rule else "unmatched"
    service = request.view_args.get("service_id", "-") if request.view_args else "-"
    service = service if service in state.services else "unknown"
    elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
    if (request.method != "OPTIONS" or refused_origin) and route not in UNMETERED:
        state.metrics.requests.labels(route=route, service=service, status=str(resp.status_code)).inc()
        state.metrics.latency.labels(route=route, service=service).observe(elapsed)
        record = {
            "method": request.method,
            "route": route,
            "service": service,
            "status": resp.status_code,
            "latency_ms": round(elapsed * 1000, 2),
        }
        record.update(getattr(g, "log", {}))
        if getattr(g, "auth_failure", None):
            record["auth_failure"] = g.auth_failure
        if refused_origin:
            record["cors_refused"] = f"origin {refused_origin} is not in cors.allowed_origins"
        audit_line(_audit, record)
    return resp


def record(outcome: Outcome) -> None:
    """What one hook invocation adds to the audit line and the metrics: counts and topics, never patient data."""
    metrics = app_state(current_app).metrics
    service = outcome.service_id
    gathered, shown = outcome.gathered, outcome.shown
    if gathered is not None:
        g.log["fallback_calls"] = gathered.fallback_calls
        g.log["left_out_not_this_patients"] = gathered.binding.other_patient
        g.log["left_out_wrong_type"] = gathered.binding.wrong_type
        if gathered.binding.left_out:
            metrics.left_out.labels(service=service).inc(gathered.binding.left_out)
        if gathered.unavailable:
            g.log["unavailable"] = sorted(gathered.unavailable)
        metrics.fallback_calls.labels(service=service).inc(gathered.fallback_calls)
        metrics.fallback_errors.labels(service=service).inc(gathered.fallback_errors)
    g.log["cards"] = outcome.topics
    held = shown.counts
    if held.get("repeat"):
        g.log["repeats_left_out"] = held["repeat"]
    if outcome.failed:
        g.log["derivation_failed"] = True
        metrics.internal_errors.labels(service=service).inc()
    if outcome.failed_topics:
        g.log["card_failures"] = outcome.failed_topics
        for topic in outcome.failed_topics:
            metrics.card_failures.labels(service=service, topic=topic).inc()
    for topic in outcome.topics:
        metrics.cards.labels(service=service, topic=topic).inc()
    if held:
        g.log["held_back"] = held
    if shown.missed:
        g.log["not_known"] = shown.missed
        for what in shown.missed:
            metrics.ledger_misses.labels(what=what).inc()
    for topic, why in shown.held:
        metrics.held_back.labels(service=service, topic=topic, why=why).inc()
