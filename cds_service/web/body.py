"""Request bodies in, JSON answers out: strict JSON (no NaN, Infinity or overflow), errors that name the problem
without echoing values."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from flask import Response, request

from cds_service import contracts

JSON_TYPES = ("application/json", "application/fhir+json")


class BadBody(Exception):
    """A body that is not a JSON object we can read; message says why (never the body's values)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NonFinite(ValueError):
    """A number JSON does not have (NaN, Infinity) or one too large for a float."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def error(status: int, message: str, problems: list[contracts.Problem] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = [p.as_json() for p in problems]
    body.update({k: v for k, v in extra.items() if v})
    return json_response(body, status)


def _no_constant(name: str) -> Any:
    raise NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFinite(text[:20])
    return value


def read_json() -> Any:
    """The request's JSON body, or BadBody."""
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
