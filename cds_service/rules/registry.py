"""The card topics, one row each: what the engine runs, explain reports, the ledger report names, discovery cites
and the repeat memory holds back. A new card topic is one row here and one rule module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.config import Mode, TopicSettings
from cds_service.facts.derive import Facts
from cds_service.facts.label import LABEL_REVISION
from cds_service.facts.request import RequestContext
from cds_service.rules import her2_rescore, tdxd
from cds_service.rules import ild_monitoring as ild
from cds_service.rules.decision import CardDecision

Decide = Callable[[Facts, RequestContext, Mapping[str, Any]], CardDecision | None]
WhySilent = Callable[[Facts, RequestContext, Mapping[str, Any]], str | None]
Criteria = Callable[[Facts], list[tuple[str, str, list[tuple[str, bool | None, str]]]]]


@dataclass(frozen=True)
class Topic:
    """One card topic."""

    code: str  # the card's source.topic code, and the ledger's
    config_key: str  # its settings: cards.<config_key> (enabled, mode and the rule's own thresholds)
    label: str  # what people read: explain, the report, the card that says a topic could not be evaluated
    decide: Decide  # the card for a chart and a request (None: silent)
    why_silent: WhySilent  # why decide says nothing (None: it has a card)
    citations: tuple[str, ...]  # keys of ruleset.CITATIONS, for discovery's source attributes
    intended_use: str  # HTI-1 source attribute
    label_revision: str | None = LABEL_REVISION  # the Enhertu label revision the rule encodes
    always_repeat: bool = False  # an info card shown again on order-sign even when order-select showed it
    has_card: str | None = None  # what explain says when the topic has a card
    criteria: Criteria | None = None  # explain: each pathway (name, state, criteria) the topic weighs
    colour: str = "#7f7f7f"  # the ledger report's charts
    rank: int = 9  # where its card comes among the others (0 first)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # settings when the configuration has none (a topic
    # added after the configuration schema; the shipped topics have theirs in defaults.yaml)


TOPICS: tuple[Topic, ...] = (  # as discovery and the report list them
    Topic(
        code=her2_rescore.TOPIC,
        config_key="her2_rescore",
        label="HER2 re-scoring",
        decide=her2_rescore.decide,
        why_silent=her2_rescore.why_silent,
        citations=("asco_cap", "esmo", "label"),
        intended_use="Prompt HER2 IHC re-scoring or reflex ISH when a metastatic breast cancer's HER2 "
        "report cannot tell HER2-low, -ultralow and -null apart.",
        has_card="the HER2 picture needs work",
        colour="#1f77b4",
        rank=2,
    ),
    Topic(
        code=tdxd.TOPIC,
        config_key="tdxd_consideration",
        label="T-DXd consideration",
        decide=tdxd.decide,
        why_silent=tdxd.why_silent,
        citations=("label", "db06", "db04", "esmo"),
        intended_use="Point out that the record meets (or may meet) a T-DXd label pathway "
        "for HER2-low or -ultralow metastatic breast cancer.",
        criteria=tdxd.pathway_criteria,
        colour="#2ca02c",
        rank=1,
    ),
    Topic(
        code=ild.TOPIC,
        config_key="ild_monitoring",
        label="ILD monitoring",
        decide=ild.decide,
        why_silent=ild.why_silent,
        citations=("label",),
        intended_use="Beside every T-DXd order (any HER2 status, setting or tumour): before the first dose the "
        "baseline work-up; on continuing therapy ILD/pneumonitis or symptoms since the first dose, chest imaging "
        "overdue, the label's ILD table and the breast-cancer dose levels (no re-escalation after a reduction).",
        has_card="T-DXd is ordered or active",
        always_repeat=True,  # the safety reminder beside a T-DXd order
        colour="#d62728",
        rank=0,
    ),
)
BY_CODE: dict[str, Topic] = {t.code: t for t in TOPICS}


def topic_settings(topic: Topic, topics: Mapping[str, TopicSettings]) -> TopicSettings:
    """A topic's settings: cards.<config_key>, else the row's defaults (a topic with neither is off)."""
    return topics.get(topic.config_key) or TopicSettings.of(topic.defaults)


def mode(topic: Topic, topics: Mapping[str, TopicSettings]) -> Mode:
    """live | shadow | off (`enabled: false` is off)."""
    return topic_settings(topic, topics).runs
