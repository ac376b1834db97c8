"""Benchmark over real HTTP to gunicorn (2 workers x 4 threads): latency p50/p99 and throughput of
an order-select with 300 and with 5,000 prefetched resources, against a baseline endpoint on the
same server that only parses the JSON body and returns a fixed card; then the end-to-end time of a
request whose 6 missing prefetch keys are fetched from a FHIR server that takes 200 ms per query.

    .venv/bin/python -m tests.benchmarks.bench_http [--duration 60] [--connections 32]

Needs `wrk` (Debian package wrk). Traffic stays on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from ..fixtures import builders as b
from ..helpers import hook_request, prefetch_from
from .generate import chart

HERE = Path(__file__).resolve().parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str) -> None:
    for _ in range(200):
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _request(n: int) -> dict:
    draft = b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")
    return hook_request("order-select", prefetch=prefetch_from(chart(n)), draft_orders=[draft])


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if not m:
        raise RuntimeError(f"wrk printed a latency this script cannot read: {text!r}")
    value, unit = m.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def wrk(url: str, body_file: Path, duration: int, connections: int) -> dict:
    lua = body_file.with_suffix(".lua")
    lua.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                   f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if not re.search(r"99%\s+\S+", out):
        raise RuntimeError(f"wrk gave no latency distribution:\n{out}")
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"p50": p50, "p99": p99, "rps": rps, "requests": total, "errors": non2xx + sock}


def _settle(base: str) -> None:
    """Wait until the server has drained what the previous run queued."""
    for _ in range(600):
        t = time.perf_counter()
        try:
            requests.get(base + "/healthz", timeout=5)
        except requests.RequestException:
            pass
        if time.perf_counter() - t < 0.02:
            time.sleep(1)
            return
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--sizes", default="300,5000", help="prefetched resources per request, comma-separated")
    ap.add_argument("--latency-duration", type=int, default=15, help="seconds of the 1-connection runs")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="her2-bench-"))
    fhir = subprocess.Popen([sys.executable, str(HERE.parent / "fhir_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    fhir_base = f"http://127.0.0.1:{int(fhir.stdout.readline().split()[1])}"
    port = _port()
    env = {**os.environ, "HER2_CDS_BIND": f"127.0.0.1:{port}", "HER2_CDS_WORKERS": "2", "HER2_CDS_THREADS": "4",
           "BENCH_DB": f"sqlite:///{tmp}/f.db", "BENCH_FHIR": fhir_base, "HER2_CDS_CONFIG": ""}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:cds_service.gunicorn_conf",
                               "tests.benchmarks.bench_wsgi:app"], env=env, cwd=Path.cwd(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + "/healthz")
        print(f"gunicorn 2 workers x 4 threads, wrk 2 threads, {args.connections} connections, "
              f"{args.duration} s per run, {os.cpu_count()} cores\n")
        print(f"{'resources':>9} {'clients':>7} {'endpoint':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
              f"{'requests':>9} {'errors':>7}")
        runs = [(int(n), conns, secs) for n in args.sizes.split(",") if n
                for conns, secs in ((1, args.latency_duration), (args.connections, args.duration))]
        for n, conns, secs in runs:
            body = tmp / f"req-{n}.json"
            body.write_text(json.dumps(_request(n)))
            check = requests.post(base + "/cds-services/her2-order-select", data=body.read_bytes(),
                                  headers={"Content-Type": "application/json"}, timeout=30)
            assert check.status_code == 200 and check.json()["cards"], check.text[:300]
            results = {}
            for name, path in (("service", "/cds-services/her2-order-select"), ("baseline", "/baseline")):
                _settle(base)
                r = results[name] = wrk(base + path, body, secs, conns)
                print(f"{n:>9} {conns:>7} {name:>9} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.1f} "
                      f"{r['requests']:>9} {r['errors']:>7}", flush=True)
            s, bl = results["service"], results["baseline"]
            ratio = [f"{s[k] / bl[k]:>7.2f}x" if bl[k] else "    n/a" for k in ("p50", "p99", "rps")]
            print(f"{n:>9} {conns:>7} {'ratio':>9} {ratio[0]} {ratio[1]} {ratio[2]}", flush=True)
        # FHIR fallback: 6 missing keys, 200 ms per query, in parallel
        resources = chart(300)
        requests.post(f"{fhir_base}/_control", json={"reset": True, "resources": resources, "delay": 0.2,
                                                     "page_size": 1000}, timeout=5).raise_for_status()
        body = hook_request("order-select", prefetch=prefetch_from(resources), fhirServer=fhir_base,
                            draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="d")])
        for key in ("conditions", "procedures", "medicationStatements", "medicationRequests",
                    "medicationAdministrations", "her2Observations"):
            del body["prefetch"][key]
        _settle(base)  # the last wrk run may have left requests queued
        times = []
        for _ in range(20):
            t = time.perf_counter()
            resp = requests.post(base + "/cds-services/her2-order-select", json=body, timeout=10)
            times.append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200
        times.sort()
        print(f"\nFHIR fallback, 6 queries x 200 ms: p50 {statistics.median(times):.1f} ms, "
              f"max {times[-1]:.1f} ms over 20 requests (sequential sum would be 1200 ms)")
    finally:
        server.terminate()
        fhir.terminate()
        server.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
