"""Error answers: JSON that says what is wrong, never a traceback or a value from the request."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request

from cds_service.web.body import error


def too_large(_: Exception) -> Response:
    return error(413, f"request body larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes")


def not_found(_: Exception) -> Response:
    return error(404, "not found")


def not_allowed(_: Exception) -> Response:
    return error(405, f"method {request.method} not allowed here")


def unexpected(exc: Exception) -> Response:
    if isinstance(exc, RecursionError):
        return error(400, "the request is nested too deeply")
    status = getattr(exc, "code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return error(status, getattr(exc, "description", "bad request"))
    logging.getLogger("her2_cds").error("unhandled %s", type(exc).__name__)
    return error(500, "internal error; the request was not processed")


def register(app: Flask) -> None:
    app.register_error_handler(413, too_large)
    app.register_error_handler(404, not_found)
    app.register_error_handler(405, not_allowed)
    app.register_error_handler(Exception, unexpected)
