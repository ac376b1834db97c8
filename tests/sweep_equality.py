"""The sweep judges as patient-view does: every chart given, alone in an export, swept; its row's cards set against
what `her2-cds evaluate` returns for a patient-view of the same chart (the HTTP code path). Then all the charts in
one export, each patient's row against its row alone. Run by hand on published records:

    python -m tests.sweep_equality ../shared/realworld ../shared/realworld2

Exit status 1 on a difference. tests/test_sweep.py runs the same on the examples and fixture charts.
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.config import load
from cds_service.evaluate import evaluate_file
from cds_service.sweep.run import SweepOptions, sweep
from tests.helpers import hook_request, prefetch_from
from tests.realworld_facts import record_charts
from tests.sweep_export import reidentified

AS_OF = date(2026, 12, 5)
SETTINGS = load(None, overrides={"auth": {"required": False}})
CARD_KEYS = ("topic", "indicator", "summary", "detail")


def write_ndjson(folder: Path, resources: list[dict[str, Any]], gz: bool = False) -> Path:
    """One NDJSON file per type, as an export holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[bytes]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r).encode() + b"\n")
    for rtype, lines in by_type.items():
        path = folder / f"{rtype}.ndjson{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(b"".join(lines)) if gz else b"".join(lines))
    return folder


def swept(export: Path, out: Path, **options: Any) -> dict[str, Any]:
    """The sweep of an export, in this process unless options say otherwise; its summary."""
    opts = SweepOptions(str(export), out, **{"as_of": AS_OF, "workers": 1, **options})
    return sweep(opts, SETTINGS, say=lambda _: None)


def rows_of(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((out / "worklist.json").read_text())
    return rows


def own_records(resources: list[dict[str, Any]], pid: str) -> list[dict[str, Any]]:
    """The patient's Patient, the records that name only this patient, and records that name none (Medications,
    Specimens without subject): what a FHIR server answers to the service's prefetch queries for this patient."""

    def mine(r: dict[str, Any]) -> bool:
        if r["resourceType"] == "Patient":
            return r.get("id") == pid
        refs = [r[k].get("reference") for k in ("subject", "patient") if isinstance(r.get(k), dict)]
        return all(ref == f"Patient/{pid}" for ref in refs)

    return [r for r in resources if mine(r)]


def evaluated_cards(resources: list[dict[str, Any]], pid: str, tmp: Path) -> list[dict[str, Any]]:
    """The cards `her2-cds evaluate` returns for a patient-view of this chart."""
    request = tmp / "request.json"
    request.write_text(json.dumps(hook_request("patient-view", pid, prefetch=prefetch_from(resources))))
    settings = load(
        None,
        overrides={
            "auth": {"required": False},
            "storage": {"database_url": f"sqlite:///{tmp}/db.sqlite", "cache_url": "memory://"},
        },
    )
    status, body = evaluate_file(str(request), settings)
    if status != 200:
        raise AssertionError(f"evaluate answered {status}: {body}")
    return [
        {"topic": c["source"]["topic"]["code"], "indicator": c["indicator"], "summary": c["summary"],
         "detail": c.get("detail", "")}
        for c in body["cards"]
    ]  # fmt: skip


def swept_cards(resources: list[dict[str, Any]], pid: str, tmp: Path) -> list[dict[str, Any]]:
    """The cards of the patient's row when the chart is swept alone (none: no row)."""
    swept(write_ndjson(tmp / "export", resources), tmp / "out")
    return [{k: c[k] for k in CARD_KEYS} for r in rows_of(tmp / "out") if r["patient_id"] == pid for c in r["cards"]]


def differences(charts: dict[str, tuple[list[dict[str, Any]], str]]) -> tuple[list[str], dict[str, int]]:
    """Each chart alone (sweep vs evaluate), then all of them in one export (each row vs its row alone)."""
    found, tally = [], {"charts": 0, "with cards": 0, "cards": 0}
    with tempfile.TemporaryDirectory() as work:
        for i, (name, (resources, pid)) in enumerate(sorted(charts.items())):
            tmp = Path(work) / f"c{i}"
            tmp.mkdir()
            mine = own_records(resources, pid)
            by_sweep, by_evaluate = swept_cards(mine, pid, tmp), evaluated_cards(mine, pid, tmp)
            tally["charts"] += 1
            tally["with cards"] += bool(by_evaluate)
            tally["cards"] += len(by_evaluate)
            if by_sweep != by_evaluate:
                found.append(f"{name}: sweep {json.dumps(by_sweep)[:400]} != evaluate {json.dumps(by_evaluate)[:400]}")
        # all in one export, each patient under an id of its own (published records share ids such as "1")
        own = {name: (reidentified(own_records(rs, pid), f"s{i}"), f"s{i}") for i, (name, (rs, pid)) in
               enumerate(sorted(charts.items()))}  # fmt: skip
        together = Path(work) / "together"
        swept(write_ndjson(together / "export", [r for rs, _ in own.values() for r in rs], gz=True), together / "out")
        rows = {r["patient_id"]: r for r in rows_of(together / "out")}
        for name, (resources, pid) in sorted(own.items()):
            tmp = Path(work) / f"alone-{pid}"
            swept(write_ndjson(tmp / "export", resources), tmp / "out")
            if ([rows[pid]] if pid in rows else []) != rows_of(tmp / "out"):
                found.append(f"{name}: its row in the shared export differs from its row alone")
        tally["in one export"] = len(own)
    return found, tally


def main(argv: list[str]) -> int:
    found, tally = differences(record_charts([Path(a) for a in argv]))
    print(json.dumps(tally))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
