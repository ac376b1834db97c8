"""The card ledger: every card returned or held back (repeat, snooze, shadow mode), without PHI, for the
CDS committee's numbers; and snoozes by override reason. Writes go through a background thread: a slow or
absent database never slows or fails an invocation (the miss is counted)."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import queue
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from cds_service.storage.tenancy import KEY_VERSION_ID_ONLY, KEY_VERSION_TENANT, PatientKey

log = logging.getLogger("her2_cds.ledger")
meta = MetaData()
ledger = Table(
    "cds_card_ledger",
    meta,
    Column("card_uuid", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True)),
    Column("service_id", String(100)),
    Column("hook", String(40)),
    Column("topic", String(40)),
    Column("pathways", String(100)),
    Column("indicator", String(10)),
    Column("client", String(300)),
    Column("ruleset_version", String(20)),
    Column("held_back", String(20)),
    Column("patient_hash", String(64)),
    Column("evidence_digest", String(64)),
    Column("patient_key_version", Integer),  # what patient_hash covers (storage/tenancy.py; migration 0003)
)
snoozes = Table(
    "cds_snooze",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_hash", String(64)),
    Column("topic", String(40)),
    Column("reason_code", String(200)),
    Column("card_uuid", String(64)),
    Column("created_at", DateTime(timezone=True)),
    Column("until", DateTime(timezone=True)),
    Column("evidence_digest", String(64)),
    Column("patient_key_version", Integer),
    Column("issuer", String(300)),
)
site = Table("cds_site", meta, Column("name", String(40), primary_key=True), Column("value", String(200)))
QUEUE_SIZE = 10_000
BATCH_SIZE = 200
LINGER_SECONDS = 0.05  # the writer waits this long for more cards: one transaction per batch, not one per card
EXIT_FLUSH_SECONDS = 5.0  # at exit, what is queued is written, for at most this long
# after a failed read on the request path, the database is not asked again for this long: snoozes are then "not
# known" at once (cards go out) instead of each request waiting on a connection that will fail
HOT_PATH_PAUSE_SECONDS = 2.0


@dataclass
class Entry:
    """One card as the ledger keeps it: what it was, not whom it was about (the patient is a keyed hash)."""

    card_uuid: str
    service_id: str
    hook: str
    topic: str
    indicator: str
    ruleset_version: str
    evidence_digest: str
    pathways: str | None = None
    client: str | None = None
    held_back: str | None = None  # None: returned; "repeat" | "snooze" | "shadow"
    patient_hash: str | None = None  # of the PatientKey (issuer, FHIR server, patient id)
    patient_key_version: int | None = KEY_VERSION_TENANT
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _insert(engine: Engine, table: Table) -> Any:
    """The dialect's own insert construct (for ON CONFLICT DO NOTHING)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class Ledger:
    """Records cards (asynchronously) and answers snooze questions (synchronously, failing open: a card that
    cannot be checked is shown)."""

    def __init__(
        self, engine: Engine, secret_file: str | None = None, on_miss: Any = None, ensure_schema: Any = None
    ) -> None:
        self.engine = engine
        self._ensure = ensure_schema or (lambda: None)  # a database down at start is migrated on first use
        self.secret_file = secret_file  # the HMAC key of the patient hash (None: a random key kept in the database)
        self._on_miss = on_miss or (lambda what: None)
        self._queue: queue.Queue[Entry | None] = queue.Queue(QUEUE_SIZE)
        self._key: bytes | None = None
        self._key_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._exit_hook = False
        self._wake = threading.Event()  # set by a flush: the writer stops waiting for more cards
        self._paused_until = 0.0  # the request path does not ask the database before this (monotonic) time

    # --- the patient hash
    def _secret(self) -> bytes:
        with self._key_lock:
            if self._key is None:
                path = self.secret_file
                self._key = Path(path).read_bytes().strip() if path else self._site_key()
            return self._key

    def _site_key(self) -> bytes:
        """A random key kept in the database when no secret file is configured (start-up warns)."""
        self._ensure()
        with self.engine.begin() as conn:
            conn.execute(
                _insert(self.engine, site)
                .values(name="patient_key", value=secrets.token_hex(32))
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return str(conn.execute(select(site.c.value).where(site.c.name == "patient_key")).scalar()).encode()

    def _paused(self, what: str) -> bool:
        """True while the request path leaves the database alone after a failure (the miss is counted)."""
        if time.monotonic() < self._paused_until:
            self._on_miss(what)
            return True
        return False

    def _pause(self, what: str, exc: Exception) -> None:
        if time.monotonic() >= self._paused_until:  # said once per outage, not once per request
            log.warning(
                "card ledger %s failed: %s; snoozes are not known (cards go out) for the next %.0f s",
                what,
                type(exc).__name__,
                HOT_PATH_PAUSE_SECONDS,
            )
        self._paused_until = time.monotonic() + HOT_PATH_PAUSE_SECONDS
        self._on_miss(what)

    def load_key(self) -> bool:
        """Read (or make) the patient key now, at start, rather than on the first card; a database down at start
        is not an error here (the first card retries, and counts a miss if it fails)."""
        try:
            self._secret()
            return True
        except Exception:  # noqa: BLE001 - start-up must not fail on the database; first use says it
            return False

    def patient_hash(self, patient: PatientKey) -> str | None:
        """The keyed hash of one patient of one EHR (None without a patient id, or without the key)."""
        return self._hash(patient.canonical()) if patient.patient_id else None

    def _hash(self, data: bytes) -> str | None:
        if self._key is None and self._paused("patient key"):
            return None
        try:
            return hmac.new(self._secret(), data, hashlib.sha256).hexdigest()
        except Exception as exc:  # noqa: BLE001 - no key, no hash: the card still goes out
            self._pause("patient key", exc)
            return None

    # --- writing
    def record(self, entries: list[Entry]) -> None:
        """Queue entries for the writer thread; never blocks, never raises."""
        self._start()
        for entry in entries:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._on_miss("queue full")

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._thread_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="card-ledger", daemon=True)
                    self._thread.start()
                    if not self._exit_hook:
                        atexit.register(self.flush_at_exit)
                        self._exit_hook = True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is not None and self._queue.qsize() < BATCH_SIZE:
                self._wake.wait(LINGER_SECONDS)  # let the cards of the next moment join (a flush cuts it short)
            self._wake.clear()
            batch = [first]
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [asdict(e) for e in batch if e is not None]
            try:
                if rows:
                    self._ensure()
                    with self.engine.begin() as conn:
                        conn.execute(
                            _insert(self.engine, ledger).on_conflict_do_nothing(index_elements=["card_uuid"]), rows
                        )
            except Exception as exc:  # noqa: BLE001 - the database is down: count, never retry forever
                for _ in rows:
                    self._miss("write", exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued entry has been written (or counted as missed); the writer stops waiting for
        more at once."""
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass  # a full queue is written without waiting anyway
        self._queue.join()

    def flush_at_exit(self) -> None:
        """At interpreter exit (a worker recycled or stopped): write what is queued, waiting at most
        EXIT_FLUSH_SECONDS (a database that is down must not hold the exit)."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Thread(target=self.flush, name="card-ledger-exit", daemon=True)
        done.start()
        done.join(EXIT_FLUSH_SECONDS)

    def _miss(self, what: str, exc: Exception) -> None:
        self._on_miss(what)
        log.warning("card ledger %s failed: %s", what, type(exc).__name__)

    # --- snoozes
    def snoozed(self, patient: PatientKey, topic: str, evidence_digest: str, now: datetime | None = None) -> bool:
        """A snooze covers this patient and topic: time-bound and unexpired, or bound to the evidence, which has
        not changed. A snooze made before tenancy (its hash covers the patient id alone) covers the patient only
        for the issuer whose override made it. Failing open: a snooze that cannot be read holds nothing back."""
        if self._paused("snooze read"):
            return False
        tenant_hash = self.patient_hash(patient)
        if not tenant_hash:
            return False
        legacy_hash = self._hash(patient.patient_id.encode())
        now = now or datetime.now(timezone.utc)
        whose = or_(
            and_(snoozes.c.patient_hash == tenant_hash, snoozes.c.patient_key_version == KEY_VERSION_TENANT),
            and_(
                snoozes.c.patient_hash == legacy_hash,
                snoozes.c.patient_key_version == KEY_VERSION_ID_ONLY,
                snoozes.c.issuer == (patient.issuer or None),
            ),
        )
        query = (
            select(snoozes.c.id)
            .where(
                whose,
                snoozes.c.topic == topic,
                or_(
                    and_(snoozes.c.until.is_not(None), snoozes.c.until > now),
                    and_(snoozes.c.until.is_(None), snoozes.c.evidence_digest == evidence_digest),
                ),
            )
            .limit(1)
        )
        try:
            self._ensure()
            with self.engine.connect() as conn:
                return conn.execute(query).first() is not None
        except Exception as exc:  # noqa: BLE001 - not known: the card goes out
            self._pause("snooze read", exc)
            return False

    def issuers_of(self, card_uuids: list[str]) -> dict[str, str | None]:
        """The issuer each recorded card was issued to (cards not recorded are absent)."""
        self._ensure()
        with self.engine.connect() as conn:
            rows = conn.execute(select(ledger.c.card_uuid, ledger.c.client).where(ledger.c.card_uuid.in_(card_uuids)))
            return {r.card_uuid: r.client for r in rows}

    def snooze_from_feedback(
        self, entries: list[dict[str, Any]], rules: Mapping[str, Mapping[str, Any]], issuer: str | None = None
    ) -> int:
        """An override whose reason has a snooze rule quiets the same topic for the same patient of the same EHR.
        Only info cards are snoozed (a warning or a critical card always comes back), only by the issuer the card
        was issued to, and once per card: a replayed or repeated override neither stacks nor prolongs it.
        Returns the snoozes made."""
        made = 0
        for entry in entries:
            code = ((entry.get("overrideReason") or {}).get("reason") or {}).get("code")
            rule = rules.get(code) if entry.get("outcome") == "overridden" and code else None
            if not rule:
                continue
            with self.engine.begin() as conn:
                card = conn.execute(select(ledger).where(ledger.c.card_uuid == entry["card"])).first()
                if card is None or card.indicator != "info" or not card.patient_hash or card.client != issuer:
                    continue
                now = datetime.now(timezone.utc)
                until = now + timedelta(days=int(rule["days"])) if rule.get("days") else None
                made += (
                    conn.execute(
                        _insert(self.engine, snoozes)
                        .values(
                            patient_hash=card.patient_hash,
                            patient_key_version=card.patient_key_version or KEY_VERSION_ID_ONLY,
                            issuer=card.client,
                            topic=card.topic,
                            reason_code=code,
                            card_uuid=entry["card"],
                            created_at=now,
                            until=until,
                            evidence_digest=card.evidence_digest if rule.get("until_evidence_changes") else None,
                        )
                        .on_conflict_do_nothing(index_elements=["card_uuid"])
                    ).rowcount
                    or 0
                )
        return made

    def purge_in_background(self, retention_days: int) -> None:
        """Purge once, off the request path (at start; each worker's start is often enough)."""

        def run() -> None:
            try:
                self.purge(retention_days)
            except Exception as exc:  # noqa: BLE001 - retried at the next start
                self._miss("purge", exc)

        threading.Thread(target=run, name="card-ledger-purge", daemon=True).start()

    def purge(self, retention_days: int, now: datetime | None = None) -> int:
        """Delete ledger rows (and expired snoozes) older than the retention period."""
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)
        self._ensure()
        with self.engine.begin() as conn:
            n = conn.execute(delete(ledger).where(ledger.c.created_at < cutoff)).rowcount or 0
            conn.execute(delete(snoozes).where(snoozes.c.until.is_not(None), snoozes.c.until < cutoff))
        return n
