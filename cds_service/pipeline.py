"""One hook invocation from validated request to response: gather → facts → rules → cards."""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .cards import render
from .config import Settings
from .facts import Facts, derive
from .fhir_client import FhirClient
from .gathering import Gathered, gather
from .rules import her2_rescore, ild, tdxd
from .terminology import load_terminology

RULES = ((ild, "ild_monitoring"), (tdxd, "tdxd_consideration"), (her2_rescore, "her2_rescore"))


@dataclass
class Outcome:
    """The response body plus what the audit log and metrics need (no PHI)."""

    body: dict[str, Any]
    topics: list[str] = field(default_factory=list)
    gathered: Gathered | None = None
    failed: bool = False


class Engine:
    """Holds what lives across requests (config, HTTP client, thread pool)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        fhir = settings.fhir
        self.client = FhirClient(fhir["allowed_servers"], float(fhir["timeout_seconds"]),
                                 int(fhir.get("max_pages", 20)))
        self.pool = ThreadPoolExecutor(max_workers=int(fhir.get("max_workers", 8)),
                                       thread_name_prefix="fhir-fallback")
        self.terminology = load_terminology(settings["value_sets"]["extra_files"])

    def invoke(self, service: dict[str, Any], request: dict[str, Any]) -> Outcome:
        """Answer a validated hook request for service. Raises MissingPrefetch (→ 412)."""
        deadline = time.monotonic() + float(self.settings.limits.get("request_deadline_seconds", 2.0))
        context = request.get("context") or {}
        if service["hook"] == "order-select" and not _has_medication(context):
            return Outcome(body={"cards": []})  # a draft with no drug yet: nothing to say, nothing to fetch
        gathered = gather(request, service.get("prefetch", {}), self.client, self.pool, deadline,
                          bool(self.settings.fhir.get("allow_unauthenticated")))
        try:
            facts = derive(gathered.all_resources(), context, self.terminology,
                           datetime.now(timezone.utc).date(), gathered.unavailable)
            cards = self.cards_for(facts, service["hook"], str(context.get("patientId", "")))
        except Exception as exc:  # noqa: BLE001 - an EHR must get an answer; the error is logged without data
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            logging.getLogger("her2_cds").error("card derivation failed: %s at %s:%s", type(exc).__name__,
                                                frame.filename.rsplit("/", 1)[-1], frame.lineno)
            return Outcome(body={"cards": []}, gathered=gathered, failed=True)
        topics = [c["source"]["topic"]["code"] for c in cards]
        return Outcome(body={"cards": cards}, topics=topics, gathered=gathered)

    def cards_for(self, facts: Facts, hook: str, patient_id: str) -> list[dict[str, Any]]:
        """Run the enabled rules on the facts and render their cards."""
        cfg = self.settings.cards
        decisions = [d for rule, key in RULES
                     if (d := rule.decide(facts, hook, cfg[key], patient_id)) is not None]
        return render(decisions, cfg, self.terminology)


def _has_medication(context: dict[str, Any]) -> bool:
    """True when some drafted order names a medication (order-select fires on every keystroke)."""
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for e in entries if isinstance(entries, list) else []:
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict) and (res.get("medicationCodeableConcept") or res.get("medicationReference")):
            return True
    return False
