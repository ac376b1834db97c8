"""The facts of a chart seen moments ago: order-select fires on every change to the draft order, and order-sign
follows, each time with the same prefetch. Facts are a function of the chart's resources and today's date (the
drafts and what could not be fetched are read fresh on every call), so they are kept per worker, keyed by the
chart's exact bytes (a dict compares the bytes themselves: no digest, so no collision), for a few minutes."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from datetime import date
from typing import Any

from cds_service.facts.derive import Facts, derive
from cds_service.facts.orders import read_drafts
from cds_service.fhir.terminology import Terminology
from cds_service.fhir.validation import content_key


class FactsMemo:
    """Facts by (chart bytes, today), bounded in bytes (least recently sent out first) and in age (an entry not sent
    again for max_age seconds is dropped). Thread-safe. max_bytes 0 or max_age 0: off."""

    def __init__(self, max_bytes: int, max_age_seconds: float) -> None:
        self._data: OrderedDict[tuple[bytes, date], tuple[float, Facts]] = OrderedDict()
        self._max_bytes = max_bytes
        self._max_age = max_age_seconds
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

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
        key = self._key(resources, today)
        if key is None:
            return derive(resources, context, ts, today, unavailable)
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
        if kept is not None:
            return replace(kept, drafts=read_drafts(context, ts), unavailable=dict(unavailable or {}))
        facts = derive(resources, context, ts, today, unavailable)
        self._put(key, now, replace(facts, drafts=[], unavailable={}))
        return facts

    def _key(self, resources: list[dict[str, Any]], today: date) -> tuple[bytes, date] | None:
        if not self.enabled:
            return None
        chart = content_key(resources)
        if chart is None:  # what orjson cannot write is derived afresh
            return None
        return (chart, today) if len(chart) <= self._max_bytes // 4 else None  # a giant chart would evict all

    def _put(self, key: tuple[bytes, date], now: float, facts: Facts) -> None:
        with self._lock:
            if self._data.pop(key, None) is not None:
                self._bytes -= len(key[0])
            self._data[key] = (now, facts)
            self._bytes += len(key[0])
            while self._bytes > self._max_bytes:
                self._drop_oldest()
            self._expire(now)

    def _expire(self, now: float) -> None:
        """Drop what was last sent more than max_age ago (patient data is not kept longer than that)."""
        while self._data and now - next(iter(self._data.values()))[0] > self._max_age:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        (chart, _), _ = self._data.popitem(last=False)
        self._bytes -= len(chart)

    def __len__(self) -> int:
        return len(self._data)
