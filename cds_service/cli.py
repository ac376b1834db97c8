"""The `her2-cds` command: serve, check-config, evaluate, report, knowledge, seed, sweep."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from cds_service.config import ConfigError, load


def _serve(args: argparse.Namespace) -> int:
    if args.workers <= 1:
        # from the first moment: Ctrl+C and SIGTERM stop it cleanly (the ledger's last cards written at exit), even
        # when the parent started it with SIGINT ignored (a background job of a script, a test runner's worker)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    metrics_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before prometheus_client is imported: /metrics then adds up every worker's counts
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="her2-cds-metrics-")
    from cds_service.logs import configure
    from cds_service.startup import start
    from cds_service.web.app import serving_app

    if args.config:
        os.environ["HER2_CDS_CONFIG"] = args.config
    overrides: dict[str, Any] = {"auth": {"required": False}} if args.no_auth else {}
    log = logging.getLogger("her2_cds")
    try:
        settings = load(args.config, dev=args.dev, overrides=overrides or None)
        if args.allow_fhir_server:  # added to what the file (and --dev) allow
            allowed = sorted(set(settings.fhir.allowed_servers) | set(args.allow_fhir_server))
            settings = load(args.config, dev=args.dev, overrides={**overrides, "fhir": {"allowed_servers": allowed}})
        configure(settings.log_level)
        refusal = start(settings, production=args.workers > 1, log=log)  # the same words as every other start
    except ConfigError as exc:
        print(f"her2-cds: refusing to start: {exc}", file=sys.stderr, flush=True)
        return 2
    if refusal:
        log.critical("refusing to start: %s", refusal)
        return 2
    log.info("listening on http://%s:%d/cds-services", args.host, args.port)
    if args.workers > 1:
        # each worker builds its own app after the fork: database pools and Redis sockets are never shared
        return _gunicorn(lambda: _tuned(serving_app(settings)), args, metrics_dir)
    log.warning(
        "this is werkzeug's development server, for trying the service on one machine: in production "
        "run `her2-cds serve --workers N` (gunicorn) or the Docker image, behind nginx (docs/security.md)"
    )
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class _Quiet(WSGIRequestHandler):
        def log_request(self, *_: Any) -> None:
            """The audit logger already writes one JSON line per request."""

    run_simple(
        args.host, args.port, _tuned(serving_app(settings)), threaded=True, use_reloader=False, request_handler=_Quiet
    )
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a sweep stops as on Ctrl+C: what it finished is kept, it says where it stopped


def _tuned(app: Any) -> Any:
    """Process-wide tuning of a server process (cds_service.process)."""
    from cds_service.process import tune_server_process

    tune_server_process()
    return app


def _gunicorn(build: Any, args: argparse.Namespace, metrics_dir: str | None) -> int:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            from cds_service import gunicorn_conf as production  # the settings docker/ uses, but bind and workers

            for key in (
                "worker_class",
                "threads",
                "timeout",
                "graceful_timeout",
                "keepalive",
                "max_requests",
                "max_requests_jitter",
                "limit_request_line",
                "limit_request_fields",
                "limit_request_field_size",
                "child_exit",
                "on_exit",
                "logconfig_dict",
                "accesslog",
                "errorlog",
            ):
                self.cfg.set(key, getattr(production, key))
            production.own_metrics_dir(metrics_dir)
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)

        def load(self) -> Any:  # called in each worker after the fork (preload_app is off)
            return build()

    _App().run()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from cds_service.fhir.terminology import load_terminology
    from cds_service.startup import problems, refusal_to_serve

    settings = load(args.file)
    ts = load_terminology(settings.value_set_files)
    for extra in ts.extras:
        print(f"{extra.path}: adds {extra.added} codes or terms to {extra.value_set}")
    mistakes = problems(settings, ts)
    if mistakes:
        print(f"{args.file}: invalid configuration", file=sys.stderr)
        for line in mistakes:
            print(f"  {args.file}: {line}", file=sys.stderr)
        return 1
    print(f"{args.file}: configuration is valid")
    refusal = refusal_to_serve(settings)
    if refusal:  # fine for development; said now, not at the first production start
        print(f"{args.file}: note: a production start (gunicorn, serve --workers N) refuses it: {refusal}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cds_service.evaluate import evaluate_file, render_text

    # in-process and offline: no token, and no database or cache opened (nothing written, nothing contacted)
    settings = load(
        args.config,
        overrides={"auth": {"required": False}, "storage": {"database_url": "sqlite://", "cache_url": "memory://"}},
    )
    status, body = evaluate_file(args.request, settings, args.service, explain=args.explain)
    if args.text or args.explain:
        print(render_text(status, body))
    else:
        print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def _seed(args: argparse.Namespace) -> int:
    from cds_service.seed import SeedError, seed, wait_ready

    try:
        if args.wait:
            wait_ready(args.fhir_server.rstrip("/"), args.wait)
        loaded = seed(args.fhir_server, os.environ.get("HER2_CDS_SEED_TOKEN"))
    except SeedError as exc:
        print(f"her2-cds seed: {exc}", file=sys.stderr)
        return 1
    print(f"loaded {len(loaded)} example patients into {args.fhir_server}:")
    for patient in loaded:
        name = patient["name"][0]
        print(f"  Patient/{patient['id']}: {' '.join(name.get('given', []))} {name.get('family', '')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    from cds_service.report import write_report
    from cds_service.storage.database import database_shown, sqlite_file
    from cds_service.storage.feedback import FeedbackStore

    settings = load(args.config)
    try:
        until = date.fromisoformat(args.until) if args.until else date.today() + timedelta(days=1)
        since = date.fromisoformat(args.since) if args.since else until - timedelta(days=35)
    except ValueError as exc:
        print(f"her2-cds report: dates are YYYY-MM-DD ({exc})", file=sys.stderr)
        return 2
    if since >= until:
        print(f"her2-cds report: --since ({since}) must be before --until ({until})", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"her2-cds report: cannot write to {out}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    url = settings.storage.database_url
    shown, file = database_shown(url), sqlite_file(url)
    if file is not None and not file.exists():
        print(
            f"her2-cds report: no database at {shown} (storage.database_url {url!r}, read from {settings.source}); "
            "run the report where the service runs, or give it the service's configuration with --config",
            file=sys.stderr,
        )
        return 2
    store = FeedbackStore(url)
    try:
        store.create_schema()
        paths = write_report(store.engine, since, until, out, shown)
    except Exception as exc:  # noqa: BLE001 - the database is down or refuses: say so, without its message
        # the class only: a driver's message can carry the connection URL and its password
        print(
            f"her2-cds report: cannot read the card ledger in the configured database ({type(exc).__name__}); "
            "is it running and reachable?",
            file=sys.stderr,
        )
        return 1
    finally:
        store.engine.dispose()
    print(f"read the card ledger in {shown}")
    for path in paths:
        print(path)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from datetime import date

    from cds_service.logs import configure
    from cds_service.sweep.export import ExportError
    from cds_service.sweep.run import SweepOptions, SweepStopped, sweep

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as `serve`: even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError:
        print(f"her2-cds sweep: --as-of is YYYY-MM-DD, not {args.as_of!r}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("her2-cds sweep: --workers is 1 or more", file=sys.stderr)
        return 2
    settings = load(args.config)
    configure("WARNING")
    options = SweepOptions(
        args.export,
        Path(args.out),
        args.workers,
        args.scheduler,
        as_of,
        args.chunk_mb << 20,
        args.patients_per_partition,
        args.keep_work,
    )
    try:
        summary = sweep(options, settings, say=lambda line: print(line, file=sys.stderr, flush=True))
    except ExportError as exc:
        print(f"her2-cds sweep: {exc}", file=sys.stderr)
        return 2
    except SweepStopped as exc:
        print(f"her2-cds sweep: {exc}", file=sys.stderr)
        return 130 if "interrupt" in str(exc) else 1
    except OSError as exc:
        print(f"her2-cds sweep: cannot write to {args.out}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    for line in sweep_lines(summary, Path(args.out)):
        print(line)
    return 0


def sweep_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What the sweep says at the end: what it read, what it could not, what it found, where the files are."""
    from cds_service.sweep.worklist import EXPORT_ERRORS, PROBLEMS

    c = summary["counts"]
    lines = [
        f"read {summary['files']} file(s), {c.get('lines', 0):,} lines, in {summary['seconds']} s on "
        f"{summary['workers']} worker(s), as of {summary['as_of']}",
        f"patients with breast cancer or T-DXd on record: {summary['cohort']:,}; judged: {c.get('patients', 0):,}; "
        f"on the worklist: {summary['rows']:,}",
    ]
    for kind, what in PROBLEMS.items():
        if c.get(kind):
            where = summary["places"].get(kind, [])
            lines.append(f"  {what}: {c[kind]:,}" + (f" (first: {'; '.join(where)})" if where else ""))
    if summary.get("export_reported_errors"):
        lines.append(f"  {EXPORT_ERRORS}: {summary['export_reported_errors']:,}")
    if summary.get("files_not_read"):
        skipped = ", ".join(f"{t} ({n})" for t, n in sorted(summary["files_not_read"].items()))
        lines.append(f"  files of types the service does not read, skipped: {skipped}")
    lines.append(f"worklist (PHI, readable by you only): {out / 'worklist.csv'}, worklist.html, worklist-fhir.json")
    return lines


