"""Authentication as a gate on the Blueprint: every route needs a verified JWT unless it is marked `public`, so
no route can forget it. Before the token: an operator-only route checks the operator token (else it does not
exist), and a route about a service checks that the service exists (404)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, g, request

from cds_service.storage.first_use import CacheUnavailable
from cds_service.web.body import error, json_response
from cds_service.web.jwt_verifier import AuthError
from cds_service.web.state import AppState, app_state

RETRY_AFTER_SECONDS = "2"  # a 503 for a database or cache outage: we recover within 2 s of the server's return
OPERATOR_HEADER = "X-HER2-CDS-Operator"

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark a route that needs no token (health, readiness, metrics: the monitoring network's)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def operator_only(view: F) -> F:
    """Mark a route that exists only for a caller with the configured operator token (and a JWT)."""
    view.operator_only = True  # type: ignore[attr-defined]
    return view


def gate() -> Response | None:
    """The Blueprint's before_request: None lets the route run; a Response answers instead of it."""
    view = current_app.view_functions.get(request.endpoint or "")
    state = app_state(current_app)
    if getattr(view, "operator_only", False) and not _operator(state):
        return error(404, "not found")  # in every method, OPTIONS included: for others the route does not exist
    if request.method == "OPTIONS" or getattr(view, "public", False):
        return None
    service_id = (request.view_args or {}).get("service_id")
    if service_id is not None and service_id not in state.services:
        return error(404, f"no CDS service with id '{service_id[:100]}'")
    return authenticate(state)


def _operator(state: AppState) -> bool:
    given = request.headers.get(OPERATOR_HEADER, "")
    return bool(state.explain_hash) and hmac.compare_digest(
        hashlib.sha256(given.encode()).hexdigest(), str(state.explain_hash)
    )


def authenticate(state: AppState) -> Response | None:
    """Verify the bearer token for the URL called: None when it passes (or auth is off), else 401 (503 when the
    replay cache cannot prove the token fresh). The reason goes to the audit line and a fixed metric label."""
    if not state.verifier.required:
        return None
    audience = state.public_base + request.path if state.public_base else request.base_url
    try:
        claims = state.verifier.verify(request.headers.get("Authorization"), audience)
        g.client = str(claims.get("iss", ""))[:300]
    except AuthError as exc:
        state.metrics.auth_failures.labels(reason=exc.label).inc()
        g.auth_failure = exc.reason
        return json_response({"error": "unauthorized"}, 401, {"WWW-Authenticate": "Bearer"})
    except CacheUnavailable as exc:  # cannot prove the jti is fresh: refuse, but say it is on our side
        state.metrics.auth_failures.labels(reason=exc.label).inc()
        g.auth_failure = f"{exc.label} ({exc})" if str(exc) != exc.label else exc.label
        return json_response(
            {"error": "tokens cannot be verified right now; retry later"}, 503, {"Retry-After": RETRY_AFTER_SECONDS}
        )
    return None
