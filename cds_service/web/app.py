"""Flask app factory: discovery, invocation, feedback, health and metrics routes."""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import logging
import math
import time
from typing import Any

import orjson
from flask import Flask, Response, g, request

from cds_service import contracts
from cds_service.config import Settings
from cds_service.config import load as load_config
from cds_service.engine import Engine
from cds_service.gather.gathering import MissingPrefetch
from cds_service.logs import audit as audit_line
from cds_service.logs import audit_logger
from cds_service.metrics import Metrics
from cds_service.storage.feedback import FeedbackStore
from cds_service.storage.first_use import CacheUnavailable
from cds_service.storage.first_use import from_url as replay_cache_from_url
from cds_service.storage.ledger import Ledger
from cds_service.web.jwt_verifier import AuthError, Verifier

JSON_TYPES = ("application/json", "application/fhir+json")
RETRY_AFTER_SECONDS = "2"  # a 503 for a database or cache outage: we recover within 2 s of the server's return


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def _error(status: int, message: str, problems: list[contracts.Problem] | None = None,
           **extra: Any) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = [p.as_json() for p in problems]
    body.update({k: v for k, v in extra.items() if v})
    return _json(body, status)


class BadBody(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NonFinite(ValueError):
    """A number JSON does not have (NaN, Infinity) or one too large for a float."""


def _no_constant(name: str) -> Any:
    raise NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFinite(text[:20])
    return value


def _read_json() -> Any:
    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in JSON_TYPES and not ctype.endswith("+json"):
        raise BadBody(f"Content-Type must be application/json, not {ctype[:60]}")
    raw = request.get_data(cache=False)
    if not raw:
        raise BadBody("the request body is empty; a JSON object is required")
    try:
        return orjson.loads(raw)  # strict: no NaN, Infinity, overflow, lone surrogate or depth over 1024
    except orjson.JSONDecodeError:
        pass  # the standard parser, slower, says precisely what is wrong
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except NonFinite as exc:
        raise BadBody("NaN and Infinity are not JSON numbers; send a finite number") from exc
    except RecursionError as exc:
        raise BadBody("the JSON body is nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise BadBody("the body is not UTF-8 JSON text") from exc
    except ValueError as exc:
        raise BadBody(f"malformed JSON: {str(exc)[:120]}") from exc


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from settings (default: embedded defaults + $HER2_CDS_CONFIG)."""
    settings = settings or load_config()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.limits.get("max_body_bytes", 5_000_000))
    for name in ("request", "feedback", "response", "order-select.context",
                 "order-sign.context", "patient-view.context"):
        contracts.validator(name)  # load and check every schema at start, not on first use
    replay = replay_cache_from_url(settings["storage"]["cache_url"],
                                   max_entries=int(settings["storage"].get("memory_cache_max_entries", 200_000)))
    verifier = Verifier(settings.auth, replay)
    store = FeedbackStore(settings["storage"]["database_url"])
    try:
        store.create_schema()
    except Exception as exc:  # noqa: BLE001 - start anyway; /readyz reports the database
        logging.getLogger("her2_cds").warning("feedback database not reachable at start (%s); "
                                              "will retry on first feedback", type(exc).__name__)
    metrics = Metrics()
    ledger_cfg = settings.data.get("ledger") or {}
    ledger = Ledger(store.engine, ledger_cfg, lambda what: metrics.ledger_misses.labels(what=what).inc(),
                    store.create_schema) if ledger_cfg.get("enabled", True) else None
    if ledger is not None:
        ledger.purge_in_background(int(ledger_cfg.get("retention_days", 730)))
    engine = Engine(settings, ledger)
    services = engine.services
    audit = audit_logger()
    origins = set(settings["cors"]["allowed_origins"])
    public_base = (settings["public_base_url"] or "").rstrip("/")
    app.extensions["her2_cds"] = {"settings": settings, "engine": engine, "store": store,
                                  "metrics": metrics, "replay": replay}

    def authenticate() -> Response | None:
        if not verifier.required:
            return None
        audience = public_base + request.path if public_base else request.base_url
        try:
            claims = verifier.verify(request.headers.get("Authorization"), audience)
            g.client = str(claims.get("iss", ""))[:300]
        except AuthError as exc:
            metrics.auth_failures.labels(reason=exc.label).inc()
            g.auth_failure = exc.reason
            return _json({"error": "unauthorized"}, 401, {"WWW-Authenticate": "Bearer"})
        except CacheUnavailable as exc:  # cannot prove the jti is fresh: refuse, but say it is on our side
            metrics.auth_failures.labels(reason=exc.label).inc()
            g.auth_failure = f"{exc.label} ({exc})" if str(exc) != exc.label else exc.label
            return _json({"error": "tokens cannot be verified right now; retry later"}, 503,
                         {"Retry-After": RETRY_AFTER_SECONDS})
        return None

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.log = {}

    @app.after_request
    def _finish(resp: Response) -> Response:
        origin = request.headers.get("Origin")
        refused_origin = None
        if origin and (origin in origins or "*" in origins):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Expose-Headers"] = "Content-Type"
        elif origin:  # the browser drops the answer without a word: say it here
            refused_origin = origin[:200]
        resp.headers["Vary"] = "Origin"
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        route = request.url_rule.rule if request.url_rule else "unmatched"
        service = request.view_args.get("service_id", "-") if request.view_args else "-"
        service = service if service in services else "unknown"
        elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
        if (request.method != "OPTIONS" or refused_origin) and route not in ("/metrics", "/healthz", "/readyz"):
            metrics.requests.labels(route=route, service=service, status=str(resp.status_code)).inc()
            metrics.latency.labels(route=route, service=service).observe(elapsed)
            record = {"method": request.method, "route": route, "service": service,
                      "status": resp.status_code, "latency_ms": round(elapsed * 1000, 2)}
            record.update(getattr(g, "log", {}))
            if getattr(g, "auth_failure", None):
                record["auth_failure"] = g.auth_failure
            if refused_origin:
                record["cors_refused"] = f"origin {refused_origin} is not in cors.allowed_origins"
            audit_line(audit, record)
        return resp

    @app.route("/cds-services", methods=["OPTIONS"])
    @app.route("/cds-services/<service_id>", methods=["OPTIONS"])
    @app.route("/cds-services/<service_id>/feedback", methods=["OPTIONS"])
    def preflight(service_id: str | None = None) -> Response:
        resp = Response(status=204)
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        resp.headers["Access-Control-Max-Age"] = "600"
        return resp

    @app.get("/cds-services")
    def discovery() -> Response:
        if (denied := authenticate()) is not None:
            return denied
        return _json({"services": list(services.values())})

    @app.post("/cds-services/<service_id>")
    def invoke(service_id: str, explain: bool = False) -> Response:
        service = services.get(service_id)
        if service is None:
            return _error(404, f"no CDS service with id '{service_id[:100]}'")
        if (denied := authenticate()) is not None:
            return denied
        try:
            body = _read_json()
        except BadBody as exc:
            return _error(400, exc.message)
        problems = contracts.check_request(service, body)
        if problems:
            return _error(400, "invalid hook request", problems)
        g.log["hookInstance"] = str(body["hookInstance"])[:100]
        try:
            outcome = engine.invoke(service, body, explain=explain, client=getattr(g, "client", None))
        except MissingPrefetch as exc:
            g.log["missing_prefetch"] = exc.keys
            g.log["why"] = exc.reason
            return _error(412, "required prefetch data is missing and cannot be fetched",
                          missing=exc.keys, reason=exc.reason)
        gathered = outcome.gathered
        if gathered is not None:
            g.log["fallback_calls"] = gathered.fallback_calls
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
        for topic, why in outcome.held_topics:
            metrics.held_back.labels(service=service_id, topic=topic, why=why).inc()
        if explain:
            g.log["explain"] = True
            return _json({**outcome.body, "explanation": outcome.explanation})
        return _json(outcome.body)

    explain_hash = (settings.data.get("operator") or {}).get("explain_token_sha256")

    @app.post("/cds-services/<service_id>/explain")
    def explain(service_id: str) -> Response:
        """The cards plus why: facts, verdicts, unmatched codings. For operators only: it needs the usual JWT
        and the operator token (X-HER2-CDS-Operator) whose SHA-256 is configured; otherwise it does not exist."""
        given = request.headers.get("X-HER2-CDS-Operator", "")
        if not explain_hash or not hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), explain_hash):
            return _error(404, "not found")
        return invoke(service_id, explain=True)

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        if service_id not in services:
            return _error(404, f"no CDS service with id '{service_id[:100]}'")
        if (denied := authenticate()) is not None:
            return denied
        try:
            body = _read_json()
        except BadBody as exc:
            return _error(400, exc.message)
        problems = contracts.check_feedback(body)
        if problems:
            return _error(400, "invalid feedback", problems)
        try:
            new = store.store(service_id, body["feedback"])
        except Exception as exc:  # noqa: BLE001 - the database is down: say so, lose nothing silently
            # the class only: a driver's message or a traceback could carry the clinician's comment
            logging.getLogger("her2_cds").error("feedback could not be stored: %s", type(exc).__name__)
            resp = _error(503, "feedback could not be stored; retry later")
            resp.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return resp
        for entry in body["feedback"]:
            metrics.feedback.labels(service=service_id, outcome=entry["outcome"]).inc()
        g.log["feedback_new"] = new
        if ledger is not None and settings.cards.get("snooze"):
            try:
                ledger.flush()  # the card this feedback is about may still be in the writer's queue
                made = ledger.snooze_from_feedback(body["feedback"], settings.cards["snooze"])
                if made:
                    g.log["snoozed"] = made
            except Exception as exc:  # noqa: BLE001 - the feedback is stored; the snooze is a convenience
                logging.getLogger("her2_cds").error("snooze could not be stored: %s", type(exc).__name__)
                metrics.ledger_misses.labels(what="snooze write").inc()
        return _json({})

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        checks = {"config": True, "database": store.ping(), "cache": replay.ping()}
        return _json({"ready": all(checks.values()), "checks": checks},
                     200 if all(checks.values()) else 503)

    @app.get("/metrics")
    def metrics_route() -> Response:
        payload, ctype = metrics.render()
        return Response(payload, mimetype=ctype.split(";")[0], content_type=ctype)

    @app.errorhandler(413)
    def too_large(_: Exception) -> Response:
        return _error(413, f"request body larger than {app.config['MAX_CONTENT_LENGTH']} bytes")

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return _error(404, "not found")

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return _error(405, f"method {request.method} not allowed here")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        if isinstance(exc, RecursionError):
            return _error(400, "the request is nested too deeply")
        status = getattr(exc, "code", None)
        if isinstance(status, int) and 400 <= status < 500:
            return _error(status, getattr(exc, "description", "bad request"))
        logging.getLogger("her2_cds").error("unhandled %s", type(exc).__name__)
        return _error(500, "internal error; the request was not processed")

    gc.freeze()  # start-up objects (schemas, models, value sets) leave the collector's scans: faster requests
    return app


def serving_app(settings: Settings | None = None) -> Flask:
    """The app as a server process runs it: built, then warmed by one shipped example (after gunicorn's fork,
    in each worker), so that no real request pays for cold caches."""
    app = create_app(settings)
    seconds = app.extensions["her2_cds"]["engine"].warm()
    gc.freeze()  # what the warm-up built stays out of the collector's scans too
    logging.getLogger("her2_cds").info("warmed up in %.0f ms", seconds * 1000)
    return app

