"""Process-wide tuning of a server process, done by the entry points (wsgi.py, `her2-cds serve`), never by the app
factory that tests call many times."""

from __future__ import annotations

import gc

# One hook request allocates tens of thousands of short-lived objects (its parsed body): with the default first
# threshold (700) the collector runs dozens of times per request. These make it run about once per request.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_server_process() -> None:
    """What start-up and the warm-up built leaves the collector's scans (gc.freeze), and the collector runs in
    proportion to a request's allocations."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
