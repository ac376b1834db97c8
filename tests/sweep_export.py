"""A generated FHIR Bulk Data export: the fixture charts (tests/fixtures/patients.py) as many patients, each given
its own ids, padded with routine labs to a chart size, beside unrelated patients (no breast cancer) with their own
labs and conditions. One NDJSON file per type (split every `per_file` lines), plain or gzipped, as a server's
`$export` writes them. For the sweep's tests and its benchmark:

    python -m tests.sweep_export /tmp/export --patients 10000 --per-patient 300 --unrelated 10000
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from tests.fixtures import builders as b
from tests.fixtures import patients

SCENARIOS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    name: fn
    for name, fn in vars(patients).items()
    if callable(fn) and getattr(fn, "__module__", "") == patients.__name__ and not name.startswith("_")
}
LOINC = "http://loinc.org"
# routine results no value set of the service names, and two it reads (eGFR, body weight)
LABS = [
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.1),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 98),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 22),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 6.4),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 250),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9),
    ("62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by "
     "Creatinine-based formula (CKD-EPI)", "mL/min/{1.73_m2}", 88),
    ("29463-7", "Body weight", "kg", 68),
]  # fmt: skip


def reidentified(resources: list[dict[str, Any]], pid: str) -> list[dict[str, Any]]:
    """The chart as patient `pid`'s: the Patient's id is pid, every other id is prefixed with it, and every
    reference follows (contained `#x` references stay)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            ref = out.get("reference")
            if isinstance(ref, str) and "/" in ref and not ref.startswith("#"):
                rtype, _, rid = ref.rpartition("/")
                out["reference"] = f"Patient/{pid}" if rtype == "Patient" else f"{rtype}/{pid}-{rid}"
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = []
    for r in resources:
        r = walk(r)
        if r["resourceType"] == "Patient":
            r["id"] = pid
        elif isinstance(r.get("id"), str):
            r["id"] = f"{pid}-{r['id']}"
        out.append(r)
    return out


def lab(pid: str, n: int) -> dict[str, Any]:
    code, display, unit, value = LABS[n % len(LABS)]
    day = 1 + n % 28
    month = 1 + (n // 28) % 12
    return {
        "resourceType": "Observation",
        "id": f"{pid}-lab-{n}",
        "status": "final",
        "category": [b.cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
        "code": b.cc(LOINC, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"{2018 + n % 7}-{month:02d}-{day:02d}",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def unrelated(pid: str, labs: int) -> list[dict[str, Any]]:
    """A patient without breast cancer or T-DXd: the sweep's first pass leaves them out."""
    return [
        {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1958-07-14"},
        {
            "resourceType": "Condition",
            "id": f"{pid}-htn",
            "code": b.cc(b.SCT, "38341003", "Hypertensive disorder"),
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": "2015-01-01",
        },
        *[lab(pid, n) for n in range(labs)],
    ]


def charts(count: int, per_patient: int, prefix: str = "pt") -> Iterator[list[dict[str, Any]]]:
    """count patients, the scenarios in turn, each padded with labs to per_patient resources."""
    names = sorted(SCENARIOS)
    templates = {name: SCENARIOS[name]() for name in names}
    for i in range(count):
        pid = f"{prefix}{i:06d}"
        chart = reidentified(templates[names[i % len(names)]], pid)
        yield chart + [lab(pid, n) for n in range(max(0, per_patient - len(chart)))]


class Writer:
    """One NDJSON file per type, a new one every per_file lines (`Observation.000.ndjson[.gz]`)."""

    def __init__(self, out: Path, gzipped: bool, per_file: int) -> None:
        self.out, self.gzipped, self.per_file = out, gzipped, per_file
        self.files: dict[str, tuple[IO[bytes], int, int]] = {}
        out.mkdir(parents=True, exist_ok=True)

    def write(self, resource: dict[str, Any]) -> None:
        rtype = resource["resourceType"]
        f, lines, index = self.files.get(rtype, (None, 0, -1))
        if f is None or lines >= self.per_file:
            if f is not None:
                f.close()
            index += 1
            name = self.out / f"{rtype}.{index:03d}.ndjson{'.gz' if self.gzipped else ''}"
            f = gzip.open(name, "wb", compresslevel=1) if self.gzipped else open(name, "wb")
            lines = 0
        f.write(json.dumps(resource, separators=(",", ":")).encode() + b"\n")
        self.files[rtype] = (f, lines + 1, index)

    def close(self) -> None:
        for f, _, _ in self.files.values():
            f.close()


def write_export(
    out: Path, patients: int, per_patient: int, unrelated_patients: int = 0, gzipped: bool = False,
    per_file: int = 1_000_000,
) -> int:  # fmt: skip
    """The export in out; returns how many resources it holds."""
    writer = Writer(out, gzipped, per_file)
    total = 0
    try:
        for chart in charts(patients, per_patient):
            for r in chart:
                writer.write(r)
            total += len(chart)
        for i in range(unrelated_patients):
            for r in unrelated(f"other{i:06d}", per_patient // 3):
                writer.write(r)
                total += 1
    finally:
        writer.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--per-patient", type=int, default=300)
    parser.add_argument("--unrelated", type=int, default=10_000)
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()
    n = write_export(args.out, args.patients, args.per_patient, args.unrelated, args.gzip)
    print(f"{n:,} resources in {args.out}")


if __name__ == "__main__":
    main()
