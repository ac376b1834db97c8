"""Benchmark: the population sweep on a generated Bulk Data export (tests/sweep_export.py: the fixture charts as
10,000 patients x 300 resources, plus 10,000 unrelated patients with 100 labs each, per unit of scale), against
orjson reading the same bytes (the floor); one Dask worker against two; the peak memory of each worker and of the
client at 1x and 4x. Run as a script on a quiet machine (not collected by pytest):

    .venv/bin/python -m tests.benchmarks.bench_sweep --work /tmp/sweep-bench --scales 1 4 --rounds 2

Each sweep runs as `her2-cds sweep EXPORT --scheduler <a LocalCluster of N single-threaded worker processes made
for that run>` in a child process (its peak RSS from wait4); each worker's peak RSS from getrusage in the worker.
Rounds interleave floor, one worker and two workers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.sweep_export import write_export

PATIENTS, PER_PATIENT, UNRELATED = 10_000, 300, 10_000


def floor(export: Path) -> float:
    """Seconds for orjson to read every line of the export, in one process."""
    started = time.perf_counter()
    for path in sorted(export.iterdir()):
        with path.open("rb") as f:
            for line in f:
                orjson.loads(line)
    return time.perf_counter() - started


def _peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one_sweep(export: Path, out: Path, workers: int) -> dict[str, Any]:
    """One sweep on a fresh LocalCluster of `workers` processes: seconds, client and worker peak RSS (MB)."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    client = Client(cluster)
    try:
        args = [sys.executable, "-m", "cds_service.cli", "sweep", str(export), "--out", str(out), "--scheduler",
                cluster.scheduler_address, "--as-of", "2026-12-05"]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        if status != 0:
            raise SystemExit(f"sweep failed: {stderr.decode()[-2000:]}")
        peaks = client.run(_peak_rss_kb)
        summary = json.loads((out / "summary.json").read_text())
        return {
            "seconds": seconds,
            "client_mb": usage.ru_maxrss / 1024,
            "worker_mb": [kb / 1024 for kb in peaks.values()],
            "patients": summary["counts"]["patients"],
            "rows": summary["rows"],
            "stdout": stdout.decode(),
        }
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/sweep-bench"))
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--patients", type=int, default=PATIENTS, help="patients per unit of scale")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for scale in args.scales:
        export = args.work / f"export-{scale}x-{args.patients}"
        if not export.is_dir():
            started = time.perf_counter()
            n = write_export(export, args.patients * scale, PER_PATIENT, UNRELATED * scale * args.patients // PATIENTS)
            print(f"generated {n:,} resources in {export} in {time.perf_counter() - started:.0f} s", flush=True)
        size = sum(p.stat().st_size for p in export.iterdir())
        worker_counts = (1, 2) if scale == args.scales[0] else (2,)
        for rnd in range(args.rounds if scale == args.scales[0] else 1):
            row: dict[str, Any] = {"scale": scale, "round": rnd, "bytes": size, "floor_s": floor(export)}
            for w in worker_counts:
                row[f"w{w}"] = one_sweep(export, args.work / f"out-{scale}x-{w}", w)
                row[f"w{w}"].pop("stdout")
            results.append(row)
            print(json.dumps(row), flush=True)
    print("\nscale  MB     floor s  floor pat/s  workers  sweep s  pat/s  pat/s/core  floor÷sweep/core", end="")
    print("  worker MB  client MB")
    for row in results:
        cohort = args.patients * row["scale"]
        for key in sorted(k for k in row if k.startswith("w")):
            r, w = row[key], int(key[1:])
            per_core = r["patients"] / r["seconds"] / w
            floor_rate = cohort / row["floor_s"]
            print(
                f"{row['scale']:>4}x {row['bytes'] / 1e6:>6.0f} {row['floor_s']:>8.1f} {floor_rate:>11.0f} "
                f"{w:>8} {r['seconds']:>8.1f} {r['patients'] / r['seconds']:>6.1f} {per_core:>10.1f} "
                f"{floor_rate / per_core:>16.0f} {max(r['worker_mb']):>10.0f} {r['client_mb']:>10.0f}"
            )
    firsts = [r for r in results if "w1" in r]
    if firsts:
        speedups = [r["w1"]["seconds"] / r["w2"]["seconds"] for r in firsts]
        print(f"\ntwo workers against one: {min(speedups):.2f}x to {max(speedups):.2f}x ({len(speedups)} rounds)")


if __name__ == "__main__":
    main()
