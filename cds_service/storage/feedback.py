"""Stored feedback: one row per feedback entry, idempotent on repeated posts (SQLAlchemy)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from cds_service.storage.database import make_engine, migrate

metadata = MetaData()

# the table as migration 0001 creates it (the migrations own the schema; this is for queries)
feedback = Table(
    "cds_feedback",
    metadata,
    Column("entry_key", String(64), primary_key=True),
    Column("service_id", String(100), nullable=False, index=True),
    Column("card_uuid", String(200), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", Text, nullable=True),
    Column("override_reason_system", String(500), nullable=True),
    Column("override_reason_code", String(200), nullable=True),
    Column("override_comment", Text, nullable=True),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("issuer", String(300), nullable=True),  # who sent it (migration 0003)
)


def _entry_key(service_id: str, entry: dict[str, Any]) -> str:
    canonical = json.dumps([service_id, entry], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class FeedbackStore:
    """Feedback rows in SQLite (default) or PostgreSQL."""

    def __init__(self, database_url: str) -> None:
        self.engine: Engine = make_engine(database_url)
        self._created = False

    def create_schema(self, attempts: int = 3) -> None:
        """Migrate the database to the newest schema (Alembic), once per process; the request path asks for one
        attempt (no waits between retries)."""
        if not self._created:
            migrate(self.engine, attempts)
            self._created = True

    def _insert(self) -> Any:
        """The dialect's own insert construct (for ON CONFLICT DO NOTHING)."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(feedback).on_conflict_do_nothing(index_elements=["entry_key"])
        return sqlite.insert(feedback).on_conflict_do_nothing(index_elements=["entry_key"])

    def store(self, service_id: str, entries: list[dict[str, Any]], issuer: str | None = None) -> list[dict[str, Any]]:
        """Store entries; returns those that were new (a repeated entry is ignored, and is not returned: a replay
        changes nothing)."""
        self.create_schema()
        now = datetime.now(timezone.utc)
        rows = []
        for entry in entries:
            reason = entry.get("overrideReason") or {}
            coding = reason.get("reason") or {}
            accepted = [s["id"] for s in entry.get("acceptedSuggestions") or []]
            rows.append(
                {
                    "entry_key": _entry_key(service_id, entry),
                    "service_id": service_id,
                    "card_uuid": entry["card"],
                    "outcome": entry["outcome"],
                    "accepted_suggestions": json.dumps(accepted) if accepted else None,
                    "override_reason_system": coding.get("system"),
                    "override_reason_code": coding.get("code"),
                    "override_comment": reason.get("userComment"),
                    "outcome_timestamp": entry["outcomeTimestamp"],
                    "received_at": now,
                    "issuer": issuer,
                }
            )
        new = []
        with self.engine.begin() as conn:
            for entry, row in zip(entries, rows, strict=True):
                if conn.execute(self._insert(), row).rowcount:
                    new.append(entry)
        return new

    def entries(self, service_id: str | None = None) -> list[dict[str, Any]]:
        self.create_schema()
        query = select(feedback).order_by(feedback.c.received_at, feedback.c.entry_key)
        if service_id:
            query = query.where(feedback.c.service_id == service_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False
