"""A compiled check in front of fhir.resources: a JSON Schema generated from the fhir.resources R4B models
themselves (each model's elements, their JSON names, cardinalities, required elements and choice groups, nested
models by reference) and compiled with jsonschema-rs, one schema for every resource type the service validates
(the datatypes defined once: a process holds 98 MB after the warm-up, not 347). It only ever says "valid": a
resource it accepts is one fhir.resources accepts as it stands; one it refuses goes to fhir.resources, which
decides and words the refusal.

Where the models check more than a JSON Schema can say, the check is stricter, never looser, and such resources
go to the models: dates must be calendar dates (a day beyond the 28th only in months that have it, no 29 February,
no leap second), no JSON null anywhere, no empty list, no `_element` extension of a primitive, no contained
resource, no url/uuid/base64 value (their own parsers), nothing nested deeper than MAX_DEPTH (cycles of the
models unrolled HOPS times, the bound computed from the schema). The gate,
`tests/test_fast_check.py`: on every resource of the corpus and tens of thousands of mutants, the check never
accepts what fhir.resources refuses."""

from __future__ import annotations

import threading
import types
import typing
from collections.abc import Iterable
from typing import Any

import jsonschema_rs
from fhir.resources.R4B.resource import Resource
from fhir_core.types import FhirBase, FhirElementOrResourceBase

# calendar dates (FHIR's partial-date grammar; days 29-31 only where every year has them), times without leap seconds
_YEAR = "([1-9][0-9]{3})"
_FULL_DATE = f"{_YEAR}(-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|-(0[13-9]|1[0-2])-(29|30)|-(0[13578]|1[02])-31)"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?"
_ZONE = "(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
PATTERNS = {
    "date": f"^{_YEAR}(-(0[1-9]|1[0-2]))?$|^{_FULL_DATE}$",
    "dateTime": f"^{_YEAR}(-(0[1-9]|1[0-2]))?$|^{_FULL_DATE}(T{_TIME}{_ZONE})?$",
    "instant": f"^{_FULL_DATE}T{_TIME}{_ZONE}$",
    "time": f"^{_TIME}$",
}
REFUSED: dict[str, Any] = {"not": {}}  # what the models parse with code of their own: left to them


def _primitive(meta: Any, base: Any) -> dict[str, Any]:
    """The JSON Schema of one primitive, from its fhir_core type (and its pattern where the standard gives one)."""
    kind = type(meta).__name__ if meta is not None else None
    if base is bool:
        return {"type": "boolean"}
    if kind == "Code":
        return {"type": "string", "pattern": "^[^\\s]+(\\s[^\\s]+)*$"}
    if kind == "Id":
        return {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}
    if kind in ("String", "Markdown", "Xhtml"):
        return {"type": "string", "minLength": 1, "pattern": "[ \\r\\n\\t\\S]"}
    if kind in ("Uri", "Canonical"):
        return {"type": "string", "minLength": 1, "pattern": "^\\S*$"}
    if kind == "Oid":
        return {"type": "string", "pattern": "^urn:oid:[0-2](\\.(0|[1-9][0-9]*))+$"}
    if kind == "Date":
        return {"type": "string", "pattern": PATTERNS["date"]}
    if kind == "DateTime":
        return {"type": "string", "pattern": PATTERNS["dateTime"]}
    if kind == "Instant":
        return {"type": "string", "pattern": PATTERNS["instant"]}
    if kind == "Time":
        return {"type": "string", "pattern": PATTERNS["time"]}
    if kind == "Integer":
        return {"type": "integer", "minimum": -2147483648, "maximum": 2147483647}
    if kind == "UnsignedInt":
        return {"type": "integer", "minimum": 0, "maximum": 2147483647}
    if kind == "PositiveInt":
        return {"type": "integer", "minimum": 1, "maximum": 2147483647}
    if kind == "Decimal":
        return {"type": "number"}
    return REFUSED  # Url, Uuid, Base64Binary, Integer64 and anything new: the models decide


