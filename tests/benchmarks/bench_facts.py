"""Benchmark: fact derivation vs json.loads of the same payload (the baseline), at 100, 1,000 and
10,000 resources. Run as a script (not collected by pytest):

    .venv/bin/python -m tests.benchmarks.bench_facts
"""

from __future__ import annotations

import json
import time
from datetime import date

from cds_service.facts.derive import derive
from cds_service.facts.kept import forget as forget_pieces
from cds_service.fhir.terminology import load_terminology
from cds_service.fhir.validation import clear_content_cache

from .generate import chart


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ts = load_terminology()
    today = date(2026, 11, 25)
    print(
        "cold: validation verdicts, readings and concept verdicts empty (a chart of codes never seen); "
        "warm: the same chart again, as order-select sends it on every edit\n"
    )
    print(
        f"{'resources':>10} {'json.loads ms':>14} {'cold ms':>9} {'ratio':>7} {'warm ms':>9} {'ratio':>7} "
        f"{'cold µs/res':>12}"
    )
    for n in (100, 1_000, 10_000):
        payload = json.dumps({"resourceType": "Bundle", "entry": [{"resource": r} for r in chart(n)]})
        repeat = 30 if n < 10_000 else 7
        base = best_of(lambda p=payload: json.loads(p), repeat)
        resources = [e["resource"] for e in json.loads(payload)["entry"]]
        derive(resources, ts, today)  # compiled regexes and group indexes

        def cold(r=resources) -> None:
            clear_content_cache()
            ts.forget_verdicts()
            forget_pieces(ts)
            derive(r, ts, today)

        cold_t = best_of(cold, repeat)
        derive(resources, ts, today)
        warm_t = best_of(lambda r=resources: derive(r, ts, today), repeat)
        print(
            f"{n:>10} {base * 1000:>14.2f} {cold_t * 1000:>9.2f} {cold_t / base:>6.2f}x {warm_t * 1000:>9.2f} "
            f"{warm_t / base:>6.2f}x {cold_t / n * 1e6:>12.1f}"
        )


if __name__ == "__main__":
    main()
