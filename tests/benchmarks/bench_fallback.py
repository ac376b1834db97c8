"""The FHIR fallback: an order-select with no prefetch, every key fetched from the test FHIR server process,
with the Observation searches merged (one query) and apart (four), against a server that answers requests in
parallel and one that answers one at a time (like a single-threaded server), with and without a delay per
query. In-process app, real HTTP to the FHIR server.

    .venv/bin/python -m tests.benchmarks.bench_fallback [--requests 20]"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from cds_service.config import load
from cds_service.web.app import create_app

from ..fixtures import builders as b
from ..helpers import hook_request
from .generate import prefetch_chart

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20)
    args = ap.parse_args()
    proc = subprocess.Popen(
        [sys.executable, str(HERE.parent / "fhir_server.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{int(proc.stdout.readline().split()[1])}"
    tmp = Path(tempfile.mkdtemp(prefix="her2-fallback-"))
    try:
        apps = {
            merge: create_app(
                load(
                    None,
                    overrides={
                        "auth": {"required": False},
                        "storage": {"database_url": f"sqlite:///{tmp}/{merge}.db"},
                        "fhir": {
                            "allowed_servers": [base],
                            "allow_unauthenticated": True,
                            "merge_observation_queries": merge,
                        },
                        "limits": {"request_deadline_seconds": 5.0},
                        "logging": {"level": "WARNING"},
                    },
                )
            ).test_client()
            for merge in (True, False)
        }
        body = hook_request(
            "order-select",
            fhirServer=base,
            prefetch={},
            draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")],
        )
        print(f"order-select, 300-resource chart on the FHIR server, no prefetch, {args.requests} requests each\n")
        print("| server | delay per query | Observation searches | queries | p50 | max |")
        print("|---|---|---|---|---|---|")
        for serial in (False, True):
            for delay in (0.0, 0.02):
                for merge in (True, False):
                    requests.post(
                        f"{base}/_control",
                        json={
                            "reset": True,
                            "resources": prefetch_chart(300),
                            "delay": delay,
                            "serial": serial,
                            "page_size": 1000,
                        },
                        timeout=5,
                    ).raise_for_status()
                    times, queries = [], []
                    for _ in range(args.requests):
                        requests.post(f"{base}/_control", json={"log": []}, timeout=5)
                        t = time.perf_counter()
                        resp = apps[merge].post("/cds-services/her2-order-select", json=body)
                        times.append((time.perf_counter() - t) * 1000)
                        assert resp.status_code == 200 and resp.get_json()["cards"], resp.get_data(as_text=True)[:300]
                        queries.append(len(requests.get(f"{base}/_log", timeout=5).json()))
                    print(
                        f"| {'one at a time' if serial else 'parallel'} | {delay * 1000:.0f} ms | "
                        f"{'merged' if merge else 'apart'} | {statistics.median(queries):.0f} | "
                        f"{statistics.median(times):.1f} ms | {max(times):.1f} ms |",
                        flush=True,
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=5)


if __name__ == "__main__":
    main()
