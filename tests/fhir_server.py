"""A small, faithful FHIR R4 REST server for tests, run as its own process.

Implements read (`GET /Type/id`), search by `patient`, `code` and `category` (token lists,
`system|code`) and `_id` (a list), `_include=X:medication`, `X:specimen` and
`DiagnosticReport:result[:Observation]` (off with `include_results: false`, like servers that
ignore it), paging with `next` links (`_count`, default 3),
a transaction Bundle posted to the base (PUT `Type/id` entries: create or replace; a
transaction-response Bundle back), `GET /metadata`, and a control endpoint (`POST /_control`)
that loads resources and injects faults:
delay per request, an HTTP status, HTML instead of JSON, a `next` link that loops or points
to another host or (`sibling`) to another tenant of this host (paths under `/tenant-<name>/` are served
as tenants of one host), a `Set-Cookie` on every answer, a body trickled a byte at a time, one request
answered at a time (`serial`, like a single-threaded server), `lenient` (ignores the `patient` search parameter,
as servers do with a parameter they do not support).
`GET /_log` returns what it was asked (paths and whether a token came).

Run: python tests/fhir_server.py [--port 0]   (prints "PORT <n>" when ready)
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

STATE: dict[str, Any] = {
    "resources": [],
    "delay": 0.0,
    "status": 200,
    "html": False,
    "next": "normal",
    "page_size": 3,
    "log": [],
    "include_results": True,
    "include_specimens": True,  # off: a server that ignores _include=Observation:specimen
    "set_cookie": False,
    "trickle": 0.0,
    "serial": False,
    "lenient": False,
}
SERIAL = threading.Lock()  # held while answering when STATE["serial"]: a server that answers one request at a time
LOCK = threading.Lock()


def _subject_id(res: dict[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        ref = res.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return ref["reference"].split("/")[-1]
    return None


def _codes(res: dict[str, Any], keys: tuple[str, ...] = ("code", "medicationCodeableConcept")) -> set[tuple[str, str]]:
    out = set()
    for key in keys:
        value = res.get(key)
        for cc in value if isinstance(value, list) else [value]:
            if isinstance(cc, dict):
                for c in cc.get("coding") or []:
                    out.add((c.get("system", ""), c.get("code", "")))
    return out


def _token_match(have: set[tuple[str, str]], param: str) -> bool:
    wanted = [t.split("|", 1) if "|" in t else ["", t] for t in param.split(",")]
    return any((s, c) in have or (not s and any(c == hc for _, hc in have)) for s, c in wanted)


def _matches(res: dict[str, Any], params: dict[str, list[str]]) -> bool:
    if "patient" in params and not STATE.get("lenient") and _subject_id(res) != params["patient"][0].split("/")[-1]:
        return False
    if "code" in params and not _token_match(_codes(res), params["code"][0]):
        return False
    if "category" in params and not _token_match(_codes(res, ("category",)), params["category"][0]):
        return False
    if "_id" in params and res.get("id") not in params["_id"][0].split(","):
        return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/fhir+json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if STATE["set_cookie"]:
            self.send_header("Set-Cookie", "session=user-a-secret; Path=/")
        self.end_headers()
        trickle = STATE["trickle"] if ctype == "application/fhir+json" else 0.0
        if not trickle:
            self.wfile.write(body)
            return
        try:  # a server that keeps every socket read alive but never finishes in time
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_control":
            with LOCK:
                if "reset" in data:
                    STATE.update(
                        delay=0.0,
                        status=200,
                        html=False,
                        next="normal",
                        page_size=3,
                        log=[],
                        include_results=True,
                        include_specimens=True,
                        set_cookie=False,
                        trickle=0.0,
                        serial=False,
                        lenient=False,
                    )
                STATE.update({k: v for k, v in data.items() if k != "reset"})
            self._send(200, b"{}", "application/json")
        elif self.path in ("/", "") and data.get("resourceType") == "Bundle" and data.get("type") == "transaction":
            self._transaction(data)
        else:
            self._send(405, b"{}", "application/json")

    def _transaction(self, bundle: dict[str, Any]) -> None:
        """All or nothing: every entry must be a PUT of Type/id matching its resource."""
        entries = bundle.get("entry") or []
        for e in entries:
            res, req = e.get("resource") or {}, e.get("request") or {}
            if req.get("method") != "PUT" or req.get("url") != f"{res.get('resourceType')}/{res.get('id')}":
                self._send(
                    400,
                    json.dumps(
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "invalid", "diagnostics": f"bad entry {req}"}],
                        }
                    ).encode(),
                )
                return
        out = []
        with LOCK:
            for e in entries:
                res = e["resource"]
                key = (res["resourceType"], res["id"])
                old = [r for r in STATE["resources"] if (r.get("resourceType"), r.get("id")) == key]
                STATE["resources"] = [r for r in STATE["resources"] if (r.get("resourceType"), r.get("id")) != key]
                STATE["resources"].append(res)
                out.append(
                    {
                        "response": {
                            "status": "200 OK" if old else "201 Created",
                            "location": f"{key[0]}/{key[1]}/_history/1",
                        }
                    }
                )
        self._send(200, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": out}).encode())

    def do_GET(self) -> None:
        if STATE["serial"]:
            with SERIAL:
                self._get()
        else:
            self._get()

    def _get(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/_log":
            with LOCK:
                self._send(200, json.dumps(STATE["log"]).encode(), "application/json")
            return
        with LOCK:
            STATE["log"].append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "cookie": self.headers.get("Cookie"),
                    "t": time.time(),
                }
            )
            delay, status, html = STATE["delay"], STATE["status"], STATE["html"]
        if delay:
            time.sleep(delay)
        if status != 200:
            self._send(
                status,
                json.dumps(
                    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}
                ).encode(),
            )
            return
        if html:
            self._send(200, b"<html><body>Login required</body></html>", "text/html")
            return
        segs = [s for s in parts.path.split("/") if s]
        tenant = ""
        if segs and segs[0].startswith("tenant-"):  # several tenants on one host: /tenant-a/..., /tenant-b/...
            tenant, segs = "/" + segs[0], segs[1:]
        params = parse_qs(parts.query)
        if segs == ["metadata"]:
            self._send(
                200,
                json.dumps(
                    {
                        "resourceType": "CapabilityStatement",
                        "status": "active",
                        "kind": "instance",
                        "fhirVersion": "4.0.1",
                        "format": ["json"],
                    }
                ).encode(),
            )
            return
        if len(segs) == 2:
            for res in STATE["resources"]:
                if res.get("resourceType") == segs[0] and res.get("id") == segs[1]:
                    self._send(200, json.dumps(res).encode())
                    return
            self._send(
                404,
                json.dumps(
                    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
                ).encode(),
            )
            return
        if len(segs) != 1:
            self._send(400, b"{}")
            return
        self._search(segs[0], params, tenant)

    def _search(self, rtype: str, params: dict[str, list[str]], tenant: str = "") -> None:
        hits = [r for r in STATE["resources"] if r.get("resourceType") == rtype and _matches(r, params)]
        size = int(params.get("_count", [STATE["page_size"]])[0])
        offset = int(params.get("_offset", ["0"])[0])
        page = hits[offset : offset + size]
        entries = [
            {"fullUrl": f"{self._base()}/{r['resourceType']}/{r.get('id')}", "resource": r, "search": {"mode": "match"}}
            for r in page
        ]
        for inc in params.get("_include", []):
            name = (inc.split(":") + [""])[1]
            field, target = {
                "medication": ("medicationReference", "Medication"),
                "specimen": ("specimen", "Specimen"),
                "result": ("result", "Observation"),
            }.get(name, (None, None))
            if name == "result" and not STATE["include_results"]:
                continue
            if name == "specimen" and not STATE["include_specimens"]:
                continue
            for r in page if field else []:
                value = r.get(field)
                refs = {v.get("reference", "") for v in (value if isinstance(value, list) else [value or {}])}
                for m in STATE["resources"]:
                    if m.get("resourceType") == target and f"{target}/{m.get('id')}" in refs:
                        entries.append({"resource": m, "search": {"mode": "include"}})
        links = []
        if offset + size < len(hits):
            q = {k: v[0] for k, v in params.items()}
            mode = STATE["next"]
            if mode == "loop":
                q["_offset"] = str(offset)
            else:
                q["_offset"] = str(offset + size)
            host = (
                "http://127.0.0.2:9"
                if mode == "foreign"
                else self._base() + "/tenant-other"
                if mode == "sibling"  # another tenant of the same host
                else self._base() + tenant
            )
            links.append({"relation": "next", "url": f"{host}/{rtype}?{urlencode(q)}"})
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(hits), "link": links, "entry": entries}
        self._send(200, json.dumps(bundle).encode())

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    ThreadingHTTPServer.request_queue_size = 128  # like a real server; 5 drops parallel SYNs
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
