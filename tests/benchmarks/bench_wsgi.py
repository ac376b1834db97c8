"""The service plus a baseline endpoint in the same app and server, for bench_http.py.

/baseline parses the JSON body and returns one fixed card: the floor any CDS service pays
(HTTP, WSGI, JSON in and out) on this machine."""

from __future__ import annotations

import json
import os

from flask import Response, request

from cds_service.app import create_app
from cds_service.config import load

FIXED = json.dumps({"cards": [{"uuid": "00000000-0000-4000-8000-000000000000", "summary": "baseline",
                               "indicator": "info", "source": {"label": "baseline"}}]})

app = create_app(load(None, overrides={
    "auth": {"required": False},
    "storage": {"database_url": os.environ.get("BENCH_DB", "sqlite:///bench-feedback.db")},
    "fhir": {"allowed_servers": [os.environ.get("BENCH_FHIR", "http://127.0.0.1:9")], "timeout_seconds": 2,
             "allow_unauthenticated": True, "max_pages": 5},
    "limits": {"max_body_bytes": 50_000_000},
}))


@app.post("/baseline")
def baseline() -> Response:
    json.loads(request.get_data())
    return Response(FIXED, mimetype="application/json")
