"""What the web layer holds across requests, as one typed object built from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask

from cds_service.config import Settings
from cds_service.engine import Engine
from cds_service.metrics import Metrics
from cds_service.rules.registry import TOPICS, Topic
from cds_service.storage.feedback import FeedbackStore
from cds_service.storage.first_use import FirstUseMemory
from cds_service.storage.first_use import from_url as first_use_from_url
from cds_service.storage.ledger import Ledger
from cds_service.web.jwt_verifier import Verifier

EXTENSION = "her2_cds"


@dataclass
class AppState:
    """Settings, the invocation engine, storage, metrics and the token verifier of one app."""

    settings: Settings
    engine: Engine
    store: FeedbackStore
    ledger: Ledger | None
    metrics: Metrics
    replay: FirstUseMemory
    verifier: Verifier
    origins: frozenset[str]
    public_base: str
    explain_hash: str | None

    @property
    def services(self) -> dict[str, dict]:
        return self.engine.services


def build_state(settings: Settings, topics: tuple[Topic, ...] = TOPICS) -> AppState:
    """Open what the app needs: replay cache, verifier, database (migrated; a database down at start is
    retried on first use), metrics, ledger (its retention purge runs in the background) and the engine."""
    storage = settings.storage
    replay = first_use_from_url(storage.cache_url, max_entries=storage.memory_cache_max_entries)
    store = FeedbackStore(storage.database_url)
    try:
        store.create_schema()
    except Exception as exc:  # noqa: BLE001 - start anyway; /readyz reports the database
        logging.getLogger("her2_cds").warning(
            "feedback database not reachable at start (%s); will retry on first feedback", type(exc).__name__
        )
    metrics = Metrics()
    ledger = None
    if settings.ledger.enabled:
        ledger = Ledger(
            store.engine,
            settings.ledger.patient_key_secret_file,
            lambda what: metrics.ledger_misses.labels(what=what).inc(),
            lambda: store.create_schema(attempts=1),
        )
        ledger.purge_in_background(settings.ledger.retention_days)
    return AppState(
        settings=settings,
        engine=Engine(settings, ledger, topics),
        store=store,
        ledger=ledger,
        metrics=metrics,
        replay=replay,
        verifier=Verifier(settings.auth, replay),
        origins=settings.cors_origins,
        public_base=(settings.public_base_url or "").rstrip("/"),
        explain_hash=settings.explain_token_sha256,
    )


def app_state(app: Flask) -> AppState:
    """The state of an app made by create_app."""
    state = app.extensions[EXTENSION]
    assert isinstance(state, AppState)
    return state
