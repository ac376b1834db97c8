"""WSGI entry point for gunicorn: `gunicorn -c python:cds_service.gunicorn_conf cds_service.wsgi:app`."""

from __future__ import annotations

import os

from cds_service.config import load
from cds_service.logs import configure
from cds_service.process import tune_server_process
from cds_service.web.app import serving_app

settings = load(dev=os.environ.get("HER2_CDS_DEV") == "1")
configure(settings["logging"]["level"])
app = serving_app(settings)
tune_server_process()
