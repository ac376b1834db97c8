"""A bounded, thread-safe memo that forgets the least recently used entry first (the verdicts kept by content)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Lru:
    """At most `size` entries; a hit moves its entry to the back, a new entry past the bound drops the front."""

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

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
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

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

    def __len__(self) -> int:
        return len(self._data)
