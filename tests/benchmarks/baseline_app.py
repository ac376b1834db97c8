"""The baseline of bench_http.py: a bare Flask app on the same gunicorn settings as the service. It parses the
JSON body and returns one fixed card: the floor any Python CDS service pays (HTTP, WSGI, JSON in and out)."""

from __future__ import annotations

import json

from flask import Flask, Response, request

FIXED = json.dumps(
    {
        "cards": [
            {
                "uuid": "00000000-0000-4000-8000-000000000000",
                "summary": "baseline",
                "indicator": "info",
                "source": {"label": "baseline"},
            }
        ]
    }
)

app = Flask(__name__)


@app.post("/cds-services/her2-order-select")
def baseline() -> Response:
    json.loads(request.get_data())
    return Response(FIXED, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response("{}", mimetype="application/json")
