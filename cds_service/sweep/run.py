"""The sweep's stages, on a runner (this process or Dask), resumable: each task's result is kept in a work folder
beside the worklist as it finishes, so an interrupted sweep run again with the same export, settings and date goes
on from where it stopped. The worklist's files are written, whole, only when every patient was judged."""

from __future__ import annotations

import functools
import heapq
import math
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any, TypeVar

import orjson

from cds_service.config import Settings
from cds_service.gather.binding import expected_types
from cds_service.sweep.cohort import COHORT_TYPES, MEDICATION_TYPES, cohort_of, tdxd_medications
from cds_service.sweep.export import Export, Part, open_export
from cds_service.sweep.files import write_atomically
from cds_service.sweep.judge import HOOK, engine_for, judge_partition
from cds_service.sweep.runner import Runner, runner
from cds_service.sweep.shuffle import JOINED, Routed, finished, route_joined, route_patients
from cds_service.sweep.tally import Tally
from cds_service.sweep.worklist import OUTPUTS, write_worklist

WORK = ".sweep-work"
T = TypeVar("T")


@dataclass(frozen=True)
class SweepOptions:
    """What `her2-cds sweep` was asked."""

    export: str
    out: Path
    workers: int = 1
    scheduler: str | None = None
    as_of: date | None = None  # the day to judge as (default: today, UTC)
    chunk_bytes: int = 64 << 20  # a plain NDJSON file is read by tasks of about this many bytes
    patients_per_partition: int = 100
    keep_work: bool = False


class SweepStopped(Exception):
    """The sweep stopped before the end: where, and how to go on."""


@dataclass
class _Progress:
    stage: str = "starting"
    done: int = 0
    total: int = 0
    resumed: dict[str, int] = field(default_factory=dict)

    def where(self) -> str:
        return f"{self.stage} ({self.done} of {self.total} tasks done)"


def sweep_settings(settings: Settings) -> Settings:
    """The service's settings as the sweep runs them: no repeat memory shared with the service, no facts memo
    (every chart is new)."""
    data = {
        **settings.data,
        "storage": {**settings.data["storage"], "cache_url": "memory://"},
        "limits": {**settings.data["limits"], "facts_memo_mb": 0},
    }
    return Settings(data=data, source=settings.source, dev_mode=settings.dev_mode, notes=list(settings.notes))


