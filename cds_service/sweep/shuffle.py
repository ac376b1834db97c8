"""Pass 2: the records of the patients found, grouped by patient into partitions on disk (a patient's records all
land in one partition, whatever file they came from), so that no stage holds the export in memory. Each task reads
one part of the export and writes its own files, `shuffle/<task>/<partition>.ndjson`, each line `<patient id>TAB
<the resource as read>`; Medications and Specimens without a patient are joined by reference: they go, as
`@Type/id TAB <resource>`, to the partitions whose records name them."""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from cds_service.sweep.export import LineReader, Part
from cds_service.sweep.records import parse, patient_of, reference_id
from cds_service.sweep.tally import Tally

# records without a patient of their own, joined to the records that reference them: the element that does
JOINED = {"Medication": ("medicationReference",), "Specimen": ("specimen",)}


def joined_refs(resource: dict[str, Any]) -> Iterator[str]:
    """The records without a patient that a resource references (`Medication/m1`, `Specimen/s2`)."""
    for jtype, elements in JOINED.items():
        for element in elements:
            value = resource.get(element)
            for ref in value if type(value) is list else [value]:
                rid = reference_id(ref, jtype)
                if rid is not None:
                    yield f"{jtype}/{rid}"


def partition_of(patient_id: str, partitions: int) -> int:
    """The partition of a patient: the same in every process and on every run."""
    return zlib.crc32(patient_id.encode()) % partitions


@dataclass
class Routed:
    """What one task of pass 2 did: its counts, and (first half) the joined records its patients reference, with
    the partitions that need each (`Medication/m1` → [3, 17])."""

    tally: Tally = field(default_factory=Tally)
    wanted: dict[str, list[int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"tally": self.tally.as_json(), "wanted": self.wanted}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Routed:
        return cls(Tally.from_json(data["tally"]), {k: list(v) for k, v in data["wanted"].items()})


class _Files:
    """A task's partition files, opened when first written, in a folder renamed into place when the task is done
    (a folder without its done.json is a task that did not finish: redone)."""

    def __init__(self, folder: Path) -> None:
        self.final = folder
        self.tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.open: dict[int, IO[bytes]] = {}

    def write(self, partition: int, key: str, line: bytes) -> None:
        f = self.open.get(partition)
        if f is None:
            f = self.open[partition] = open(self.tmp / f"{partition:05d}.ndjson", "wb", buffering=1 << 16)
        f.write(key.encode() + b"\t" + line.strip() + b"\n")

    def done(self, routed: Routed) -> Routed:
        for f in self.open.values():
            f.close()
        (self.tmp / "done.json").write_bytes(orjson.dumps(routed.as_json()))
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)
        return routed


def finished(folder: Path) -> Routed | None:
    """What a task that already finished did (a rerun skips it), or None."""
    done = folder / "done.json"
    return Routed.from_json(orjson.loads(done.read_bytes())) if done.is_file() else None


def route_patients(part: Part, folder: Path, cohort: frozenset[str], partitions: int, types: frozenset[str]) -> Routed:
    """First half: each record of a cohort patient (of the types the service reads) to its patient's partition;
    the joined records they reference noted. Counts what it read, left out and could not read."""
    files, routed = _Files(folder), Routed()
    tally, wanted = routed.tally, dict[str, set[int]]()
    reader = LineReader(part)
    for where, line in reader:
        tally.add("lines")
        r = parse(line)
        if r is None:
            tally.add("malformed", where)
            continue
        rtype = r["resourceType"]
        if rtype not in types:
            tally.add("types-not-read")
            continue
        pid = patient_of(r)
        if pid is None and rtype in JOINED:
            tally.add("joined-seen")  # joined by reference in the second half
            continue
        if pid is None:
            tally.add("no-patient", where)
            continue
        if pid not in cohort:
            tally.add("other-patients")
            continue
        k = partition_of(pid, partitions)
        files.write(k, pid, line)
        tally.add("kept")
        for ref in joined_refs(r):
            wanted.setdefault(ref, set()).add(k)
    if reader.damaged:
        tally.add("damaged-files", reader.damaged)
    routed.wanted = {ref: sorted(ks) for ref, ks in wanted.items()}
    return files.done(routed)


def route_joined(part: Part, folder: Path, wanted: dict[str, list[int]], first_read: bool) -> Routed:
    """Second half: each Medication (and Specimen without a patient) that a cohort record references, to the
    partitions that reference it. first_read: no earlier pass counted this part's lines (a Medication file): what
    cannot be read is counted here."""
    files, routed = _Files(folder), Routed()
    tally = routed.tally
    reader = LineReader(part)
    for where, line in reader:
        r = parse(line)
        if first_read:
            tally.add("lines")
            if r is None:
                tally.add("malformed", where)
        if r is None:
            continue
        if r["resourceType"] not in JOINED or patient_of(r) is not None or type(r.get("id")) is not str:
            continue
        ref = f"{r['resourceType']}/{r['id']}"
        for k in wanted.get(ref, ()):
            files.write(k, "@" + ref, line)
            tally.add("joined-kept")
    if reader.damaged and first_read:
        tally.add("damaged-files", reader.damaged)
    return files.done(routed)
