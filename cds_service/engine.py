"""One hook invocation from validated request to response: gather → facts → rules → cards."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import orjson

from cds_service import contracts
from cds_service.cards.held_back import HELD_BACK, evidence_digest, topic_mode
from cds_service.cards.render import render
from cds_service.cards.repeats import Repeats
from cds_service.config import Settings
from cds_service.explain import explain as explain_facts
from cds_service.facts.derive import Facts, derive
from cds_service.facts.memo import FactsMemo, Kept
from cds_service.facts.orders import read_drafts
from cds_service.fhir.read import draft_resources, names_medication
from cds_service.fhir.terminology import load_terminology
from cds_service.fhir.validation import warm_models
from cds_service.gather.fhir_client import FhirClient
from cds_service.gather.gathering import Gathered, gather
from cds_service.gather.templates import published_services
from cds_service.paths import hooks_dir
from cds_service.rules import her2_rescore, tdxd
from cds_service.rules import ild_monitoring as ild
from cds_service.rules.decision import not_evaluated
from cds_service.rules.ruleset import RULESET_VERSION
from cds_service.storage.first_use import from_url as memory_from_url
from cds_service.storage.ledger import Entry, Ledger
from cds_service.storage.tenancy import PatientKey

RULES = ((ild, "ild_monitoring"), (tdxd, "tdxd_consideration"), (her2_rescore, "her2_rescore"))


@dataclass
class Outcome:
    """The response body plus what the audit log and metrics need (no PHI)."""

    body: dict[str, Any]
    topics: list[str] = field(default_factory=list)
    gathered: Gathered | None = None
    failed: bool = False
    failed_topics: list[str] = field(default_factory=list)
    repeats_left_out: int = 0
    held_back: dict[str, int] = field(default_factory=dict)  # why -> cards held back (repeat, snooze, shadow)
    held_topics: list[tuple[str, str]] = field(default_factory=list)  # (topic, why) of each card held back
    explanation: dict[str, Any] | None = None  # only when asked for (evaluate --explain, the operator route)
    missed: list[str] = field(default_factory=list)  # what could not be read and was taken as not known


class Engine:
    """Holds what lives across requests (config, HTTP client, thread pool)."""

    def __init__(self, settings: Settings, ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        fhir = settings.fhir
        self.client = FhirClient(
            fhir["allowed_servers"],
            float(fhir["timeout_seconds"]),
            int(fhir["max_pages"]),
            int(fhir["max_bytes_per_request"]),
            int(fhir["max_workers"]),
            bool(fhir["merge_observation_queries"]),
        )
        self.terminology = load_terminology(settings["value_sets"]["extra_files"])
        # what discovery publishes and what the fallback asks: templates filled from the loaded value sets
        self.services = published_services(contracts.services(), self.terminology)
        limits = settings.limits
        self.facts = FactsMemo(int(limits["facts_memo_mb"]) * 1_000_000, float(limits["facts_memo_seconds"]))
        self.repeats = Repeats(
            memory_from_url(settings["storage"]["cache_url"], namespace="shown"),
            int(settings.cards["repeat_window_minutes"]),
        )

    def recall(self, service: dict[str, Any], prefetch: bytes, patient_id: Any = None) -> Kept | None:
        """The facts kept for a request whose prefetch is exactly these bytes (None: parse it; invoke derives). Kept
        by the prefetch keys the service reads, not by the service: order-sign follows order-select with the same
        prefetch, and they read the same keys."""
        keys = self._prefetch_keys(service, patient_id)
        return self.facts.recall(prefetch, keys, datetime.now(timezone.utc).date())

    def _prefetch_keys(self, service: dict[str, Any], patient_id: Any) -> str:
        """The memo key beside the prefetch bytes: the keys read, and the patient they were bound to."""
        keys = "\n".join(self.services.get(service["id"], service).get("prefetch", {}))
        return f"{keys}\npatient={patient_id!r}"

    def invoke(
        self,
        service: dict[str, Any],
        request: dict[str, Any],
        explain: bool = False,
        client: str | None = None,
        prefetch: bytes | None = None,
        recalled: Kept | None = None,
    ) -> Outcome:
        """Answer a validated hook request for service. Raises MissingPrefetch (→ 412). With explain, the
        outcome also carries the facts and each rule's verdict (patient data: never log it). prefetch: the exact
        bytes of the request's prefetch, when the caller has them (the facts are then kept by them too); recalled: what
        recall found for them (the request then carries no parsed prefetch)."""
        deadline = time.monotonic() + float(self.settings.limits["request_deadline_seconds"])
        context = request.get("context") or {}
        if service["hook"] == "order-select" and not _has_medication(context):
            # a draft with no drug yet: nothing to say, nothing to fetch
            return Outcome(
                body={"cards": []},
                explanation={
                    "facts": {},
                    "unmatched_codings": [],
                    "rules": {"all": ["order-select with no drafted medication: nothing is evaluated"]},
                }
                if explain
                else None,
            )
        failed_topics: list[str] = []
        if recalled is not None:
            gathered = Gathered(unavailable=dict(recalled.unavailable))
            facts: Facts | None = replace(
                recalled.facts, drafts=read_drafts(context, self.terminology), unavailable=dict(recalled.unavailable)
            )
        else:
            templates = self.services.get(service["id"], service).get("prefetch", {})
            allow = bool(self.settings.fhir["allow_unauthenticated"])
            gathered = gather(request, templates, self.client, deadline, allow)
            today = datetime.now(timezone.utc).date()
            resources = gathered.all_resources()
            # kept by the prefetch's bytes when they alone decided the chart; else by the chart's own bytes
            by_prefetch = prefetch is not None and gathered.prefetch_alone and self.facts.enabled
            try:
                facts = (derive if by_prefetch else self.facts.derive)(
                    resources, context, self.terminology, today, gathered.unavailable
                )
            except Exception as exc:  # noqa: BLE001 - an EHR must get an answer; the error is logged without data
                _log_failure("fact derivation", exc)
                facts = None
            if facts is not None and gathered.binding.notes:  # said on the cards: counts, never the other ids
                facts = replace(facts, data_notes=gathered.binding.notes + facts.data_notes)
            if facts is not None and prefetch is not None and by_prefetch:
                self.facts.keep(
                    prefetch, self._prefetch_keys(service, context.get("patientId")), today, facts, gathered.unavailable
                )
        meta: list[dict[str, Any]] = []
        rendered = self.cards_for(facts, service["hook"], str(context.get("patientId", "")), failed_topics, meta)
        patient = PatientKey.of(client, request)  # one patient of one EHR (DESIGN.md §3, Tenancy)
        missed: list[str] = []
        try:
            kept = self.repeats.without_repeats(rendered, service["hook"], context, patient, missed)
        except Exception as exc:  # noqa: BLE001 - repeats cannot be told: show every card
            _log_failure("repeat check", exc)
            kept = rendered
        kept_ids = {id(c) for c in kept}
        patient_hash = self.ledger.patient_hash(patient) if self.ledger else None
        cards: list[dict[str, Any]] = []
        entries: list[Entry] = []
        held: dict[str, int] = {}
        held_topics: list[tuple[str, str]] = []
        for card, info in zip(rendered, meta, strict=True):
            why = (
                "shadow"
                if info["mode"] == "shadow"
                else "repeat"
                if id(card) not in kept_ids
                else "snooze"
                if card["indicator"] == "info"
                and self.ledger
                and self.settings.cards["snooze"]
                and self.ledger.snoozed(patient, info["topic"], info["digest"])
                else None
            )
            if why:
                held[why] = held.get(why, 0) + 1
                held_topics.append((info["topic"], why))
            else:
                cards.append(card)
            entries.append(
                Entry(
                    card_uuid=card["uuid"],
                    service_id=service["id"],
                    hook=service["hook"],
                    topic=info["topic"],
                    indicator=card["indicator"],
                    ruleset_version=RULESET_VERSION,
                    evidence_digest=info["digest"],
                    pathways=info["pathways"],
                    client=client,
                    held_back=why,
                    patient_hash=patient_hash,
                )
            )
        if self.ledger:
            self.ledger.record(entries)
        topics = [c["source"]["topic"]["code"] for c in cards]
        explanation = None
        if explain:
            explanation = explain_facts(
                facts, service["hook"], self.settings.cards, gathered.all_resources(), self.terminology
            )
            if held:
                explanation["rules"]["held back"] = [f"{n} card(s): {HELD_BACK[why]}" for why, n in held.items()]
        return Outcome(
            body={"cards": cards},
            topics=topics,
            gathered=gathered,
            failed=facts is None,
            failed_topics=failed_topics,
            repeats_left_out=held.get("repeat", 0),
            held_back=held,
            held_topics=held_topics,
            explanation=explanation,
            missed=missed,
        )

    def warm(self) -> float:
        """Run every shipped example through the whole path (schemas, value-set indexes and regexes, FHIR models,
        rules, rendering), then validate one record of each FHIR type the service reads, so that a fresh
        worker's first real request is not the one that pays for it. Nothing is recorded: no ledger row, no
        repeat memory, no facts memo. Returns the seconds it took."""
        started = time.perf_counter()
        by_hook = {svc["hook"]: svc for svc in self.services.values()}
        today = datetime.now(timezone.utc).date()
        for example in sorted((hooks_dir() / "examples").glob("*.json")):
            request = json.loads(example.read_text("utf-8"))
            service = by_hook.get(request.get("hook", ""))
            if service is None:
                continue
            contracts.check_request(service, request)
            gathered = gather(request, service.get("prefetch", {}), self.client, time.monotonic() + 5, False)
            facts = derive(gathered.all_resources(), request["context"], self.terminology, today)
            for card in self.cards_for(facts, service["hook"], "warm-up"):
                orjson.dumps(card)
        warm_models()
        self.terminology.compile_all()
        if self.ledger is not None:
            self.ledger.load_key()
        return time.perf_counter() - started

    def cards_for(
        self,
        facts: Facts | None,
        hook: str,
        patient_id: str,
        failed: list[str] | None = None,
        meta: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Run the rules that are not off (`cards.<topic>.mode`: live | shadow | off; `enabled: false` is off) and
        render their cards; meta gets, per card, its topic, mode, pathways and evidence digest. A rule (or its
        rendering) that fails leaves the others alone and becomes an info card saying that topic could not be
        evaluated."""
        cfg = self.settings.cards
        failed = [] if failed is None else failed
        meta = [] if meta is None else meta
        out: list[dict[str, Any]] = []
        for rule, key in RULES:
            mode = topic_mode(cfg[key])
            if mode == "off":
                continue
            try:
                if facts is None:
                    raise RuntimeError("no facts")
                decision = rule.decide(facts, hook, cfg[key], patient_id)
                decisions = [decision] if decision is not None else []
                cards = render(decisions, cfg, self.terminology)
            except Exception as exc:  # noqa: BLE001 - one topic failing must not silence the others
                if facts is not None:
                    _log_failure(f"rule {rule.TOPIC}", exc)
                failed.append(rule.TOPIC)
                decisions = [not_evaluated(rule.TOPIC)]
                cards = render(decisions, cfg, self.terminology)
                mode = "live"  # a topic that could not be evaluated says so, even in shadow mode
            out += cards
            meta += [
                {"topic": d.topic, "mode": mode, "pathways": ",".join(d.pathways) or None, "digest": evidence_digest(d)}
                for d in decisions
            ]
        return out


def _log_failure(stage: str, exc: Exception) -> None:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else "?"
    logging.getLogger("her2_cds").error("%s failed: %s at %s", stage, type(exc).__name__, where)


def _has_medication(context: dict[str, Any]) -> bool:
    """True when some drafted order names a medication (order-select fires on every keystroke)."""
    return any(names_medication(r) for r in draft_resources(context))