def _field_schema(annotation: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one element: its type, a list of it (never empty), a nested model by reference."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_schema(options[0], defs) if len(options) == 1 else REFUSED
    if origin in (list, typing.List):  # noqa: UP006 - what typing.get_origin answers
        (item,) = typing.get_args(annotation)
        return {"type": "array", "minItems": 1, "items": _field_schema(item, defs)}
    if origin is typing.Annotated:
        base, *metas = typing.get_args(annotation)
        meta = next((m for m in metas if type(m).__module__.startswith("fhir_core")), None)
        return _primitive(meta, base)
    if annotation is bool:
        return {"type": "boolean"}
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        if issubclass(annotation, FhirElementOrResourceBase):
            return REFUSED  # a contained resource: its model depends on its resourceType
        model = annotation.get_model_klass()
        _define(model, defs)
        return {"$ref": f"#/$defs/{model.__name__}"}
    return REFUSED


def _define(model: Any, defs: dict[str, Any]) -> None:
    """model's schema into defs (once: nested models refer to each other, Extension to itself)."""
    name = model.__name__
    if name in defs:
        return
    defs[name] = {}  # placeholder against recursion
    properties: dict[str, Any] = {}
    required: list[str] = []
    groups: dict[str, list[str]] = {}
    group_required: set[str] = set()
    for field_name, info in model.model_fields.items():
        json_name = info.alias or field_name
        if field_name.endswith("__ext") or field_name == "fhir_comments":
            continue  # `_element` extensions and comments: not in the fast check
        properties[json_name] = _field_schema(info.annotation, defs)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if info.is_required() or extra.get("element_required"):
            required.append(json_name)
        if isinstance(extra.get("one_of_many"), str):
            groups.setdefault(extra["one_of_many"], []).append(json_name)
            if extra.get("one_of_many_required"):
                group_required.add(extra["one_of_many"])
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if issubclass(model, Resource):
        properties["resourceType"] = {"const": model.get_resource_type()}
        required.append("resourceType")
    if required:
        schema["required"] = sorted(set(required))
    dependent = {
        choice: {"not": {"anyOf": [{"required": [other]} for other in members if other != choice]}}
        for members in groups.values()
        if len(members) > 1
        for choice in members
    }
    if dependent:
        schema["dependentSchemas"] = dependent  # at most one of each choice group
    needed = [{"anyOf": [{"required": [m]} for m in groups[g]]} for g in sorted(group_required)]
    if needed:
        schema["allOf"] = needed
    defs[name] = schema


HOPS = 5  # steps along a cycle of the models (Extension in Extension, Identifier.assigner...) the check follows
MAX_DEPTH = 32  # nested objects and lists: the models give up (recursion) somewhere past 150; real records under 12


def schema_of(*models: Any) -> dict[str, Any]:
    """The JSON Schema of fhir.resources resource models, every nested model in $defs (once, shared by all), a
    resource checked against the model its resourceType names. Bounded in depth: a model on a cycle (Extension,
    Reference and Identifier, every datatype an extension's value can be) is defined once per number of cycle
    steps left (`Name@h`), and with none left refused, so that nothing nested deeper than MAX_DEPTH is accepted
    (the models decide it). The bound is computed from the schema itself, not assumed."""
    defs: dict[str, Any] = {}
    for model in models:
        _define(model, defs)
    bounded = _unrolled(defs, {m.__name__ for m in models})
    for model in models:
        depth = _levels(bounded, model.__name__) - 1
        if depth > MAX_DEPTH:
            raise ValueError(f"the check of {model.__name__} would accept nesting {depth} deep (over {MAX_DEPTH})")
    types = {model.get_resource_type(): model.__name__ for model in models}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"enum": sorted(types)}},
        "allOf": [
            {"if": {"properties": {"resourceType": {"const": rtype}}}, "then": {"$ref": f"#/$defs/{name}"}}
            for rtype, name in sorted(types.items())
        ],
        "$defs": bounded,
    }


def _refs(node: Any) -> set[str]:
    """The names of the definitions a schema refers to."""
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _cycles(defs: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Each definition on a cycle: the definitions of its cycle (its strongly connected component)."""
    edges = {name: _refs(schema) for name, schema in defs.items()}
    reach: dict[str, set[str]] = {}
    for start in edges:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(edges[name])
        reach[start] = seen
    return {a: frozenset(b for b in reach[a] if a in reach[b]) for a in edges if a in reach[a]}


def _unrolled(defs: dict[str, Any], roots: set[str]) -> dict[str, Any]:
    """defs with every cycle unrolled HOPS times: `Name@h` refers to a definition of its own cycle as `Other@h-1`
    (none at h = 0: refused), to any other as it enters it (`Other@HOPS` on a cycle, else `Other`)."""
    cycles = _cycles(defs)

    def entry(name: str) -> str:
        return f"{name}@{HOPS}" if name in cycles else name

    def rewrite(node: Any, own: frozenset[str], left: int) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = node["$ref"].rsplit("/", 1)[-1]
                if target not in own:
                    return {"$ref": f"#/$defs/{entry(target)}"}
                return {"$ref": f"#/$defs/{target}@{left - 1}"} if left > 0 else REFUSED
            return {k: rewrite(v, own, left) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v, own, left) for v in node]
        return node

    out: dict[str, Any] = {}
    for name, schema in defs.items():
        if name in cycles:
            for left in range(HOPS + 1):
                out[f"{name}@{left}"] = rewrite(schema, cycles[name], left)
        else:
            out[name] = rewrite(schema, frozenset(), 0)
    for root in roots & set(cycles):  # a resource is on no cycle (contained resources go to the models)
        out[root] = {"$ref": f"#/$defs/{root}@{HOPS}"}
    return out


def _levels(defs: dict[str, Any], name: str) -> int:
    """How many objects and lists deep an instance of a definition can be (the unrolled definitions are acyclic)."""
    memo: dict[str, int] = {}

    def of(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        if "$ref" in node:
            target = node["$ref"].rsplit("/", 1)[-1]
            if target not in memo:
                memo[target] = of(defs[target])
            return memo[target]
        kind = node.get("type")
        if kind == "object":
            return 1 + max((of(v) for v in node.get("properties", {}).values()), default=0)
        if kind == "array":
            return 1 + of(node.get("items"))
        return 0

    return of({"$ref": f"#/$defs/{name}"})


class FastCheck:
    """The compiled check of a set of resource models: one schema, one validator (the datatypes compiled once, not
    once per resource type), compiled on first use or by compile()."""

    def __init__(self, models: Iterable[Any]) -> None:
        self.models = tuple(models)
        self._validator: jsonschema_rs.Validator | None = None
        self._lock = threading.Lock()

    def compile(self) -> jsonschema_rs.Validator:
        """The validator, compiled once per process."""
        if self._validator is None:
            with self._lock:
                if self._validator is None:
                    self._validator = jsonschema_rs.Draft202012Validator(
                        schema_of(*self.models), validate_formats=False
                    )
        return self._validator

    def accepts(self, resource: dict[str, Any]) -> bool:
        """True only when fhir.resources accepts the resource as it stands, by the model its resourceType names
        (False: ask it). Nesting past MAX_DEPTH is refused by the schema; jsonschema-rs refuses to read a value
        nested past its own limit (TypeError)."""
        try:
            return self.compile().is_valid(resource)
        except (TypeError, ValueError, RecursionError):
            return False
