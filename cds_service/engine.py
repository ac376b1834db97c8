"""One hook invocation from a checked request to response, as a pipeline: kept-or-gathered chart → chart facts →
decisions (one per topic of the registry) → cards → held back or shown → ledger."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

import orjson

from cds_service import contracts
from cds_service.cards.held_back import HELD_BACK, Decided, HoldBack, Shown
from cds_service.cards.render import render
from cds_service.cards.repeats import Repeats
from cds_service.config import Settings
from cds_service.explain import explain as explain_facts
from cds_service.explain import nothing_drafted
from cds_service.facts.derive import Facts, derive
from cds_service.facts.memo import FactsMemo, Kept
from cds_service.facts.request import RequestContext
from cds_service.fhir.override_reasons import snooze_rules
from cds_service.fhir.terminology import load_terminology
from cds_service.fhir.validation import warm_models
from cds_service.gather.fhir_client import FhirClient
from cds_service.gather.gathering import Gathered, gather
from cds_service.gather.templates import with_codes
from cds_service.paths import hooks_dir
from cds_service.rules.decision import CardDecision, not_evaluated
from cds_service.rules.registry import TOPICS, Topic, topic_settings
from cds_service.rules.ruleset import with_source_attributes
from cds_service.storage.first_use import from_url as memory_from_url
from cds_service.storage.ledger import Ledger
from cds_service.storage.tenancy import PatientKey


class InvalidRequest(Exception):
    """A request whose prefetch, read only when its facts were not kept, is not what the contract says (→ 400)."""

    def __init__(self, problems: list[contracts.Problem]) -> None:
        super().__init__("invalid hook request")
        self.problems = problems


@dataclass(frozen=True)
class Prefetch:
    """A request's prefetch as its exact bytes, and how to parse them (only when no facts are kept for them)."""

    raw: bytes
    parse: Callable[[bytes], Any]


@dataclass
class Chart:
    """The chart of a request, kept or gathered: its facts (None: they could not be derived) and how it came."""

    facts: Facts | None
    gathered: Gathered  # what it could not read: gathered.unavailable
    set_aside: tuple[str, ...] = ()


@dataclass
class Judged:
    """A request judged: its chart, its context (with what could not be had), each topic's decision rendered (nothing
    held back, nothing recorded: the population sweep reads this, the hook routes go on to hold back and record)."""

    chart: Chart
    request: RequestContext
    decided: list[Decided]
    failed: list[str]


@dataclass
class Outcome:
    """The response body plus what the audit log and metrics need (no PHI)."""

    service_id: str
    body: dict[str, Any]
    shown: Shown = field(default_factory=Shown)
    gathered: Gathered | None = None
    failed: bool = False
    failed_topics: list[str] = field(default_factory=list)
    explanation: dict[str, Any] | None = None  # only when asked for (evaluate --explain, the operator route)

    @property
    def topics(self) -> list[str]:
        """The topics of the cards returned."""
        return [c["source"]["topic"]["code"] for c in self.body["cards"]]


