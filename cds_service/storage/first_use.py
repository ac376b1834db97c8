"""First-use memories (the jti replay cache, cards already shown): in memory for one process,
Redis when replicas must share them."""

from __future__ import annotations

import heapq
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


def from_url(url: str, namespace: str = "jti", max_entries: int = 200_000) -> FirstUseMemory:
    """The jti cache (refuses when full of unexpired tokens), or another first-use memory under its own
    namespace (forgets its oldest key when full)."""
    if url.startswith(("redis://", "rediss://")):
        return RedisFirstUse(url, namespace)
    return MemoryFirstUse(max_entries=max_entries, refuse_when_full=namespace == "jti")