def sweep(options: SweepOptions, settings: Settings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Judge every patient of the export; write the worklist to options.out; return the summary."""
    started = time.monotonic()
    settings = sweep_settings(settings)
    export = open_export(options.export)
    out = options.out
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in OUTPUTS:  # an earlier worklist must not pass for this sweep's, whole or partial
        (out / name).unlink(missing_ok=True)
    today = options.as_of or datetime.now(timezone.utc).date()
    work = _work_folder(out / WORK, export, settings, today, options, say)
    progress = _Progress()
    run = runner(options.workers, options.scheduler)
    try:
        summary = _stages(export, work, run, settings, today, options, progress, say)
    except KeyboardInterrupt:
        raise SweepStopped(
            f"stopped by an interrupt during {progress.where()}; no worklist was written. Run the same command again "
            "to go on from there."
        ) from None
    except SweepStopped:
        raise
    except Exception as exc:  # noqa: BLE001 - a task failed: say where, keep what was done
        what = str(exc) if isinstance(exc, TaskFailed) else type(exc).__name__
        if isinstance(exc, OSError):
            what = f"{type(exc).__name__}: {exc.strerror} {exc.filename}"
        raise SweepStopped(
            f"stopped during {progress.where()}: a task failed ({what}); no worklist was written. What was done is "
            "kept: run the same command again to go on from there."
        ) from None
    finally:
        run.close()
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["workers"] = run.workers
    summary["resumed"] = progress.resumed
    write_worklist(out, merged_rows(work / "rows", summary["partitions"]), summary)
    if not options.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _work_folder(
    work: Path, export: Export, settings: Settings, today: date, options: SweepOptions, say: Callable[[str], None]
) -> Path:
    """The work folder of this sweep: kept from an interrupted run of the same sweep, else made anew."""
    key = {
        "export": export.fingerprint(),
        "as_of": today.isoformat(),
        "settings": sha256(orjson.dumps(settings.data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24],
        "chunk_bytes": options.chunk_bytes,
        "patients_per_partition": options.patients_per_partition,
    }
    state = work / "state.json"
    if state.is_file() and orjson.loads(state.read_bytes()).get("key") == key:
        say(f"resuming the interrupted sweep kept in {work}")
        return work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, mode=0o700)
    write_atomically(state, orjson.dumps({"key": key}))
    return work


def _stages(
    export: Export,
    work: Path,
    run: Runner,
    settings: Settings,
    today: date,
    options: SweepOptions,
    progress: _Progress,
    say: Callable[[str], None],
) -> dict[str, Any]:
    engine = engine_for(settings)  # the client's own: what the service reads, from its prefetch templates
    service = next(s for s in engine.services.values() if s["hook"] == HOOK)
    chart_types = frozenset(t for tpl in service.get("prefetch", {}).values() for t in expected_types(tpl))
    shared = run.share(settings)  # sent to the workers once, read by passes 1 and 3
    cohort, partitions = _find_patients(export, work, run, shared, options, progress, say)
    tally = _group_records(export, work, run, cohort, partitions, chart_types, options, progress, say)
    tally.merge(_judge(work, run, shared, today, partitions, progress, say))
    counts = tally.counts
    return {
        "complete": True,
        "export": export.source,
        "as_of": today.isoformat(),
        "files": len(export.files),
        "files_not_read": export.types_not_read(chart_types | COHORT_TYPES),
        "export_reported_errors": export.reported_errors,
        "cohort": len(cohort),
        "partitions": partitions,
        "counts": dict(sorted(counts.items())),
        "places": tally.places,
        "rows": counts.get("rows", 0),
    }


def _find_patients(
    export: Export,
    work: Path,
    run: Runner,
    settings: Any,
    options: SweepOptions,
    progress: _Progress,
    say: Callable[[str], None],
) -> tuple[frozenset[str], int]:
    """Pass 1 (kept as cohort.json): the patients to judge, and how many partitions they go into. settings: as the
    runner shares them."""
    kept = work / "cohort.json"
    if kept.is_file():
        data = orjson.loads(kept.read_bytes())
        progress.resumed["pass 1"] = 1
        return frozenset(data["patients"]), int(data["partitions"])
    meds: dict[str, Any] = {}
    for found in _tasks(run, _tdxd_task, export.parts(MEDICATION_TYPES, options.chunk_bytes), progress,
                        "pass 1 of 3, T-DXd medications", settings=settings):  # fmt: skip
        meds.update(found)
    cohort: set[str] = set()
    tdxd = run.share(meds)
    for found in _tasks(run, _cohort_task, export.parts(COHORT_TYPES, options.chunk_bytes), progress,
                        "pass 1 of 3, finding patients", settings=settings, tdxd=tdxd):  # fmt: skip
        cohort |= found
    partitions = max(1, math.ceil(len(cohort) / options.patients_per_partition))
    write_atomically(kept, orjson.dumps({"patients": sorted(cohort), "partitions": partitions}))
    say(f"pass 1 of 3: {len(cohort):,} patients with breast cancer or T-DXd on record, in {partitions} partition(s)")
    return frozenset(cohort), partitions


def _group_records(
    export: Export,
    work: Path,
    run: Runner,
    cohort: frozenset[str],
    partitions: int,
    chart_types: frozenset[str],
    options: SweepOptions,
    progress: _Progress,
    say: Callable[[str], None],
) -> Tally:
    """Pass 2: their records into partitions by patient; then the Medications (and Specimens) they reference."""
    shuffle = work / "shuffle"
    first = [(f"a-{i:05d}", p) for i, p in enumerate(export.parts(chart_types - MEDICATION_TYPES, options.chunk_bytes))]
    routed, todo = _resumable(first, shuffle, progress, "pass 2 of 3")
    shared = run.share(cohort)
    routed += _tasks(run, _route_task, todo, progress,
                     "pass 2 of 3, grouping records", work=shuffle, cohort=shared, partitions=partitions,
                     types=chart_types)  # fmt: skip
    wanted: dict[str, set[int]] = {}
    for r in routed:
        for ref, ks in r.wanted.items():
            wanted.setdefault(ref, set()).update(ks)
    joined_types = frozenset(JOINED)
    first_read = {p.path for _, p in first}
    second = [
        (f"b-{i:05d}", p, p.path not in first_read)
        for i, p in enumerate(export.parts(joined_types, options.chunk_bytes))
    ]
    done, todo_joined = _resumable(second, shuffle, progress, "pass 2 of 3 (joined)")
    routed += done
    shared_wanted = run.share({ref: sorted(ks) for ref, ks in wanted.items()})
    routed += _tasks(run, _join_task, todo_joined, progress,
                     "pass 2 of 3, joining medications", work=shuffle, wanted=shared_wanted)  # fmt: skip
    tally = Tally()
    for r in routed:
        tally.merge(r.tally)
    say(f"pass 2 of 3: {tally.counts['kept']:,} records of those patients kept, of {tally.counts['lines']:,} lines")
    return tally


def _resumable(items: list[Any], shuffle: Path, progress: _Progress, stage: str) -> tuple[list[Routed], list[Any]]:
    """What the tasks named by each item's first element did in a run before (read once), and the items still to
    do."""
    done, todo = [], []
    for item in items:
        found = finished(shuffle / item[0])
        if found is None:
            todo.append(item)
        else:
            done.append(found)
    if done:
        progress.resumed[stage] = progress.resumed.get(stage, 0) + len(done)
    return done, todo


def _judge(
    work: Path,
    run: Runner,
    settings: Any,
    today: date,
    partitions: int,
    progress: _Progress,
    say: Callable[[str], None],
) -> Tally:
    """Pass 3: every partition judged: its rows kept as rows/<k>.ndjson (by patient id), then its counts as
    rows/<k>.json (present: the partition is done). settings: as the runner shares them."""
    rows = work / "rows"
    rows.mkdir(exist_ok=True)
    tally = Tally()
    todo = []
    for k in range(partitions):
        kept = rows / f"{k:05d}.json"
        if kept.is_file():
            tally.merge(Tally.from_json(orjson.loads(kept.read_bytes())))
            progress.resumed["pass 3"] = progress.resumed.get("pass 3", 0) + 1
        else:
            todo.append(k)
    for part in _tasks(run, _judge_task, todo, progress, "pass 3 of 3, judging patients", work=work,
                       settings=settings, today=today):  # fmt: skip
        tally.merge(part)
    say(f"pass 3 of 3: {tally.counts['patients']:,} patients judged, {tally.counts['rows']:,} on the worklist")
    return tally


def merged_rows(rows: Path, partitions: int) -> Iterator[dict[str, Any]]:
    """Every partition's rows, merged in patient-id order, one at a time (never the whole worklist in memory)."""
    files = [(rows / f"{k:05d}.ndjson").open("rb") for k in range(partitions)]
    try:
        streams = [(orjson.loads(line) for line in f if line.strip()) for f in files]
        yield from heapq.merge(*streams, key=lambda r: r["patient_id"])
    finally:
        for f in files:
            f.close()


def _tasks(run: Runner, fn: Callable[..., Any], items: list[Any], progress: _Progress, stage: str,
           **shared: Any) -> Iterator[Any]:  # fmt: skip
    progress.stage, progress.done, progress.total = stage, 0, len(items)
    for result in run.map(fn, items, **shared):
        progress.done += 1
        yield result


# the tasks: module-level functions, so that Dask workers import them by name; a task that fails raises only its
# error's class and where (a worker logs what a task raised: an exception's words can quote a record)


class TaskFailed(Exception):
    """A task's failure, without its words."""


def _quiet(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def task(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised without its message
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else "?"
            raise TaskFailed(f"{type(exc).__name__} at {where}") from None

    return task


@_quiet
def _tdxd_task(part: Part, settings: Settings) -> dict[str, Any]:
    return tdxd_medications(part, engine_for(settings).terminology)


@_quiet
def _cohort_task(part: Part, settings: Settings, tdxd: dict[str, Any]) -> set[str]:
    return cohort_of(part, engine_for(settings).terminology, tdxd)


@_quiet
def _route_task(
    item: tuple[str, Part], work: Path, cohort: frozenset[str], partitions: int, types: frozenset[str]
) -> Routed:
    name, part = item
    return route_patients(part, work / name, cohort, partitions, types)


@_quiet
def _join_task(item: tuple[str, Part, bool], work: Path, wanted: dict[str, list[int]]) -> Routed:
    name, part, first_read = item
    return route_joined(part, work / name, wanted, first_read)


@_quiet
def _judge_task(k: int, work: Path, settings: Settings, today: date) -> Tally:
    files = sorted(p for p in (work / "shuffle").glob(f"*/{k:05d}.ndjson") if not p.parent.name.endswith(".tmp"))
    judgement = judge_partition(files, settings, today)
    lines = b"".join(orjson.dumps(row) + b"\n" for row in judgement.rows)  # in patient-id order
    write_atomically(work / "rows" / f"{k:05d}.ndjson", lines)
    write_atomically(work / "rows" / f"{k:05d}.json", orjson.dumps(judgement.tally.as_json()))
    return judgement.tally
