"""The facts of a chart seen moments ago: order-select fires on every change to the draft order, and order-sign
follows, each time with the same prefetch. Facts are a function of the chart's resources and today's date (the
drafts and what could not be fetched are read fresh on every call), so they are kept per worker, keyed by the
chart's exact bytes (a dict compares the bytes themselves: no digest, so no collision), for a few minutes. The same
facts are also kept by the exact bytes of the request's prefetch (keep / recall), so that a chart sent again need not
even be parsed."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from cds_service.facts.derive import Facts, derive
from cds_service.facts.orders import read_drafts
from cds_service.fhir.terminology import Terminology
from cds_service.fhir.validation import content_key

Key = tuple[bytes, date, str]  # (the bytes, today, "" for a chart's resources; for a prefetch, the keys read)


@dataclass(frozen=True)
class Kept:
    """Facts kept for a prefetch (without drafts), and what its gathering could not read."""

    facts: Facts
    unavailable: dict[str, str]


class FactsMemo:
    """Facts by (chart bytes, today), and by (prefetch bytes, today, the prefetch keys read); bounded in bytes (least
    recently sent out first) and in age (an entry not sent again for max_age seconds is dropped). Thread-safe.
    max_bytes 0 or max_age 0: off."""

    def __init__(self, max_bytes: int, max_age_seconds: float) -> None:
        self._data: OrderedDict[Key, tuple[float, Kept]] = OrderedDict()
        self._max_bytes = max_bytes
        self._max_age = max_age_seconds
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.recalled = 0  # of the hits: by a prefetch's bytes (recall)

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0 and self._max_age > 0

    def derive(
        self,
        resources: list[dict[str, Any]],
        context: dict[str, Any],
        ts: Terminology,
        today: date,
        unavailable: dict[str, str] | None = None,
    ) -> Facts:
        """derive(...), or the facts derived for the same chart on the same day within the last max_age seconds,
        with this call's drafts and unavailable sources."""
        key = self._key(content_key(resources) if self.enabled else None, today, "")
        if key is None:
            return derive(resources, context, ts, today, unavailable)
        kept = self._get(key)
        if kept is not None:
            return replace(kept.facts, drafts=read_drafts(context, ts), unavailable=dict(unavailable or {}))
        facts = derive(resources, context, ts, today, unavailable)
        self._put(key, Kept(replace(facts, drafts=[], unavailable={}), {}))
        return facts

    def recall(self, prefetch: bytes, keys: str, today: date) -> Kept | None:
        """What keep kept for exactly these prefetch bytes read by the same prefetch keys, today (None: parse and
        derive)."""
        key = self._key(prefetch, today, keys)
        kept = self._get(key) if key is not None else None
        if kept is not None:
            self.recalled += 1
        return kept

    def keep(self, prefetch: bytes, keys: str, today: date, facts: Facts, unavailable: dict[str, str]) -> None:
        """Keep the facts derived from exactly these prefetch bytes, alone (gathered without any fetch: nothing but
        the bytes and which of their keys were read decided them: keys, the service's prefetch keys in order), with
        what their gathering could not read."""
        key = self._key(prefetch, today, keys)
        if key is not None:
            self._put(key, Kept(replace(facts, drafts=[], unavailable={}), dict(unavailable)))

    def _key(self, content: bytes | None, today: date, kind: str) -> Key | None:
        if not self.enabled or content is None:  # what orjson cannot write is derived afresh
            return None
        return (content, today, kind) if len(content) <= self._max_bytes // 4 else None  # a giant one evicts all

    def _get(self, key: Key) -> Kept | None:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            hit = self._data.get(key)
            kept = hit[1] if hit is not None else None
            if kept is not None:
                self._data[key] = (now, kept)  # sent again: kept from now (the order stays oldest first)
                self._data.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        return kept

    def _put(self, key: Key, kept: Kept) -> None:
        now = time.monotonic()
        with self._lock:
            if self._data.pop(key, None) is not None:
                self._bytes -= len(key[0])
            self._data[key] = (now, kept)
            self._bytes += len(key[0])
            while self._bytes > self._max_bytes:
                self._drop_oldest()
            self._expire(now)

    def _expire(self, now: float) -> None:
        """Drop what was last sent more than max_age ago (patient data is not kept longer than that)."""
        while self._data and now - next(iter(self._data.values()))[0] > self._max_age:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        (content, _, _), _ = self._data.popitem(last=False)
        self._bytes -= len(content)

    def __len__(self) -> int:
        return len(self._data)
