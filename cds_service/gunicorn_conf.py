"""gunicorn settings for production; every value can be overridden by environment variables."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from typing import Any

from cds_service.logs import GUNICORN_LOGCONFIG

bind = os.environ.get("HER2_CDS_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("HER2_CDS_WORKERS", str(min(4, multiprocessing.cpu_count() * 2))))
threads = int(os.environ.get("HER2_CDS_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("HER2_CDS_WORKER_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
max_requests = int(os.environ.get("HER2_CDS_MAX_REQUESTS", "10000"))  # a worker is recycled after this many
max_requests_jitter = max_requests // 20
preload_app = False
accesslog = None  # the service writes its own PHI-free JSON line per request
errorlog = "-"
logconfig_dict = GUNICORN_LOGCONFIG  # one JSON object per line, gunicorn's own lines included
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 32768  # an EHR's JWT may be 8-16 KB (nginx's large_client_header_buffers match it)

_OWN_METRICS_DIR = None
if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="her2-cds-metrics-")


def own_metrics_dir(path: str | None) -> None:
    """Remember a metrics directory this process made, so that on_exit removes it."""
    global _OWN_METRICS_DIR
    _OWN_METRICS_DIR = path


def on_starting(server: Any) -> None:
    """gunicorn hook, in the master, once: what every start says (cds_service.startup), and a refusal stops the
    master before any worker starts (exit 3, as a worker's boot error would)."""
    import logging
    import sys

    from cds_service.config import ConfigError, load
    from cds_service.logs import configure
    from cds_service.startup import ANNOUNCED, start

    try:
        settings = load(dev=os.environ.get("HER2_CDS_DEV") == "1")
        configure(settings.log_level)
        refusal = start(settings, production=True)
    except ConfigError as exc:
        refusal = str(exc)
    if refusal:
        logging.getLogger("her2_cds").critical("refusing to start: %s", refusal)
        print(f"her2-cds: refusing to start: {refusal}", file=sys.stderr, flush=True)
        raise SystemExit(3)
    os.environ[ANNOUNCED] = "1"


def on_exit(server: Any) -> None:
    """gunicorn hook, in the master only: remove the metrics directory this process made."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's metrics files are marked so that /metrics stops counting them live."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
