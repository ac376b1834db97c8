"""Request bodies in, JSON answers out: strict JSON (no NaN, Infinity or overflow), errors that name the problem
without echoing values."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson
from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

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
    try:
        data = orjson.dumps(body)
    except TypeError:  # a lone surrogate the client sent, named in an error (its hook): JSON escapes it as \udXXX
        data = json.dumps(body).encode()
    return Response(data, status=status, mimetype="application/json", headers=headers)


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


def _raw_body() -> bytes:
    ctype = (request.mimetype or "").lower()
    if ctype and ctype not in JSON_TYPES and not ctype.endswith("+json"):
        raise BadBody(f"Content-Type must be application/json, not {ctype[:60]}")
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is None and limit and request.environ.get("wsgi.input_terminated"):
        # a chunked body: Werkzeug would stop reading at the limit and hand over the cut body; read one byte more
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise RequestEntityTooLarge()
    else:
        raw = request.get_data(cache=False)
    if not raw:
        raise BadBody("the request body is empty; a JSON object is required")
    return raw


def read_json() -> Any:
    """The request's JSON body, or BadBody."""
    return _parsed(_raw_body())


_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])  # an object's members, each left as its own bytes


def read_hook_json() -> tuple[Any, bytes | None]:
    """A hook request's body with every member parsed but `prefetch`, and the exact bytes of `prefetch` (None when
    the body has none, or is not an object whose members parse one by one: then it is parsed whole, as read_json).
    The chart is most of the body, and the chart sent again (order-select on every edit) need not be read again:
    the caller parses it with parse_member unless facts are kept for exactly these bytes. msgspec checks the whole
    body's syntax while splitting it; each member is then parsed by the same strict parser as read_json."""
    raw = _raw_body()
    try:
        members = _MEMBERS.decode(raw)
        body = {k: orjson.loads(memoryview(v)) for k, v in members.items() if k != "prefetch"}
    except (msgspec.MsgspecError, ValueError, RecursionError):  # orjson's and msgspec's errors, too deep, not UTF-8
        return _parsed(raw), None  # not an object, or a member the strict parser refuses: said as read_json says it
    prefetch = members.get("prefetch")
    return body, bytes(prefetch) if prefetch is not None else None


def parse_member(raw: bytes) -> Any:
    """A member left as bytes by read_hook_json, parsed (BadBody as for a whole body)."""
    return _parsed(raw)


def _parsed(raw: bytes) -> Any:
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
