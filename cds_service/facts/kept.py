"""Pieces of a chart's facts kept by the bytes they are built from (a medication record's reading, the lines of
therapy, the HER2 picture, HR status, the setting), so that a chart that changed elsewhere (one new lab result)
rebuilds only what the change touches. Kept per loaded terminology (a reading depends on the value sets), in the
house's bounded LRU; the terminology itself matches codes and keeps no facts. What is kept is shared by later
calls: never changed after it is built."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar
from weakref import WeakKeyDictionary

from cds_service.fhir.lru import Lru, key_bytes
from cds_service.fhir.terminology import Terminology

T = TypeVar("T")
SIZE = 20_000  # one reading per medication record, five per chart
MAX_MB = 32  # and at most this much by what their keys hold: a therapy or setting key holds tens of KB

_BY_TERMINOLOGY: WeakKeyDictionary[Terminology, Lru] = WeakKeyDictionary()
_LOCK = threading.Lock()


def _lru(ts: Terminology) -> Lru:
    found = _BY_TERMINOLOGY.get(ts)
    if found is None:
        with _LOCK:
            found = _BY_TERMINOLOGY.setdefault(ts, Lru(SIZE, MAX_MB * 1_000_000, key_bytes))
    return found


def kept(ts: Terminology, key: Hashable, build: Callable[[], T]) -> T:
    """build(), or what it built for the same key (its inputs' bytes) under the same value sets."""
    value: T = _lru(ts).get_or_make(key, lambda: (build(),))[0]  # boxed: a piece may be None
    return value


def forget(ts: Terminology) -> None:
    """Drop every piece kept for these value sets (benchmarks of a cold start)."""
    _lru(ts).clear()
