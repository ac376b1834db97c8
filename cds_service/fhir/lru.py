"""A bounded, thread-safe memo that forgets the least recently used entry first (the verdicts kept by content)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Lru:
    """At most `size` entries (and, with `weigh`, at most `max_bytes` by its weights); a hit moves its entry to the
    back, a new entry past a bound drops the front. An entry weighing more than `largest` (default: max_bytes) is
    not kept, and drops nothing."""

    def __init__(
        self,
        size: int,
        max_bytes: int | None = None,
        weigh: Callable[[Hashable], int] | None = None,
        largest: int | None = None,
    ) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._weigh = weigh if max_bytes is not None else None
        self._max_bytes = max_bytes
        self._largest = largest if largest is not None else max_bytes
        self._weights: dict[Hashable, int] = {}
        self.bytes = 0  # the weights of what is kept (0 without weigh)

    def get(self, key: Hashable) -> Any:
        """The value kept for key, or None. Without the lock (a hit is the common case, and this runs once per
        resource): get and move_to_end are each one C call on the OrderedDict; a put that evicts the key in
        between, or changes the order while a key's own Python __eq__ runs, only makes the move fail, which
        leaves the entry where it was."""
        hit = self._data.get(key)
        if hit is not None:
            try:
                self._data.move_to_end(key)
            except (KeyError, RuntimeError):
                pass
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
                dropped, _ = self._data.popitem(last=False)
                self.bytes -= self._weights.pop(dropped, 0)

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
