"""One hook invocation from validated request to response: gather → facts → rules → cards."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .fhir_client import FhirClient
from .gathering import Gathered, gather


@dataclass
class Outcome:
    """The response body plus what the audit log and metrics need (no PHI)."""

    body: dict[str, Any]
    topics: list[str] = field(default_factory=list)
    gathered: Gathered | None = None


class Engine:
    """Holds what lives across requests (config, HTTP client, thread pool)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        fhir = settings.fhir
        self.client = FhirClient(fhir["allowed_servers"], float(fhir["timeout_seconds"]),
                                 int(fhir.get("max_pages", 20)))
        self.pool = ThreadPoolExecutor(max_workers=int(fhir.get("max_workers", 8)),
                                       thread_name_prefix="fhir-fallback")

    def invoke(self, service: dict[str, Any], request: dict[str, Any]) -> Outcome:
        """Answer a validated hook request for service. Raises MissingPrefetch (→ 412)."""
        deadline = time.monotonic() + float(self.settings.limits.get("request_deadline_seconds", 2.0))
        gathered = gather(request, service.get("prefetch", {}), self.client, self.pool, deadline,
                          bool(self.settings.fhir.get("allow_unauthenticated")))
        cards: list[dict[str, Any]] = []
        topics = [c["source"]["topic"]["code"] for c in cards]
        return Outcome(body={"cards": cards}, topics=topics, gathered=gathered)
