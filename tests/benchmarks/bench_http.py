"""The service as production runs it, against a bare Flask app on the same gunicorn settings, in one run.

    .venv/bin/python -m tests.benchmarks.bench_http [--reps 3] [--seconds 10] [--sizes 300]

- Service: `gunicorn -c python:cds_service.gunicorn_conf cds_service.wsgi:app` (2 workers x 4 threads),
  authentication on (ES384, an inline key), the card ledger on (SQLite), one pre-signed token per request
  (a pool, so no jti repeats), an order-select whose prefetch is built from the service's own templates
  (every resource of a kind a template asks for: tests/benchmarks/generate.prefetch_chart).
- Baseline: tests/benchmarks/baseline_app.py (parse the body, return a fixed card) on the same settings.
- Two charts: "resent", the same chart on every request (order-select fires on every edit of the draft, then
  order-sign: the service keeps the facts of a chart sent again, facts/memo.py); "changing", one new eGFR
  result on every request, so no request's chart was seen before (the facts are derived afresh; only the new
  result is validated, the others' verdicts are cached).
- wrk with 1 and 16 connections, service and baseline interleaved, repeated; the spread is reported.
- Both with worker recycling off by default, so the RSS figures are of the same two workers; `--max-requests N`
  recycles each worker every N requests (tokens issued before a worker started must still be accepted).
- First, once every worker of both servers has stopped using CPU (started and warmed up): two charts never seen,
  the first requests of fresh workers. Then: microseconds per resource at 1k, 5k and 20k resources; the
  RSS of each worker before and after the runs.

Needs `wrk` (Debian package wrk). Traffic stays on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jwt
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from ..fixtures import builders as b
from ..helpers import hook_request, prefetch_from
from .generate import prefetch_chart

PATH = "/cds-services/her2-order-select"
PUBLIC = "https://cds.bench.example"
ISS = "https://ehr.bench.example"
LUA = """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  tokens = {}
  for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
  local f = io.open("%(body)s", "rb")
  body = f:read("*all")
  f:close()
  idx = id
  -- a body with VARYVARY in it is a chart that changes on every request: the placeholder becomes a counter
  local i, j = string.find(body, "VARYVARY", 1, true)
  if i then pre, post = body:sub(1, i - 1), body:sub(j + 1) end
end
function request()
  idx = idx + %(threads)d
  local t = tokens[(idx %% #tokens) + 1]
  local b = body
  if pre then b = pre .. tostring(idx) .. post end
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json",
                                          ["Authorization"] = "Bearer " .. t}, b)
end
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if not m:
        raise RuntimeError(f"wrk printed a latency this script cannot read: {text!r}")
    value, unit = m.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def parse_wrk(out: str) -> dict[str, float]:
    """p50/p99 from the --latency distribution (lines that start with the percentile: the "+/- Stdev" column
    of the thread statistics also holds a percentage and must not be read), req/s, requests, errors."""
    dist = dict(re.findall(r"^\s+(50|99)\.000%\s+(\S+)\s*$", out, re.M)) or dict(
        re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M)
    )
    if set(dist) != {"50", "99"}:
        raise RuntimeError(f"wrk gave no latency distribution:\n{out}")
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "p50": _ms(dist["50"]),
        "p99": _ms(dist["99"]),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": non2xx + sock,
    }


class Tokens:
    """Pre-signed ES384 tokens, a fresh jti each, written to a file wrk reads."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, tmp: Path) -> None:
        self.key, self.tmp, self.n = key, tmp, 0

    def file(self, count: int) -> Path:
        now = int(time.time())
        self.n += 1
        path = self.tmp / f"tokens-{self.n}.txt"
        path.write_text(
            "\n".join(
                jwt.encode(
                    {"iss": ISS, "aud": PUBLIC + PATH, "iat": now, "exp": now + 3000, "jti": uuid.uuid4().hex},
                    self.key,
                    algorithm="ES384",
                    headers={"kid": "bench"},
                )
                for _ in range(count)
            )
            + "\n"
        )
        return path


def wrk(base: str, body: Path, tokens: Path, seconds: int, connections: int) -> dict[str, float]:
    threads = min(2, connections)
    lua = body.with_suffix(f".{connections}.lua")
    lua.write_text(LUA % {"tokens": tokens, "body": body, "threads": threads, "path": PATH})
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), base + PATH],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out)


def _gunicorn(app: str, port: int, env: dict[str, str], max_requests: int = 0) -> subprocess.Popen[bytes]:
    env = {**env, "HER2_CDS_BIND": f"127.0.0.1:{port}", "HER2_CDS_WORKERS": "2", "HER2_CDS_THREADS": "4"}
    # by default no worker recycling (the shipped max_requests is 10,000): a recycled worker would hide RSS growth;
    # --max-requests N recycles every N requests (a recycled worker must refuse no token issued before it started)
    env["GUNICORN_CMD_ARGS"] = f"--max-requests {max_requests} --max-requests-jitter {max_requests // 20}"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:cds_service.gunicorn_conf", app],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _workers(master: int) -> list[str]:
    """The pids of a gunicorn master's workers."""
    return subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()


