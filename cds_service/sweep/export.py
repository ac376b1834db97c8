"""A FHIR Bulk Data export on disk: its files (a directory of NDJSON files, plain or gzipped, or the `$export`
manifest naming them), the pieces a task reads, and their lines. What cannot be read is counted and placed, never
fatal, never quoted (lines are patient data)."""

from __future__ import annotations

import gzip
import json
import pkgutil
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from urllib.parse import unquote, urlparse

import fhir.resources.R4B as r4b

SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
# the FHIR R4 resource and data type names (module names of fhir.resources.R4B): a file name's type hint is one
_FHIR_NAMES = frozenset(m.name for m in pkgutil.iter_modules(r4b.__path__))
_HINT = re.compile(r"[A-Z][A-Za-z]+")


class ExportError(Exception):
    """The export cannot be read at all (no such path, no NDJSON file, a manifest naming files that are not there)."""


@dataclass(frozen=True)
class ExportFile:
    """One NDJSON file of the export; rtype: the resource type its name or the manifest gives (None: read it to
    know: it may hold several)."""

    path: str
    rtype: str | None
    size: int
    mtime_ns: int

    @property
    def gzipped(self) -> bool:
        return self.path.endswith(".gz")


@dataclass(frozen=True)
class Part:
    """What one task reads: a byte range of a plain file (lines that start in it), or a whole gzipped file."""

    path: str
    start: int = 0
    end: int | None = None  # None: to the end of the file


@dataclass(frozen=True)
class Export:
    """The files of an export, and how many errors the export itself reported (its manifest's `error` files)."""

    source: str
    files: tuple[ExportFile, ...]
    reported_errors: int = 0

    def fingerprint(self) -> str:
        """Changes when a file is added, removed, replaced or rewritten (name, size, modification time)."""
        text = "\n".join(f"{f.path}\t{f.rtype}\t{f.size}\t{f.mtime_ns}" for f in self.files)
        return sha256(text.encode()).hexdigest()[:24]

    def parts(self, types: frozenset[str], chunk_bytes: int) -> list[Part]:
        """The pieces to read for these resource types: files of those types or of no known type, plain files cut
        into ranges of about chunk_bytes (a gzipped file cannot be cut: it is one piece)."""
        out: list[Part] = []
        for f in self.files:
            if f.rtype is not None and f.rtype not in types:
                continue
            if f.gzipped or f.size <= chunk_bytes:
                out.append(Part(f.path))
                continue
            out += [Part(f.path, s, min(s + chunk_bytes, f.size)) for s in range(0, f.size, chunk_bytes)]
        return out

    def types_not_read(self, types: frozenset[str]) -> dict[str, int]:
        """Files skipped unread because their type is not one the service reads: count by type."""
        skipped: dict[str, int] = {}
        for f in self.files:
            if f.rtype is not None and f.rtype not in types:
                skipped[f.rtype] = skipped.get(f.rtype, 0) + 1
        return skipped


def type_hint(name: str) -> str | None:
    """The resource type a Bulk Data file name gives (`Observation.ndjson`, `Observation_2.ndjson.gz`,
    `1.Observation.ndjson`, `Observation-000.ndjson`), or None."""
    for word in _HINT.findall(name):
        if word.lower() in _FHIR_NAMES:
            return word
    return None


def open_export(location: str) -> Export:
    """The export at a directory, an NDJSON file, or a Bulk Data manifest (JSON with `output`)."""
    path = Path(location)
    if not path.exists():
        raise ExportError(f"{location}: no such file or directory")
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
        if not found:
            raise ExportError(f"{location}: no {', '.join(SUFFIXES)} file in this directory")
        return Export(str(path), tuple(_file(p, type_hint(p.name)) for p in found))
    if path.name.endswith(SUFFIXES):
        return Export(str(path), (_file(path, type_hint(path.name)),))
    return _from_manifest(path)


def _file(path: Path, rtype: str | None) -> ExportFile:
    st = path.stat()
    return ExportFile(str(path.resolve()), rtype, st.st_size, st.st_mtime_ns)


def _from_manifest(path: Path) -> Export:
    """A `$export` manifest: each `output` entry's url is a file beside the manifest (by the url's last path
    segment: the files as downloaded), a relative path, or a file:// URL."""
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not a Bulk Data manifest (not JSON: {exc})") from None
    outputs = manifest.get("output") if isinstance(manifest, dict) else None
    if not isinstance(outputs, list):
        raise ExportError(f"{path}: not a Bulk Data manifest (no `output` list)")
    files, missing = [], []
    for entry in outputs:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ExportError(f"{path}: an `output` entry has no url")
        local = _local(path.parent, entry["url"])
        if not local.is_file():
            missing.append(entry["url"])
            continue
        rtype = entry.get("type") if isinstance(entry.get("type"), str) else type_hint(local.name)
        files.append(_file(local, rtype))
    if missing:
        raise ExportError(
            f"{path}: {len(missing)} file(s) of the manifest are not on disk (first: {missing[0]}); download them "
            "beside the manifest, keeping the last part of each url as the file name"
        )
    errors = 0
    for entry in manifest.get("error") or []:
        url = entry.get("url") if isinstance(entry, dict) else None
        if isinstance(url, str) and (error_file := _local(path.parent, url)).is_file():
            errors += sum(1 for _ in LineReader(Part(str(error_file))))
    return Export(str(path), tuple(files), errors)


def _local(folder: Path, url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return folder / unquote(parsed.path.rsplit("/", 1)[-1])
    return folder / url


class LineReader:
    """The non-blank lines of a part, each with where it is (`line N` in a gzipped file, `byte B` in a plain one).
    A damaged file (a truncated or corrupt gzip stream, a read error) ends the iteration: `damaged` says where."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self.damaged: str | None = None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        name = Path(self.part.path).name
        last = "its start"
        try:
            lines = self._gzipped(name) if self.part.path.endswith(".gz") else self._plain(name)
            for where, line in lines:
                last = where
                yield where, line
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            why = "truncated (no end-of-stream marker)" if isinstance(exc, EOFError) else type(exc).__name__
            self.damaged = f"{name}: {why}; read up to {last.removeprefix(name).strip()}"

    def _gzipped(self, name: str) -> Iterator[tuple[str, bytes]]:
        with gzip.open(self.part.path, "rb") as gz:
            for n, line in enumerate(gz, 1):
                if line.strip():
                    yield f"{name} line {n}", line

    def _plain(self, name: str) -> Iterator[tuple[str, bytes]]:
        start, end = self.part.start, self.part.end
        with open(self.part.path, "rb") as f:
            if start:
                f.seek(start - 1)
                f.readline()  # the line under way at start belongs to the part before
            pos = f.tell()
            while end is None or pos < end:
                line = f.readline()
                if not line:
                    return
                if line.strip():
                    yield f"{name} byte {pos}", line
                pos += len(line)
