"""Benchmark, in process: order-selects of 300-resource charts never seen before (150 distinct charts, one app
warmed up on others), through the Flask app with authentication off, against json.loads of the same bodies.

    .venv/bin/python -m tests.benchmarks.bench_unseen [--charts 150] [--size 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from cds_service.config import load
from cds_service.web.app import create_app

from .bench_http import _request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--charts", type=int, default=150)
    parser.add_argument("--size", type=int, default=300)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-unseen-")  # left behind: the ledger's writer may still be writing at exit
    storage = {"database_url": f"sqlite:///{tmp}/db.sqlite", "cache_url": "memory://"}
    settings = load(None, overrides={"auth": {"required": False}, "storage": storage})
    client = create_app(settings).test_client()
    warm = [json.dumps(_request(args.size, seed)).encode() for seed in range(5000, 5005)]
    bodies = [json.dumps(_request(args.size, seed)).encode() for seed in range(1000, 1000 + args.charts)]
    for body in warm:
        client.post("/cds-services/her2-order-select", data=body, content_type="application/json")
    service, floor = [], []
    for body in bodies:
        started = time.perf_counter()
        resp = client.post("/cds-services/her2-order-select", data=body, content_type="application/json")
        service.append(time.perf_counter() - started)
        assert resp.status_code == 200, resp.get_data()[:300]
        started = time.perf_counter()
        json.loads(body)
        floor.append(time.perf_counter() - started)
    med, fl = statistics.median(service) * 1000, statistics.median(floor) * 1000
    print(json.dumps({"charts": args.charts, "service_ms": round(med, 2), "json_loads_ms": round(fl, 3),
                      "ratio": round(med / fl, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