def _cpu_ticks(master: int) -> list[int]:
    out = []
    for pid in _workers(master):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.append(int(fields[11]) + int(fields[12]))  # utime + stime
    return out


def _settled(master: int, timeout: float = 60.0) -> None:
    """Wait until the server's workers have used no CPU for 0.5 s (started and warmed up)."""
    end = time.monotonic() + timeout
    before = _cpu_ticks(master)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = _cpu_ticks(master)
        if now == before and len(now) >= 2:
            return
        before = now
    raise RuntimeError("the workers did not settle")


def _rss_mb(master: int) -> list[float]:
    out = []
    for pid in _workers(master):
        status = Path(f"/proc/{pid}/status").read_text()
        out.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024)
    return sorted(out)


def _request(n: int, seed: int = 11, changing: bool = False) -> dict:
    """The order-select; changing: one eGFR result's id is a placeholder the wrk script fills with a counter, so
    every request carries a chart no request before it had (a new result since the last call)."""
    draft = b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")
    chart = prefetch_chart(n, seed)
    if changing:
        next(r for r in chart if str(r.get("id", "")).startswith("egfr-"))["id"] = "egfr-VARYVARY"
    return hook_request("order-select", prefetch=prefetch_from(chart), draft_orders=[draft])


def _post_once(base: str, body: bytes, token: str) -> float:
    t = time.perf_counter()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    resp = requests.post(base + PATH, data=body, timeout=30, headers=headers)
    assert resp.status_code == 200 and resp.json()["cards"], resp.text[:300]
    return (time.perf_counter() - t) * 1000