class Engine:
    """Holds what lives across requests (config, HTTP client, thread pool, memos)."""

    def __init__(self, settings: Settings, ledger: Ledger | None = None, topics: tuple[Topic, ...] = TOPICS) -> None:
        self.settings = settings
        self.ledger = ledger
        self.topics = topics  # as discovery and explain list them
        self.in_card_order = tuple(sorted(topics, key=lambda t: t.rank))
        fhir = settings.fhir
        self.client = FhirClient(
            list(fhir.allowed_servers),
            fhir.timeout_seconds,
            fhir.max_pages,
            fhir.max_bytes_per_request,
            fhir.max_workers,
            fhir.merge_observation_queries,
        )
        self.terminology = ts = load_terminology(list(settings.value_set_files))
        # what discovery publishes and what the fallback asks: templates filled from the loaded value sets
        self.services = with_source_attributes(with_codes(contracts.services(), ts), ts, topics)
        self.facts = FactsMemo(settings.limits.facts_memo_mb * 1_000_000, settings.limits.facts_memo_seconds)
        repeats = Repeats(
            memory_from_url(settings.storage.cache_url, namespace="shown"),
            settings.cards.repeat_window_minutes,
            frozenset(t.code for t in topics if t.always_repeat),
        )
        self.hold_back = HoldBack(repeats, ledger, bool(settings.cards.snooze))
        # feedback names a reason by the code the card offered (HL7's where one fits): a rule fires on either
        self.snooze_rules = snooze_rules(settings.cards.snooze, ts)

    def invoke(
        self,
        service: dict[str, Any],
        body: dict[str, Any],
        prefetch: Prefetch | None = None,
        client: str | None = None,
        explain: bool = False,
    ) -> Outcome:
        """Answer a hook request whose envelope was checked. Raises MissingPrefetch (→ 412), InvalidRequest (→ 400)
        and the parser's error for a prefetch that is not JSON. With explain, the outcome also carries the facts and
        each rule's verdict (patient data: never log it)."""
        context = body["context"]
        request = RequestContext.of(service["hook"], context, self.terminology)
        if request.hook == "order-select" and not request.names_medication:  # nothing drafted yet: nothing to say
            return Outcome(service["id"], {"cards": []}, explanation=nothing_drafted() if explain else None)
        judged = self.judge(service, body, request, prefetch)
        chart, request = judged.chart, judged.request
        patient = PatientKey.of(client, body)  # one patient of one EHR (DESIGN.md §3, Tenancy)
        shown = self.hold_back(judged.decided, request, context.get("userId"), patient, service["id"], client)
        if self.ledger:
            self.ledger.record(shown.entries)
        outcome = Outcome(
            service["id"], {"cards": shown.cards}, shown, chart.gathered, chart.facts is None, judged.failed
        )
        if explain:
            outcome.explanation = self._explain(chart, request, shown)
        return outcome

    def judge(
        self,
        service: dict[str, Any],
        body: dict[str, Any],
        request: RequestContext,
        prefetch: Prefetch | None = None,
        today: date | None = None,
    ) -> Judged:
        """The chart of a request (kept or gathered), its facts and each topic's decision (today: the day to judge
        as, by default the current UTC day)."""
        chart = self._chart(service, body, prefetch, today or datetime.now(timezone.utc).date())
        request = replace(request, unavailable=dict(chart.gathered.unavailable), set_aside=chart.set_aside)
        decided, failed = self.decide(chart.facts, request)
        return Judged(chart, request, decided, failed)

    def _chart(self, service: dict[str, Any], body: dict[str, Any], prefetch: Prefetch | None, today: date) -> Chart:
        """The chart's facts kept for exactly these prefetch bytes, or the chart gathered (prefetch, then the FHIR
        server) and its facts derived (kept by the chart's bytes; by the prefetch's too when they alone decided
        it)."""
        keys = self._prefetch_keys(service, body["context"].get("patientId"))
        if prefetch is not None:
            kept = self.facts.recall(prefetch.raw, keys, today)
            if kept is not None:
                return Chart(kept.facts, Gathered(unavailable=dict(kept.unavailable)), kept.set_aside)
            body = {**body, "prefetch": prefetch.parse(prefetch.raw)}
            problems = contracts.check_request(service, body)  # the envelope passed: these are the prefetch's
            if problems:
                raise InvalidRequest(problems)
        deadline = time.monotonic() + self.settings.limits.request_deadline_seconds
        templates = self.services[service["id"]].get("prefetch", {})
        gathered = gather(body, templates, self.client, deadline, self.settings.fhir.allow_unauthenticated)
        by_prefetch = prefetch is not None and gathered.prefetch_alone and self.facts.enabled
        facts = self._derive(gathered.all_resources(), today, memo=not by_prefetch)
        chart = Chart(facts, gathered, tuple(gathered.binding.notes))
        if facts is not None and prefetch is not None and by_prefetch:
            self.facts.keep(prefetch.raw, keys, today, Kept(facts, dict(gathered.unavailable), chart.set_aside))
        return chart

    def _derive(self, resources: list[dict[str, Any]], today: date, memo: bool) -> Facts | None:
        try:
            return (self.facts.derive if memo else derive)(resources, self.terminology, today)
        except Exception as exc:  # noqa: BLE001 - an EHR must get an answer; the error is logged without data
            log_failure("fact derivation", exc)
            return None

    def _prefetch_keys(self, service: dict[str, Any], patient_id: Any) -> str:
        """The memo key beside the prefetch bytes: the keys read (not the service: order-sign follows order-select
        with the same prefetch, and they read the same keys), and the patient they were bound to."""
        keys = "\n".join(self.services[service["id"]].get("prefetch", {}))
        return f"{keys}\npatient={patient_id!r}"

    def decide(self, facts: Facts | None, request: RequestContext) -> tuple[list[Decided], list[str]]:
        """Each topic that is not off, in card order: its decision rendered (`cards.<key>.mode`: live | shadow |
        off; `enabled: false` is off). A rule (or its rendering) that fails leaves the others alone and becomes an
        info card, live even in shadow mode, saying that topic could not be evaluated."""
        cards_cfg = self.settings.cards
        decided: list[Decided] = []
        failed: list[str] = []
        for topic in self.in_card_order:
            settings = topic_settings(topic, cards_cfg.topics)
            topic_mode = settings.runs
            if topic_mode == "off":
                continue
            try:
                if facts is None:
                    raise RuntimeError("no facts")
                decision = topic.decide(facts, request, settings.options)
                pairs = self._rendered([decision] if decision is not None else [], topic)
            except Exception as exc:  # noqa: BLE001 - one topic failing must not silence the others
                if facts is not None:
                    log_failure(f"rule {topic.code}", exc)
                failed.append(topic.code)
                pairs, topic_mode = self._rendered([not_evaluated(topic.code, topic.label)], topic), "live"
            decided += [Decided(d, "shadow" if topic_mode == "shadow" else "live", card) for d, card in pairs]
        return decided, failed

    def _rendered(self, decisions: list[CardDecision], topic: Topic) -> list[tuple[CardDecision, dict[str, Any]]]:
        cards = render(decisions, self.settings.cards, self.terminology, {topic.code: topic.label})
        return list(zip(decisions, cards, strict=True))

    def _explain(self, chart: Chart, request: RequestContext, shown: Shown) -> dict[str, Any]:
        resources = chart.gathered.all_resources()
        explanation = explain_facts(chart.facts, request, self.settings.cards, resources, self.terminology, self.topics)
        if held := shown.counts:
            explanation["rules"]["held back"] = [f"{n} card(s): {HELD_BACK[why]}" for why, n in held.items()]
        return explanation

    def warm(self) -> float:
        """Run every shipped example through the whole path (schemas, value-set indexes and regexes, FHIR models,
        rules, rendering), then validate one record of each FHIR type the service reads, so that a fresh
        worker's first real request is not the one that pays for it. Nothing is recorded: no ledger row, no
        repeat memory, no facts memo. Returns the seconds it took."""
        started = time.perf_counter()
        by_hook = {svc["hook"]: svc for svc in self.services.values()}
        today = datetime.now(timezone.utc).date()
        for example in sorted((hooks_dir() / "examples").glob("*.json")):
            body = json.loads(example.read_text("utf-8"))
            service = by_hook.get(body.get("hook", ""))
            if service is None:
                continue
            contracts.check_request(service, body)
            gathered = gather(body, service.get("prefetch", {}), self.client, time.monotonic() + 5, False)
            facts = derive(gathered.all_resources(), self.terminology, today)
            request = RequestContext.of(service["hook"], body["context"], self.terminology)
            for decided in self.decide(facts, request)[0]:
                orjson.dumps(decided.card)
        warm_models()
        self.terminology.compile_all()
        if self.ledger is not None:
            self.ledger.load_key()
        return time.perf_counter() - started


def log_failure(stage: str, exc: Exception) -> None:
    """One error line: the stage, the exception's class and where it was raised (never its message: data)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else "?"
    logging.getLogger("her2_cds").error("%s failed: %s at %s", stage, type(exc).__name__, where)