def _knowledge(args: argparse.Namespace) -> int:
    from cds_service.clinical_rules import knowledge_base
    from cds_service.fhir.terminology import load_terminology

    settings = load(args.config)
    print(knowledge_base(load_terminology(list(settings.value_set_files))))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("her2-cds")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="her2-cds", description=__doc__)
    parser.add_argument("--version", action="version", version=f"her2-cds {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the CDS Hooks service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--config", help="YAML configuration (default: $HER2_CDS_CONFIG)")
    serve.add_argument(
        "--dev", action="store_true", help="local development: trust the public CDS Hooks sandbox and its origin"
    )
    serve.add_argument(
        "--no-auth", action="store_true", help="turn authentication off (local development only; loud warning)"
    )
    serve.add_argument(
        "--allow-fhir-server",
        action="append",
        default=[],
        metavar="URL",
        help="also allow FHIR fallback queries to this server (repeatable), e.g. a sandbox's",
    )
    serve.add_argument("--workers", type=int, default=1, help=">1 runs under gunicorn")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    check.set_defaults(func=_check_config)
    ev = sub.add_parser("evaluate", help="print the cards the service would return for a request")
    ev.add_argument("request", help="a CDS Hooks request JSON file")
    ev.add_argument("--service", help="service id (default: from the request's hook)")
    ev.add_argument("--config")
    ev.add_argument("--text", action="store_true", help="readable text instead of JSON")
    ev.add_argument(
        "--explain",
        action="store_true",
        help="also print the derived facts, each rule's verdict criterion by criterion, and the codings "
        "that matched no value set (text)",
    )
    ev.set_defaults(func=_evaluate)
    rp = sub.add_parser("report", help="the card ledger and feedback as report.html and CSV files")
    rp.add_argument("--config", help="YAML configuration naming the database (default: $HER2_CDS_CONFIG)")
    rp.add_argument("--since", help="first day, YYYY-MM-DD (default: 35 days before --until)")
    rp.add_argument("--until", help="day after the last, YYYY-MM-DD (default: tomorrow)")
    rp.add_argument("--out", required=True, help="directory for report.html and the CSV files")
    rp.set_defaults(func=_report)
    kb = sub.add_parser(
        "knowledge", help="print the clinical knowledge base with its sources and revisions (for a clinical reviewer)"
    )
    kb.add_argument("--config", help="YAML configuration (its local value-set files are listed too)")
    kb.set_defaults(func=_knowledge)
    sw = sub.add_parser(
        "sweep",
        help="judge every patient of a FHIR Bulk Data export; write a worklist (CSV, HTML, FHIR) of who needs what",
    )
    sw.add_argument("export", help="a directory of .ndjson / .ndjson.gz files, or the export's manifest JSON")
    sw.add_argument("--out", required=True, help="directory for the worklist files (they hold PHI)")
    sw.add_argument("--config", help="YAML configuration (value sets, card settings; default: $HER2_CDS_CONFIG)")
    sw.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="local worker processes (default: one per core; 1: in this process, no Dask)",
    )
    sw.add_argument("--scheduler", help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (instead of local workers)")
    sw.add_argument("--as-of", help="judge as of this day, YYYY-MM-DD (default: today, UTC)")
    sw.add_argument("--chunk-mb", type=int, default=64, help="plain NDJSON files are read in pieces of this size")
    sw.add_argument("--patients-per-partition", type=int, default=100, help="patients judged per task")
    sw.add_argument("--keep-work", action="store_true", help="keep the work folder (the grouped records) at the end")
    sw.set_defaults(func=_sweep)
    sd = sub.add_parser("seed", help="load the example patients into a FHIR R4 server (one transaction Bundle)")
    sd.add_argument("--fhir-server", required=True, help="the server's base URL, e.g. http://localhost:8081/fhir")
    sd.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for the server to answer /metadata first",
    )
    sd.set_defaults(func=_seed)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"her2-cds: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