def unseen_series(sbase: str, bbase: str, tokens: Tokens, charts: int) -> dict[str, float]:
    """One client, `charts` distinct 300-resource order-selects no worker has seen, each sent to the service and to
    the baseline in turn (the order alternating), on kept-alive connections: median and p99 of each, and the ratio
    of the medians (issue 26's black-box measure of a chart never seen)."""
    pool = tokens.file(2 * charts).read_text().split()
    service, baseline = requests.Session(), requests.Session()
    times: dict[str, list[float]] = {"service": [], "baseline": []}
    for i in range(charts):
        body = json.dumps(_request(300, 20_000 + i)).encode()
        order = [("service", service, sbase), ("baseline", baseline, bbase)]
        for name, session, base in order if i % 2 == 0 else order[::-1]:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {pool.pop()}"}
            t = time.perf_counter()
            resp = session.post(base + PATH, data=body, timeout=30, headers=headers)
            times[name].append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200 and resp.json()["cards"], resp.text[:300]
    out = {}
    for name, values in times.items():
        values.sort()
        out[f"{name}_p50"] = statistics.median(values)
        out[f"{name}_p99"] = values[min(len(values) - 1, int(len(values) * 0.99))]
    out["ratio"] = out["service_p50"] / out["baseline_p50"]
    return out


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--sizes", default="300", help="resources per request for the ratio runs")
    ap.add_argument(
        "--charts",
        default="resent,changing",
        help="resent: the same chart on every request (order-select as the order is edited); changing: one new "
        "result per request, so no request's chart was seen before",
    )
    ap.add_argument("--scale", default="1000,5000,20000", help="resources per request for the per-resource cost")
    ap.add_argument("--max-requests", type=int, default=0, help="recycle each worker after N requests (0: never)")
    ap.add_argument("--unseen", type=int, default=150, help="distinct charts never seen, sent by one client")
    ap.add_argument("--unseen-reps", type=int, default=2, help="runs of the never-seen series (0: none)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="her2-bench-"))
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = dict(json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), kid="bench", alg="ES384")
    cfg = {
        "public_base_url": PUBLIC,
        "auth": {"required": True, "issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]},
        "storage": {"database_url": f"sqlite:///{tmp}/bench.db", "cache_url": f"sqlite:///{tmp}/replay.db"},
        "limits": {"max_body_bytes": 60_000_000},
        "logging": {"level": "WARNING"},
    }
    (tmp / "bench.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HER2_CDS_CONFIG": str(tmp / "bench.yaml")}
    sport, bport = _port(), _port()
    service, baseline = (
        _gunicorn("cds_service.wsgi:app", sport, env, args.max_requests),
        _gunicorn("tests.benchmarks.baseline_app:app", bport, env, args.max_requests),
    )
    sbase, bbase = f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{bport}"
    tokens = Tokens(key, tmp)
    try:
        _wait(sbase + "/healthz")
        _wait(bbase + "/healthz")
        # every worker of both servers done with its start (import, warm-up): a request sent while another worker
        # still warms itself on the same cores measures that contention, not a cold worker
        _settled(service.pid)
        _settled(baseline.pid)
        first = []
        for seed in (901, 902):  # charts never seen: the first request of a fresh worker, then another (the same
            # worker or the other: round robin is not guaranteed)
            token = tokens.file(1).read_text().strip()
            first.append(_post_once(sbase, json.dumps(_request(300, seed)).encode(), token))
        for rep in range(args.unseen_reps):
            r = unseen_series(sbase, bbase, tokens, args.unseen)
            print(
                f"charts never seen ({args.unseen} distinct, 1 client, interleaved), run {rep + 1}: service p50 "
                f"{r['service_p50']:.2f} ms (p99 {r['service_p99']:.2f}), baseline p50 {r['baseline_p50']:.2f} ms "
                f"(p99 {r['baseline_p99']:.2f}): {r['ratio']:.2f}×",
                flush=True,
            )
        rss_before = _rss_mb(service.pid)
        print(
            f"{os.cpu_count()} cores; gunicorn 2 workers x 4 threads; {args.seconds} s per wrk run; "
            f"{args.reps} repetitions, service and baseline interleaved\n"
        )
        print(f"first requests after start (two charts never seen, workers idle): {first[0]:.1f} ms, {first[1]:.1f} ms")
        results: dict[tuple[int, str, int, str], list[dict[str, float]]] = {}
        total = 0
        for n in [int(x) for x in args.sizes.split(",") if x]:
            for chart in [c for c in args.charts.split(",") if c]:
                body = tmp / f"req-{n}-{chart}.json"
                body.write_text(json.dumps(_request(n, changing=chart == "changing")))
                for rep in range(args.reps):
                    for conns in (1, 16):
                        order = ("service", "baseline") if rep % 2 == 0 else ("baseline", "service")
                        for name in order:
                            base = sbase if name == "service" else bbase
                            # more tokens than it can use: a jti never repeats
                            pool = tokens.file(args.seconds * (2000 if conns > 1 else 1000))
                            r = wrk(base, body, pool, args.seconds, conns)
                            total += r["requests"] if name == "service" else 0
                            results.setdefault((n, chart, conns, name), []).append(r)
                            print(
                                f"  {n} resources, {chart} chart, {conns:>2} clients, {name:>8}: p50 {r['p50']:6.2f} "
                                f"ms, p99 {r['p99']:6.2f} ms, {r['rps']:7.1f} req/s, {r['requests']} requests, "
                                f"{r['errors']} errors",
                                flush=True,
                            )
                    rss = ", ".join(f"{x:.0f}" for x in _rss_mb(service.pid))
                    print(f"  worker RSS {rss} MB after {total} service requests", flush=True)
        print(
            "\n| resources | chart | clients | service p50 | baseline p50 | p50 ratio | service p99 | p99 ratio | "
            "req/s ratio | errors |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for (n, chart, conns, name), runs in results.items():
            if name != "service":
                continue
            base_runs = results[(n, chart, conns, "baseline")]
            ratios = [s["p50"] / bl["p50"] for s, bl in zip(runs, base_runs, strict=True)]
            p99r = [s["p99"] / bl["p99"] for s, bl in zip(runs, base_runs, strict=True)]
            rpsr = [s["rps"] / bl["rps"] for s, bl in zip(runs, base_runs, strict=True)]
            print(
                f"| {n} | {chart} | {conns} | {_spread([r['p50'] for r in runs])} ms | "
                f"{_spread([r['p50'] for r in base_runs])} ms | {_spread(ratios)}× | "
                f"{_spread([r['p99'] for r in runs])} ms | {_spread(p99r)}× | {_spread(rpsr)}× | "
                f"{sum(r['errors'] for r in runs)} in {sum(r['requests'] for r in runs)} |"
            )
        rss_after = _rss_mb(service.pid)
        print(
            f"\nworker RSS: {', '.join(f'{x:.0f}' for x in rss_before)} MB after the first requests, "
            f"{', '.join(f'{x:.0f}' for x in rss_after)} MB after {total} more"
        )
        # a chart no worker has seen, on warm workers: what the first request after start pays that is not warm-up
        unseen = [
            _post_once(sbase, json.dumps(_request(300, seed)).encode(), tokens.file(1).read_text().strip())
            for seed in range(101, 113)
        ]
        print(
            f"a 300-resource chart never seen before, on warm workers (12 charts): median "
            f"{statistics.median(unseen):.1f} ms ({min(unseen):.1f}-{max(unseen):.1f})"
        )
        print("\ncost per resource (1 client, 5 s each; service p50 minus baseline p50, divided by resources):")
        for n in [int(x) for x in args.scale.split(",") if x]:
            body = tmp / f"req-{n}.json"
            body.write_text(json.dumps(_request(n)))
            bl = wrk(bbase, body, tokens.file(10), 5, 1)
            for chart in [c for c in args.charts.split(",") if c]:
                body = tmp / f"req-{n}-{chart}.json"
                body.write_text(json.dumps(_request(n, changing=chart == "changing")))
                s = wrk(sbase, body, tokens.file(3000), 5, 1)
                print(
                    f"  {n:>6} resources, {chart:>8} chart: service p50 {s['p50']:8.2f} ms, baseline p50 "
                    f"{bl['p50']:7.2f} ms, {(s['p50'] - bl['p50']) * 1000 / n:6.2f} µs per resource, "
                    f"{s['errors']} errors",
                    flush=True,
                )
    finally:
        for proc in (service, baseline):
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
