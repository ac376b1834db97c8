"""First-use memories (the jti replay cache, cards already shown): in a SQLite file shared by the workers of
one host (the default), in memory for one process, Redis when replicas must share them."""

from __future__ import annotations

import heapq
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Protocol


class CacheUnavailable(Exception):
    """The shared cache cannot be reached: a token's freshness cannot be proven (fail closed)."""

    label = "replay cache unavailable"


class CacheForgot(CacheUnavailable):
    """The token was issued before the cache began remembering (a restart without persistence): it may have
    been used and forgotten. Refused like an unreachable cache, as a fault on our side: the caller's next
    token, issued after the epoch, goes through."""

    label = "issued before the replay cache started"


class FirstUseMemory(Protocol):
    def first_use(self, key: str, ttl_seconds: int) -> bool:
        """Record key for ttl_seconds; True if it was not already recorded."""

    def ping(self) -> bool:
        """True when the cache can be used."""

    def epoch(self) -> float:
        """The wall-clock time since which the cache remembers every key it was given: a token issued
        before it may have been used already and forgotten (a restart without persistence)."""


class CacheFull(CacheUnavailable):
    """Every remembered token is still unexpired and the cache holds its maximum: a new token cannot be
    remembered, so it is refused (503, our side) rather than accepted unprovable."""

    label = "jti cache full"


class MemoryFirstUse:
    """A per-process cache; enough for one worker, not for replicas. Expired keys leave through a heap
    ordered by expiry, a few at each call (amortised O(log n), never a rebuild under the lock); a new key is
    refused only when the cache is full of unexpired ones."""

    EVICT_PER_CALL = 64

    def __init__(
        self, max_entries: int = 200_000, refuse_when_full: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._max = max_entries
        self._refuse_when_full = refuse_when_full
        self._epoch = time.time()  # this process's memory starts now

    def _evict(self, now: float, limit: int | None) -> None:
        """Drop expired keys, oldest first: at most `limit` (None: every expired one)."""
        heap = self._expiries
        while heap and heap[0][0] <= now and (limit is None or limit > 0):
            expiry, key = heapq.heappop(heap)
            if self._seen.get(key) == expiry:
                del self._seen[key]
            if limit is not None:
                limit -= 1

    def first_use(self, key: str, ttl_seconds: int) -> bool:
        now = self._clock()
        with self._lock:
            self._evict(now, self.EVICT_PER_CALL)
            expiry = self._seen.get(key)
            if expiry is not None and expiry <= now:
                del self._seen[key]  # expired but not yet evicted: it is new again
            if key in self._seen:
                return False
            if len(self._seen) >= self._max:
                self._evict(now, None)  # full: make room from every expired key first
            if len(self._seen) >= self._max:
                if self._refuse_when_full:
                    raise CacheFull(f"{len(self._seen)} unexpired tokens remembered")
                while self._expiries:  # a first-use memory that may forget: drop the oldest live key
                    old_expiry, old_key = heapq.heappop(self._expiries)
                    if self._seen.get(old_key) == old_expiry:
                        del self._seen[old_key]
                        break
            expiry = now + max(1, ttl_seconds)
            self._seen[key] = expiry
            heapq.heappush(self._expiries, (expiry, key))
            return True

    def __len__(self) -> int:
        return len(self._seen)

    def ping(self) -> bool:
        return True

    def epoch(self) -> float:
        return self._epoch


class RedisFirstUse:
    """SET NX EX in Redis: atomic across workers and replicas."""

    def __init__(self, url: str, namespace: str = "jti") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = f"her2-cds:{namespace}:"

    def first_use(self, key: str, ttl_seconds: int) -> bool:
        import redis

        try:
            return bool(self._redis.set(self._prefix + key, b"1", nx=True, ex=max(1, ttl_seconds)))
        except redis.RedisError as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    def epoch(self) -> float:
        """The time Redis began remembering: set once (NX) and read back in one round trip; a Redis that
        lost its data (restart without persistence) gets a new epoch on the next call."""
        import redis

        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._prefix + "epoch", repr(time.time()).encode(), nx=True)
            pipe.get(self._prefix + "epoch")
            _, value = pipe.execute()
            return float(value)
        except (redis.RedisError, TypeError, ValueError) as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False


class SqliteFirstUse:
    """A SQLite file shared by every worker of the host: a token replayed to another worker, or to a worker
    gunicorn started after recycling one, is known there (one INSERT ... ON CONFLICT per call, WAL journal,
    one connection per thread, opened on first use). The epoch is written once, when the file is new: a
    recycled or restarted worker keeps it, so it refuses nobody. Expired keys are deleted every PURGE_EVERY
    calls of a process. Any SQLite error is CacheUnavailable (the jti check fails closed)."""

    PURGE_EVERY = 2000

    def __init__(self, path: str, namespace: str = "jti") -> None:
        self.path = path
        self._ns = namespace + ":"
        self._local = threading.local()
        self._epoch: float | None = None
        self._calls = 0

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # never a connection across a fork
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS first_use (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS site (name TEXT PRIMARY KEY, value REAL NOT NULL)")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def first_use(self, key: str, ttl_seconds: int) -> bool:
        now = time.time()
        try:
            conn = self._conn()
            cur = conn.execute(
                "INSERT INTO first_use VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET expires = excluded.expires"
                " WHERE first_use.expires <= ?",
                (self._ns + key, now + max(1, ttl_seconds), now),
            )
            self._calls += 1
            if self._calls % self.PURGE_EVERY == 0:
                conn.execute("DELETE FROM first_use WHERE expires <= ?", (now,))
            return cur.rowcount == 1
        except sqlite3.Error as exc:
            raise CacheUnavailable(type(exc).__name__) from exc

    def epoch(self) -> float:
        if self._epoch is None:
            try:
                conn = self._conn()
                conn.execute("INSERT OR IGNORE INTO site VALUES ('epoch', ?)", (time.time(),))
                self._epoch = float(conn.execute("SELECT value FROM site WHERE name = 'epoch'").fetchone()[0])
            except (sqlite3.Error, TypeError) as exc:
                raise CacheUnavailable(type(exc).__name__) from exc
        return self._epoch

    def __len__(self) -> int:
        """Unexpired keys of this namespace."""
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM first_use WHERE key >= ? AND key < ? AND expires > ?",
                (self._ns, self._ns[:-1] + ";", time.time()),
            )
            .fetchone()
        )
        return int(row[0])

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False


def from_url(url: str, namespace: str = "jti", max_entries: int = 200_000) -> FirstUseMemory:
    """The jti cache (refuses when full of unexpired tokens), or another first-use memory under its own
    namespace (forgets its oldest key when full): sqlite:///path (the workers of one host), redis://
    (replicas), memory:// (one process)."""
    if url.startswith(("redis://", "rediss://")):
        return RedisFirstUse(url, namespace)
    if url.startswith("sqlite:///"):
        return SqliteFirstUse(url.removeprefix("sqlite:///"), namespace)
    return MemoryFirstUse(max_entries=max_entries, refuse_when_full=namespace == "jti")
