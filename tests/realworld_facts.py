"""The facts derived from published records and the examples, as JSON, to compare two versions of the reading code.

    python -m tests.realworld_facts ../shared/realworld ../shared/realworld2 --out /tmp/before.json
    ... change the code ...
    python -m tests.realworld_facts ../shared/realworld ../shared/realworld2 --compare /tmp/before.json

Each record (a Bundle, or a bare array of resources) is loaded the way a FHIR server would hold it
(`urn:uuid` references pointed at `Type/id`) and derived for its first Patient; each example request in
hooks/examples is derived from its prefetch and context. The records are read from where they are, never
copied into the project. Exit status 1 when --compare finds a difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.facts.derive import derive
from cds_service.fhir.terminology import load_terminology

TODAY = date(2026, 12, 5)
EXAMPLES = Path(__file__).resolve().parent.parent / "hooks" / "examples"


def _resources(document: Any) -> list[dict[str, Any]]:
    """The resources of a Bundle (searchset, collection, transaction) or a bare array, references resolved."""
    entries = document if isinstance(document, list) else document.get("entry", [])
    full_urls: dict[str, str] = {}
    resources: list[dict[str, Any]] = []
    for entry in entries:
        resource = entry.get("resource", entry) if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or "resourceType" not in resource:
            continue
        resources.append(resource)
        if isinstance(entry.get("fullUrl"), str) and resource.get("id"):
            full_urls[entry["fullUrl"]] = f"{resource['resourceType']}/{resource['id']}"
    text = json.dumps(resources)
    for url, ref in full_urls.items():
        text = text.replace(json.dumps(url), json.dumps(ref))
    loaded: list[dict[str, Any]] = json.loads(text)
    return loaded


def record_charts(directories: list[Path]) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Each record of the directories that has a Patient: its resources and the patient's id, by dir/file name."""
    charts = {}
    for directory in directories:
        for path in sorted(directory.glob("*.json")):
            resources = _resources(json.loads(path.read_text()))
            patient = next((r for r in resources if r["resourceType"] == "Patient"), None)
            if patient is not None and patient.get("id"):
                charts[f"{directory.name}/{path.name}"] = (resources, str(patient["id"]))
    return charts


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, date):
        return value.isoformat()
    return value


def facts_of_all(directories: list[Path]) -> dict[str, Any]:
    ts = load_terminology()
    out: dict[str, Any] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.json")):
            resources = _resources(json.loads(path.read_text()))
            out[f"{directory.name}/{path.name}"] = _plain(derive(resources, ts, TODAY))
    for path in sorted(EXAMPLES.glob("*.json")):
        request = json.loads(path.read_text())
        resources = [
            e["resource"]
            for v in (request.get("prefetch") or {}).values()
            if isinstance(v, dict)
            for e in ([{"resource": v}] if v.get("resourceType") != "Bundle" else v.get("entry", []))
        ]
        out[f"examples/{path.name}"] = _plain(derive(resources, ts, TODAY))
    return out


def _differences(before: Any, after: Any, where: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            found += _differences(before.get(key), after.get(key), f"{where}.{key}" if where else key)
        return found
    return [] if before == after else [f"{where}: {json.dumps(before)[:300]} -> {json.dumps(after)[:300]}"]


def differential(
    doc: str, collect: Callable[[list[Path]], dict[str, Any]], what: str, argv: list[str] | None = None
) -> int:
    """The command line of a differential: collect from the directories, --out writes it, --compare diffs it
    against an earlier --out (exit 1 on a difference)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("directories", nargs="*", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args(argv)
    found = json.loads(json.dumps(collect(args.directories)))
    count = sum(len(v) for v in found.values()) if what == "requests" else len(found)
    if args.out:
        args.out.write_text(json.dumps(found, indent=1, sort_keys=True, ensure_ascii=False))
    if args.compare:
        diffs = _differences(json.loads(args.compare.read_text()), found)
        print("\n".join(diffs) or f"identical for {count} {what}")
        return 1 if diffs else 0
    print(f"{count} {what}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return differential(__doc__, facts_of_all, "records", argv)


if __name__ == "__main__":
    sys.exit(main())
