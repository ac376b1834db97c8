"""The service's database: one SQLAlchemy engine per process (SQLite by default, PostgreSQL by URL) and
its schema, migrated to the newest Alembic revision at start."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.pool import StaticPool

MIGRATIONS = "cds_service.storage:migrations"
PG_LOCK = 7_203_114  # pg_advisory_lock key: one migrating process at a time


def make_engine(database_url: str) -> Engine:
    """An engine that never puts statement values in its errors (a clinician's comment could be one)."""
    url = database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 2}  # a server that does not answer must not hold a request
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool  # one in-memory database shared by every thread
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "handle_error", _reopen_when_read_only)
    return engine


def _reopen_when_read_only(context: ExceptionContext) -> None:
    """SQLite opens a file it may not write read-only, and a pooled connection stays so after the file becomes
    writable (a volume mounted late, permissions fixed): "attempt to write a readonly database" is taken as a
    disconnect, so the pool is emptied and the next use opens the file afresh."""
    if "readonly database" in str(context.original_exception):
        context.is_disconnect = True


def migrate(engine: Engine, attempts: int = 3) -> None:
    """Upgrade to head. Several workers may start at once: PostgreSQL takes an advisory lock; SQLite retries
    after a lost race (the winner's tables are then found at head)."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def revision(engine: Engine) -> str | None:
    """The schema's Alembic revision (None: not migrated)."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # noqa: BLE001 - no version table yet
            return None


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL, absolute (relative ones are relative to the working directory); None for another
    database or an in-memory one."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


def database_shown(database_url: str) -> str:
    """The database as a person should see it: a SQLite file's absolute path; any other URL without its
    password."""
    found = sqlite_file(database_url)
    return str(found) if found is not None else make_url(database_url).render_as_string(hide_password=True)
