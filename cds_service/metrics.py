"""Prometheus metrics (per app registry; multiprocess-aware under gunicorn)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("her2cds_requests_total", "HTTP requests", ["route", "service", "status"], registry=r)
        self.latency = Histogram(
            "her2cds_request_seconds", "request latency", ["route", "service"], buckets=BUCKETS, registry=r
        )
        self.cards = Counter("her2cds_cards_total", "cards returned", ["service", "topic"], registry=r)
        self.left_out = Counter(
            "her2cds_resources_left_out_total",
            "Resources left out: not the request's patient's, or not of the type the query asked for",
            ["service"],
            registry=r,
        )
        self.fallback_calls = Counter(
            "her2cds_fhir_fallback_calls_total", "FHIR fallback HTTP calls", ["service"], registry=r
        )
        self.fallback_errors = Counter(
            "her2cds_fhir_fallback_errors_total", "FHIR fallback queries that failed", ["service"], registry=r
        )
        self.auth_failures = Counter("her2cds_auth_failures_total", "refused tokens", ["reason"], registry=r)
        self.internal_errors = Counter(
            "her2cds_derivation_failures_total",
            "requests answered with no cards because derivation failed",
            ["service"],
            registry=r,
        )
        self.card_failures = Counter(
            "her2cds_card_failures_total",
            "card topics that could not be evaluated (an info card said so)",
            ["service", "topic"],
            registry=r,
        )
        self.held_back = Counter(
            "her2cds_cards_held_back_total", "cards derived but not returned", ["service", "topic", "why"], registry=r
        )
        self.ledger_misses = Counter(
            "her2cds_ledger_misses_total",
            "card ledger writes, snooze or repeat reads that failed (the card went out)",
            ["what"],
            registry=r,
        )
        self.feedback = Counter(
            "her2cds_feedback_entries_total", "feedback entries received", ["service", "outcome"], registry=r
        )

    def prepare(self, service_ids: Iterable[str], route: str = "/cds-services/<service_id>") -> None:
        """Create, at zero, the series every answered hook call touches (the warm-up): a counter at zero is the
        usual Prometheus practice, and under gunicorn the first series of each kind creates the worker's
        metrics file, which the first request would otherwise pay for."""
        for service in service_ids:
            self.requests.labels(route=route, service=service, status="200")
            self.latency.labels(route=route, service=service)
            self.fallback_calls.labels(service=service)
            self.fallback_errors.labels(service=service)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
