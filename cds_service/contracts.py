"""The hook contracts kept as data under hooks/: service definitions and JSON Schemas."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import jsonschema
import jsonschema_rs
from referencing import Registry, Resource

from cds_service.paths import hooks_dir

SUPPORTED_HOOKS = ("order-select", "order-sign", "patient-view")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request body: where (dotted path) and what."""

    field: str
    problem: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


@cache
def services() -> dict[str, dict[str, Any]]:
    """Service definitions by id, exactly as discovery publishes them."""
    data = json.loads((hooks_dir() / "services.json").read_text("utf-8"))
    out = {}
    for svc in data["services"]:
        if svc["hook"] not in SUPPORTED_HOOKS:
            raise ValueError(f"hooks/services.json: service {svc['id']}: unsupported hook {svc['hook']}")
        out[svc["id"]] = svc
    return out


@cache
def _registry() -> Registry:
    resources = []
    for path in sorted((hooks_dir() / "schemas").glob("*.schema.json")):
        schema = json.loads(path.read_text("utf-8"))
        resources.append((path.name, Resource.from_contents(schema)))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for hooks/schemas/<name>.schema.json, with the other schemas resolvable."""
    schema = _registry().contents(f"{name}.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def refuse_retrieval(uri: str) -> Any:
    """Every schema is shipped and registered: a $ref to any other is an error, never a network call."""
    raise ValueError(f"schemas are never fetched: {uri[:100]}")


@cache
def fast_validator(name: str) -> jsonschema_rs.Validator:
    """A compiled (Rust) validator for the same schema, for the verdict only: when it says valid, the request is
    valid; when it does not, jsonschema (the reference) decides and words the problems. tests/test_contracts_fast.py
    checks by differential fuzzing that it never accepts what jsonschema refuses."""
    reg = _registry()
    resources = [(uri, reg.contents(uri)) for uri in sorted(reg) if uri.startswith("https://")]
    return jsonschema_rs.Draft202012Validator(
        reg.contents(f"{name}.schema.json"),
        registry=jsonschema_rs.Registry(resources, retriever=refuse_retrieval),
        retriever=refuse_retrieval,
        validate_formats=False,
    )


SCHEMAS = ("request", "feedback", "response", "order-select.context", "order-sign.context", "patient-view.context")


def load_all() -> None:
    """Load and check every schema (at start, not on first use)."""
    for name in SCHEMAS:
        validator(name)
        fast_validator(name)


def _dotted(prefix: str, error: jsonschema.ValidationError) -> str:
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (("." if path else "") + str(part))
    return path or "(body)"


def _problems(name: str, instance: Any, prefix: str = "") -> list[Problem]:
    try:
        if fast_validator(name).is_valid(instance):
            return []
    except (UnicodeError, ValueError, TypeError, OverflowError, RecursionError):
        pass  # what Rust cannot take (a lone surrogate, an int over 64 bits): the reference decides
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for err in errors[:20]:
        field = _dotted(prefix, err)
        if err.validator == "required" or err.validator == "dependentRequired":
            missing = err.message.split("'")[1] if "'" in err.message else ""
            if missing:
                field = f"{field}.{missing}" if field != "(body)" else missing
        out.append(Problem(field, _describe(err)))
    return out


def _describe(err: jsonschema.ValidationError) -> str:
    """The problem in words, without echoing the submitted value (it may hold tokens or PHI)."""
    kind, expected = err.validator, cast(Any, err.validator_value)
    if kind == "type":
        return f"must be of type {expected if isinstance(expected, str) else ' or '.join(expected)}"
    if kind in ("required", "dependentRequired"):
        return err.message.replace("a required property", "required")
    if kind == "const":
        return f"must be {json.dumps(expected)}"
    if kind == "enum":
        return "must be one of " + ", ".join(json.dumps(v) for v in expected)
    if kind == "pattern":
        return f"does not match the expected pattern {expected}"
    if kind in ("minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum"):
        return f"violates {kind} {expected}"
    if kind == "anyOf":
        return "must be null or a FHIR resource (an object with resourceType)"
    return err.message[:200]


def check_request(service: dict[str, Any], body: Any) -> list[Problem]:
    """Problems with a hook request for this service; empty when the request is valid."""
    problems = _problems("request", body)
    if problems:
        return problems
    if body["hook"] != service["hook"]:
        return [Problem("hook", f"service {service['id']} answers hook '{service['hook']}', not '{body['hook']}'")]
    return _problems(f"{service['hook']}.context", body["context"], "context")


def check_feedback(body: Any) -> list[Problem]:
    """Problems with a feedback request body; empty when valid."""
    return _problems("feedback", body)


def check_response(body: Any) -> list[Problem]:
    """Problems with a response this service is about to send (used by tests and evaluate)."""
    return _problems("response", body)
