"""A bounded, thread-safe memo that forgets the least recently used entry first (the verdicts kept by content, the
facts of a chart sent again): the one bounded LRU of the house."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Lru:
    """At most `size` entries (and, with `weigh`, at most `max_bytes` by its weights); a hit moves its entry to the
    back, a new entry past a bound drops the front. An entry weighing more than `largest` (default: max_bytes) is
    not kept, and drops nothing. With max_age (seconds), an entry not used for longer than that is dropped too (by
    any later get or put: patient data is not kept longer than that)."""

    def __init__(
        self,
        size: int,
        max_bytes: int | None = None,
        weigh: Callable[[Hashable], int] | None = None,
        largest: int | None = None,
        max_age: float | None = None,
    ) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._weigh = weigh if max_bytes is not None else None
        self._max_bytes = max_bytes
        self._largest = largest if largest is not None else max_bytes
        self._weights: dict[Hashable, int] = {}
        self.bytes = 0  # the weights of what is kept (0 without weigh)
        self._max_age = max_age
        self._used: dict[Hashable, float] = {}  # with max_age: when each entry was last used (oldest first)

    def get(self, key: Hashable) -> Any:
        """The value kept for key, or None. Without the lock (a hit is the common case, and this runs once per
        resource): get and move_to_end are each one C call on the OrderedDict; a put that evicts the key in
        between, or changes the order while a key's own Python __eq__ runs, only makes the move fail, which
        leaves the entry where it was. With max_age, under the lock (the entry's age is checked and renewed)."""
        if self._max_age is not None:
            return self._get_aged(key)
        hit = self._data.get(key)
        if hit is not None:
            try:
                self._data.move_to_end(key)
            except (KeyError, RuntimeError):
                pass
        return hit

    def _get_aged(self, key: Hashable) -> Any:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                self._used.pop(key, None)
                self._used[key] = now  # used again: kept from now (the order stays oldest first)
            return hit

    def put(self, key: Hashable, value: Any) -> None:
        weight = self._weigh(key) if self._weigh is not None else 0
        if self._largest is not None and weight > self._largest:
            return  # kept, it would first push out everything else, then itself
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if self._weigh is not None:
                self.bytes += weight - self._weights.get(key, 0)
                self._weights[key] = weight
            while len(self._data) > self._size or (self._max_bytes is not None and self.bytes > self._max_bytes):
                self._drop_oldest()
            if self._max_age is not None:
                now = time.monotonic()
                self._used.pop(key, None)
                self._used[key] = now
                self._expire(now)

    def _drop_oldest(self) -> None:
        dropped, _ = self._data.popitem(last=False)
        self.bytes -= self._weights.pop(dropped, 0)
        self._used.pop(dropped, None)

    def _expire(self, now: float) -> None:
        """Drop what was last used more than max_age ago (oldest first); the caller holds the lock."""
        assert self._max_age is not None
        while self._used:
            oldest, stamp = next(iter(self._used.items()))
            if now - stamp <= self._max_age:
                break
            self._data.pop(oldest, None)
            self.bytes -= self._weights.pop(oldest, 0)
            del self._used[oldest]

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept for key, else make() kept (None is never kept: it is made again next time)."""
        hit = self.get(key)
        if hit is None:
            hit = make()
            if hit is not None:
                self.put(key, hit)
        return hit

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._weights.clear()
            self._used.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)


def key_bytes(key: Hashable) -> int:
    """What a content-keyed entry weighs: the bytes its key holds (one level of tuples deep, as a therapy key
    holds each record's bytes) plus about 600 bytes for the entry and what it keeps."""
    total = 600
    for part in key if isinstance(key, tuple) else (key,):
        if isinstance(part, bytes):
            total += len(part)
        elif isinstance(part, tuple):
            total += sum(len(p) for p in part if isinstance(p, bytes))
    return total
