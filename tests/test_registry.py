"""One rule registry (rules/registry.py): the engine, explain, discovery's source attributes, the ledger, repeats
and the report read its rows. A fourth card topic is one row and one rule module: shown with a toy topic that is
registered only here, through the real app."""

from __future__ import annotations

from hashlib import sha256
from typing import Any

import pytest
import sqlalchemy as sa

from cds_service.config import CardSettings, TopicSettings, shipped_defaults
from cds_service.facts.derive import Facts
from cds_service.facts.request import RequestContext
from cds_service.fhir.terminology import load_terminology
from cds_service.report import COLOURS
from cds_service.report import TOPICS as REPORT_TOPICS
from cds_service.rules.decision import CardDecision
from cds_service.rules.registry import BY_CODE, TOPICS, Topic, mode
from cds_service.rules.ruleset import CITATIONS
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .fixtures import builders as b
from .fixtures import patients
from .helpers import assert_cds_response, hook_request, prefetch_from

TOY = "toy-reminder"
OPERATOR = "toy-operator-token"


# --- the toy rule module: a reminder beside every metastatic breast cancer chart
def toy_why_silent(facts: Facts, request: RequestContext, cfg: dict[str, Any]) -> str | None:
    return None if facts.setting.metastatic else "no metastatic disease on record"


def toy_decide(facts: Facts, request: RequestContext, cfg: dict[str, Any]) -> CardDecision | None:
    if toy_why_silent(facts, request, cfg) is not None:
        return None
    return CardDecision(
        topic=TOY,
        indicator="info",
        summary=str(cfg["summary"]),
        evidence=[facts.setting.describe()],
        unknowns=request.not_available(facts.data_notes),
    )


def toy_row(**defaults: Any) -> Topic:
    return Topic(
        code=TOY,
        config_key="toy_reminder",
        label="Toy reminder",
        decide=toy_decide,
        why_silent=toy_why_silent,
        citations=("label",),
        intended_use="A toy topic registered only in tests/test_registry.py.",
        has_card="a toy card",
        rank=5,  # after the shipped three
        defaults={"enabled": True, "mode": "live", "summary": "Toy: metastatic disease on record", **defaults},
    )


def _app(settings_factory, topics: tuple[Topic, ...]):
    settings = settings_factory(operator={"explain_token_sha256": sha256(OPERATOR.encode()).hexdigest()})
    return create_app(settings, topics)


