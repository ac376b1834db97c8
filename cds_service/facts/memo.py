"""The facts of a chart seen moments ago: order-select fires on every change to the draft order, and order-sign
follows, each time with the same prefetch. Chart facts are a function of the chart's resources and today's date
(the request's drafts and what could not be fetched are its RequestContext, read afresh on every call), so they
are kept per worker, keyed by the chart's exact bytes (a dict compares the bytes themselves: no digest, so no
collision), for a few minutes. The same facts are also kept by the exact bytes of the request's prefetch (keep /
recall), with what that prefetch's gathering could not read and set aside, so that a chart sent again need not even
be parsed. Built on the house's one bounded LRU (fhir/lru.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.facts.derive import Facts, derive
from cds_service.fhir.lru import Lru
from cds_service.fhir.terminology import Terminology
from cds_service.fhir.validation import content_key

Key = tuple[bytes, date, str]  # (the bytes, today, "" for a chart's resources; for a prefetch, the keys read)


@dataclass(frozen=True)
class Kept:
    """What a prefetch's exact bytes decided: the chart's facts, what its gathering could not read, and the records
    it set aside (not this patient's, or of the wrong type)."""

    facts: Facts
    unavailable: dict[str, str]
    set_aside: tuple[str, ...] = ()


class FactsMemo:
    """Facts by (chart bytes, today), and by (prefetch bytes, today, the prefetch keys read); bounded in bytes (least
    recently sent out first; a chart over a quarter of the bound is never kept) and in age (an entry not sent again
    for max_age seconds is dropped). Thread-safe. max_bytes 0 or max_age 0: off."""

    def __init__(self, max_bytes: int, max_age_seconds: float) -> None:
        self._max_bytes = max_bytes
        self._max_age = max_age_seconds
        self._lru = Lru(sys.maxsize, max_bytes, _weigh, largest=max_bytes // 4, max_age=max_age_seconds)
        self.hits = 0
        self.misses = 0
        self.recalled = 0  # of the hits: by a prefetch's bytes (recall)

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0 and self._max_age > 0

    @property
    def size_bytes(self) -> int:
        """The bytes of the charts and prefetches kept (their keys)."""
        return self._lru.bytes

    def derive(self, resources: list[dict[str, Any]], ts: Terminology, today: date) -> Facts:
        """derive(...), or the facts derived for the same chart on the same day within the last max_age seconds."""
        key = self._key(content_key(resources) if self.enabled else None, today, "")
        if key is None:
            return derive(resources, ts, today)
        kept = self._get(key)
        if kept is not None:
            return kept.facts
        facts = derive(resources, ts, today)
        self._lru.put(key, Kept(facts, {}))
        return facts

    def recall(self, prefetch: bytes, keys: str, today: date) -> Kept | None:
        """What keep kept for exactly these prefetch bytes read by the same prefetch keys, today (None: parse and
        derive)."""
        key = self._key(prefetch, today, keys)
        kept = self._get(key) if key is not None else None
        if kept is not None:
            self.recalled += 1
        return kept

    def keep(self, prefetch: bytes, keys: str, today: date, kept: Kept) -> None:
        """Keep what exactly these prefetch bytes decided, alone (gathered without any fetch: nothing but the bytes
        and which of their keys were read decided it: keys, the service's prefetch keys in order)."""
        key = self._key(prefetch, today, keys)
        if key is not None:
            self._lru.put(key, kept)

    def _key(self, content: bytes | None, today: date, kind: str) -> Key | None:
        if not self.enabled or content is None:  # what orjson cannot write is derived afresh
            return None
        return (content, today, kind) if len(content) <= self._max_bytes // 4 else None  # a giant one evicts all

    def _get(self, key: Key) -> Kept | None:
        kept: Kept | None = self._lru.get(key)
        if kept is not None:
            self.hits += 1
        else:
            self.misses += 1
        return kept

    def __len__(self) -> int:
        return len(self._lru)


def _weigh(key: Any) -> int:
    """An entry weighs the bytes of its chart or prefetch."""
    return len(key[0])
