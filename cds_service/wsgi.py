"""WSGI entry point for gunicorn: `gunicorn -c python:cds_service.gunicorn_conf cds_service.wsgi:app`."""

from __future__ import annotations

import logging
import os
import sys

from cds_service.config import load
from cds_service.logs import configure
from cds_service.process import tune_server_process
from cds_service.startup import ANNOUNCED, refusal_to_serve, start
from cds_service.web.app import serving_app

settings = load(dev=os.environ.get("HER2_CDS_DEV") == "1")
configure(settings.log_level)
# gunicorn with cds_service.gunicorn_conf said it all once, in the master (on_starting); any other server: here
_refusal = refusal_to_serve(settings) if os.environ.get(ANNOUNCED) else start(settings, production=True)
if _refusal:
    logging.getLogger("her2_cds").critical("refusing to start: %s", _refusal)
    print(f"her2-cds: refusing to start: {_refusal}", file=sys.stderr, flush=True)
    raise SystemExit(3)  # gunicorn's WORKER_BOOT_ERROR: the master stops instead of starting the worker again
app = serving_app(settings)
tune_server_process()