def _post(app, hook: str = "patient-view", explain: bool = False, resources=None) -> dict[str, Any]:
    drafts = (
        [b.med_request("capecitabine", "2026-11-25", status="draft", id="d-cape")] if hook != "patient-view" else []
    )
    body = hook_request(hook, prefetch=prefetch_from(resources or patients.bell()), draft_orders=drafts)
    route = f"/cds-services/her2-{hook}" + ("/explain" if explain else "")
    resp = app.test_client().post(route, json=body, headers={"X-HER2-CDS-Operator": OPERATOR} if explain else {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def _topics(body: dict[str, Any]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in assert_cds_response(body)]


def test_a_toy_topic_is_one_row_and_one_rule_module(settings_factory):
    shipped = _app(settings_factory, TOPICS)
    with_toy = _app(settings_factory, (*TOPICS, toy_row()))
    before = _topics(_post(shipped))
    body = _post(with_toy)
    assert _topics(body) == [*before, TOY]  # the shipped cards unchanged, the toy's last (its rank)
    [toy] = [c for c in body["cards"] if c["source"]["topic"]["code"] == TOY]
    assert toy["summary"] == "Toy: metastatic disease on record" and toy["indicator"] == "info"
    assert toy["source"]["topic"]["display"] == "Toy reminder"  # from the row: the CodeSystem does not know it
    assert "metastatic" in toy["detail"]
    # explain: the row's label and verdict, beside the shipped topics
    rules = _post(with_toy, explain=True)["explanation"]["rules"]
    assert rules["Toy reminder"] == ["card: a toy card"]
    assert {"HER2 re-scoring", "T-DXd consideration", "ILD monitoring"} <= set(rules)
    # discovery: its intended use among the source attributes
    services = with_toy.test_client().get("/cds-services").get_json()["services"]
    attributes = services[0]["extension"]["her2-cds.org/source-attributes"]
    assert attributes["intended_use"][TOY].startswith("A toy topic")
    # the ledger: its card recorded like any other
    state = app_state(with_toy)
    state.ledger.flush()
    with state.store.engine.connect() as conn:
        topics = {r[0] for r in conn.execute(sa.text("SELECT topic FROM cds_card_ledger"))}
    assert TOY in topics


def test_the_toy_topic_follows_its_settings_mode_and_silence(settings_factory):
    shadow = _app(settings_factory, (*TOPICS, toy_row(mode="shadow")))
    assert TOY not in _topics(_post(shadow))
    state = app_state(shadow)
    state.ledger.flush()
    with state.store.engine.connect() as conn:
        held = [
            r[0] for r in conn.execute(sa.text("SELECT held_back FROM cds_card_ledger WHERE topic = :t"), {"t": TOY})
        ]
    assert held == ["shadow"]
    off = _app(settings_factory, (*TOPICS, toy_row(enabled=False)))
    assert TOY not in _topics(_post(off))
    early = _app(settings_factory, (*TOPICS, toy_row()))
    assert TOY not in _topics(_post(early, resources=patients.early_stage()))
    rules = _post(early, explain=True, resources=patients.early_stage())["explanation"]["rules"]
    assert rules["Toy reminder"] == ["no card: no metastatic disease on record"]


def test_a_toy_rule_that_fails_says_so_in_its_own_name(settings_factory):
    def broken(facts: Facts, request: RequestContext, cfg: dict[str, Any]) -> CardDecision | None:
        raise ZeroDivisionError("injected")

    row = toy_row()
    app = _app(settings_factory, (*TOPICS, Topic(**{**row.__dict__, "decide": broken})))
    body = _post(app)
    [toy] = [c for c in body["cards"] if c["source"]["topic"]["code"] == TOY]
    assert toy["summary"] == "her2-cds could not evaluate Toy reminder for this patient: review it yourself"
    assert len(_topics(body)) == len(_topics(_post(_app(settings_factory, TOPICS)))) + 1


# --- the shipped rows
def test_every_shipped_row_is_configured_published_and_cited():
    cards = CardSettings.of(shipped_defaults()["cards"])
    codes = {c["code"]: c["display"] for c in load_terminology().resources["CodeSystem/card-topic"]["concept"]}
    assert [t.code for t in TOPICS] == ["her2-rescore", "tdxd-consideration", "ild-monitoring"]
    for t in TOPICS:
        assert t.config_key in cards.topics and mode(t, cards.topics) == "live"
        assert codes[t.code]  # the card-topic CodeSystem (published in fhir_profiles/) has every shipped code
        assert set(t.citations) <= set(CITATIONS) and t.intended_use
        assert BY_CODE[t.code] is t and REPORT_TOPICS[t.code] == t.label and COLOURS[t.code] == t.colour
    assert len({t.rank for t in TOPICS}) == len(TOPICS)
    assert [t.code for t in sorted(TOPICS, key=lambda t: t.rank)][0] == "ild-monitoring"  # the safety card first
    assert [t.code for t in TOPICS if t.always_repeat] == ["ild-monitoring"]


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"enabled": True, "mode": "live"}, "live"),
        ({"enabled": True, "mode": "shadow"}, "shadow"),
        ({"enabled": True, "mode": "off"}, "off"),
        ({"enabled": False, "mode": "live"}, "off"),
        ({"enabled": False, "mode": "shadow"}, "off"),
    ],
)
def test_a_topics_mode(cfg, expected):
    assert mode(BY_CODE["her2-rescore"], {"her2_rescore": TopicSettings.of(cfg)}) == expected
