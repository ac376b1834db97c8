"""Every card × every hook × the main patient types, through the Flask app; every card checked
against the CDS Hooks 2.0 rules (tests/helpers.assert_cds_response)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.web.app import create_app

from .fixtures import builders as b
from .fixtures import patients
from .helpers import SERVICE_FOR_HOOK, assert_cds_response, hook_request, prefetch_from

HOOKS = ("order-select", "order-sign", "patient-view")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from cds_service.config import load

    db = tmp_path_factory.mktemp("db") / "f.db"
    return create_app(
        load(None, overrides={"auth": {"required": False}, "storage": {"database_url": f"sqlite:///{db}"}})
    )


def draft(name: str, dose=None):
    return b.med_request(name, "2026-11-25", status="draft", dose=dose, id=f"draft-{name.split()[0]}")


def cards_for(app, resources, hook, drafts=()):
    body = hook_request(hook, prefetch=prefetch_from(resources), draft_orders=list(drafts))
    resp = app.test_client().post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = assert_cds_response(resp.get_json())
    for card in cards:
        for s in card.get("suggestions", []):
            for action in s["actions"]:
                if action["type"] == "delete":
                    assert action["resourceId"].startswith("MedicationRequest/") and "resource" not in action
                    continue
                model = {"ServiceRequest": ServiceRequest, "MedicationRequest": MedicationRequest}
                model[action["resource"]["resourceType"]].model_validate(action["resource"])
    return {c["source"]["topic"]["code"]: c for c in cards}


def drafts_for(hook):
    return [draft("capecitabine")] if hook != "patient-view" else []


# --- her2-rescore
@pytest.mark.parametrize("hook", HOOKS)
def test_binary_only_metastatic_gets_rescore(app, hook):
    cards = cards_for(app, patients.builta_binary_only(), hook, drafts_for(hook))
    assert set(cards) == {"her2-rescore"}
    card = cards["her2-rescore"]
    assert "negative" in card["summary"] and card["indicator"] == "warning"
    assert "2019-08-20" in card["detail"] and "Observation/" in card["detail"]
    sr = card["suggestions"][0]["actions"][0]["resource"]
    assert sr["resourceType"] == "ServiceRequest" and sr["code"]["coding"][0]["code"] == "85319-2"
    assert card["selectionBehavior"] == "at-most-one"


@pytest.mark.parametrize(
    "resources, expect",
    [
        ([b.her2_ihc(0, "2025-06-01")], "staining statement"),
        ([b.her2_ihc(2, "2025-06-01")], "reflex ISH"),
        ([], "no HER2 result"),
        ([b.her2_ihc(0, "2020-01-01", membrane="absent")], "old"),
    ],
)
def test_rescore_triggers(app, resources, expect):
    base = [
        b.patient(),
        b.breast_cancer(),
        b.metastasis("liver", "2019-01-01"),
        b.receptor("ER", "positive"),
        b.receptor("PR", "positive"),
    ]
    cards = cards_for(app, base + resources, "patient-view")
    assert expect in cards["her2-rescore"]["summary"]
    if expect == "reflex ISH":
        resource = cards["her2-rescore"]["suggestions"][0]["actions"][0]["resource"]
        assert resource["code"]["coding"][0]["code"] == "85318-4"
    if expect == "staining statement":
        assert "DESTINY-Breast06" in cards["her2-rescore"]["detail"]


def test_rescore_names_the_specimen(app):
    spec = {"resourceType": "Specimen", "id": "sp1", "type": {"text": "Liver core biopsy"}}
    res = [b.patient(), b.breast_cancer(), b.metastasis(), spec, b.her2_ihc(0, "2025-06-01", specimen="sp1")]
    sr = cards_for(app, res, "patient-view")["her2-rescore"]["suggestions"][0]["actions"][0]["resource"]
    assert sr["specimen"] == [{"reference": "Specimen/sp1"}] and "Liver" in sr["note"][0]["text"]


@pytest.mark.parametrize("fixture", [patients.her2_positive, patients.early_stage])
@pytest.mark.parametrize("hook", HOOKS)
def test_no_rescore_for_her2_positive_or_early_stage(app, fixture, hook):
    assert cards_for(app, fixture(), hook, drafts_for(hook)) == {}


def test_order_hooks_without_systemic_therapy_draft_are_quiet(app):
    nonsystemic = b.med_request("capecitabine", "2026-11-25", status="draft", id="d-ondansetron")
    nonsystemic["medicationCodeableConcept"] = {"text": "ondansetron 8 mg"}
    assert cards_for(app, patients.builta_binary_only(), "order-sign", [nonsystemic]) == {}


def test_order_select_with_no_medication_yet_is_empty(app):
    empty = {
        "resourceType": "MedicationRequest",
        "id": "x",
        "status": "draft",
        "intent": "order",
        "subject": b.subject(),
    }
    assert cards_for(app, patients.builta_binary_only(), "order-select", [empty]) == {}


# --- tdxd-consideration
@pytest.mark.parametrize("hook", HOOKS)
def test_bell_meets_db06_and_db04(app, hook):
    cards = cards_for(app, patients.bell(), hook, drafts_for(hook))
    card = cards["tdxd-consideration"]
    assert "DB-06" in card["summary"] and "DB-04" in card["summary"]
    detail = card["detail"]
    assert "letrozole" in detail and "progress" in detail and "2024-04" in detail
    assert (
        "✔ progression on ≥1 endocrine therapy in the metastatic setting: abemaciclib + letrozole (2016-07-01 to "
        "2024-04-20, metastatic setting): progressed"
    ) in detail
    assert "stopped for toxicity" not in detail
    sug = card["suggestions"][0]
    assert sug["isRecommended"] is False
    dose = sug["actions"][0]["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose == {"value": 5.4, "unit": "mg/kg", "system": "http://unitsofmeasure.org", "code": "mg/kg"}
    assert card["indicator"] == "info"


def test_builta_after_rescoring_meets_db04_and_db06_with_the_trial_population_said(app):
    cards = cards_for(app, patients.builta_her2_low(), "patient-view")
    summary, detail = cards["tdxd-consideration"]["summary"], cards["tdxd-consideration"]["detail"]
    assert "DB-04" in summary and "DB-06" in summary  # chemotherapy for advanced disease does not exclude DB-06
    assert "DESTINY-Breast06 enrolled patients without chemotherapy for advanced disease" in detail


def test_ultralow_hr_positive_with_et_progression_meets_db06_only(app):
    res = [
        b.patient(),
        b.breast_cancer(),
        b.metastasis("bone", "2022-01-01"),
        b.receptor("ER", 80),
        b.receptor("PR", 10),
        b.her2_ihc(0, "2025-01-10", membrane="faint-le-10"),
        b.med_statement("anastrozole", "2022-02-01", "2024-12-01", status="stopped", reason="progression"),
    ]
    card = cards_for(app, res, "patient-view")["tdxd-consideration"]
    assert "HER2-ultralow" in card["summary"] and "DB-06" in card["summary"] and "DB-04" not in card["summary"]


def test_unknown_progression_is_said_not_guessed(app):
    res = [
        b.patient(),
        b.breast_cancer(),
        b.metastasis("bone", "2022-01-01"),
        b.receptor("ER", 80),
        b.receptor("PR", 10),
        b.her2_ihc(1, "2025-01-10"),
        b.med_statement("anastrozole", "2022-02-01", "2024-12-01", status="completed"),
    ]
    cards = cards_for(app, res, "patient-view")
    card = cards["tdxd-consideration"]
    assert "may meet" in card["summary"]
    assert "Not known" in card["detail"] and "progression not documented" in card["detail"]


@pytest.mark.parametrize(
    "fixture", [patients.her2_positive, patients.early_stage, patients.builta_binary_only, patients.builta_pneumonitis]
)
def test_no_tdxd_card(app, fixture):
    assert "tdxd-consideration" not in cards_for(app, fixture(), "patient-view")


def test_triple_negative_her2_low_after_chemo_meets_db04(app):
    card = cards_for(app, patients.triple_negative(), "patient-view")["tdxd-consideration"]
    assert "DB-04" in card["summary"] and "paclitaxel" in card["detail"]


def test_no_prior_chemo_and_no_et_progression_means_no_card(app):
    res = [
        b.patient(),
        b.breast_cancer(),
        b.metastasis("bone", "2022-01-01"),
        b.receptor("ER", 0),
        b.receptor("PR", 0),
        b.her2_ihc(1, "2025-01-10"),
    ]
    assert "tdxd-consideration" not in cards_for(app, res, "patient-view")


def test_prior_ild_is_a_caution_not_an_exclusion(app):
    card = cards_for(app, patients.bell() + [b.ild("2020-01-01", "Radiation pneumonitis")], "patient-view")[
        "tdxd-consideration"
    ]
    assert card["indicator"] == "warning" and "excluded from DESTINY" in card["detail"]


def test_tdxd_order_gets_ild_card_not_consideration(app):
    cards = cards_for(app, patients.bell(), "order-select", [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))])
    assert set(cards) == {"ild-monitoring"}


# --- ild-monitoring
@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_tdxd_draft_without_risk_factors_is_info_with_two_suggestions(app, hook):
    cards = cards_for(app, patients.bell(), hook, [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))])
    card = cards["ild-monitoring"]
    assert card["indicator"] == "info" and card["selectionBehavior"] == "any"
    assert [s["label"] for s in card["suggestions"]] == ["Order baseline CT chest", "Order pulse oximetry"]
    assert "grade 2 or greater" in card["detail"] and "cough" in card["detail"] and "28 days" in card["detail"]


def test_gastric_dose_is_a_warning(app):
    card = cards_for(app, patients.bell(), "order-sign", [draft("fam-trastuzumab deruxtecan", (6.4, "mg/kg"))])[
        "ild-monitoring"
    ]
    assert card["indicator"] == "warning" and "6.4" in card["summary"]
    fix = next(s for s in card["suggestions"] if s["actions"][0]["type"] == "update")
    fixed = fix["actions"][0]["resource"]
    assert fixed["id"] == "draft-fam-trastuzumab"
    assert fixed["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 5.4
    assert not fix.get("isRecommended")


def test_risk_factors_make_a_warning(app):
    res = patients.bell() + [b.thoracic_rt("2013-01-01"), b.metastasis("lung", "2025-01-01")]
    card = cards_for(app, res, "order-select", [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))])["ild-monitoring"]
    assert card["indicator"] == "warning" and "thoracic radiotherapy" in card["detail"]


def test_prior_grade3_tdxd_pneumonitis_is_critical(app):
    card = cards_for(
        app, patients.builta_pneumonitis(), "order-sign", [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))]
    )["ild-monitoring"]
    assert card["indicator"] == "critical" and "discontinue T-DXd permanently" in card["summary"]
    assert "grade 3" in card["detail"] and "Stop T-DXd" in card["detail"]
    assert card["detail"].count("Drug-induced pneumonitis (trastuzumab deruxtecan)") == 1  # said once
    assert "baseline" not in card["detail"].lower()  # no work-up for a drug that must not be given
    [remove] = card["suggestions"]
    assert remove["actions"] == [
        {
            "type": "delete",
            "description": "Remove the drafted T-DXd order",
            "resourceId": "MedicationRequest/draft-fam-trastuzumab",
        }
    ]


def test_patient_view_with_active_tdxd_is_quiet_unless_something_needs_doing(app):
    """Continuing therapy: no baseline card on every cycle (DESIGN §6.5); a card when chest imaging is overdue."""
    res = patients.bell() + [b.administration("fam-trastuzumab deruxtecan", "2026-11-10")]
    cards = cards_for(app, res, "patient-view")
    assert "ild-monitoring" not in cards and "tdxd-consideration" not in cards
    res = patients.bell() + [
        b.administration("fam-trastuzumab deruxtecan", "2026-05-10"),
        b.administration("fam-trastuzumab deruxtecan", "2026-11-10"),
    ]
    card = cards_for(app, res, "patient-view")["ild-monitoring"]
    assert card["summary"] == "T-DXd: chest imaging overdue for ILD surveillance"
    assert "no chest imaging since the first dose (2026-05-10)" in card["detail"]
    assert [s["label"] for s in card["suggestions"]] == ["Order CT chest"]


def test_tdxd_by_brand_name_text_is_recognised(app):
    d = draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))
    d["medicationCodeableConcept"] = {"text": "Enhertu 100 mg powder for infusion"}
    assert "ild-monitoring" in cards_for(app, patients.bell(), "order-sign", [d])


# --- configuration
def test_cards_can_be_switched_off_and_texts_overridden(settings_factory):
    app = create_app(
        settings_factory(
            cards={
                "her2_rescore": {"enabled": False},
                "tdxd_consideration": {"enabled": True},
                "ild_monitoring": {"enabled": True},
                "texts": {"tdxd-consideration.footer": "Call pharmacy x1234."},
            }
        )
    )
    assert cards_for(app, patients.builta_binary_only(), "patient-view") == {}
    assert "x1234" in cards_for(app, patients.bell(), "patient-view")["tdxd-consideration"]["detail"]


def test_stale_threshold_is_configurable(settings_factory):
    res = [
        b.patient(),
        b.breast_cancer(),
        b.metastasis("liver", "2019-01-01"),
        b.her2_ihc(0, "2025-01-01", membrane="absent"),
    ]
    strict = create_app(
        settings_factory(
            cards={
                "her2_rescore": {"enabled": True, "stale_after_months": 6},
                "tdxd_consideration": {"enabled": True},
                "ild_monitoring": {"enabled": True},
            }
        )
    )
    assert "her2-rescore" in cards_for(strict, res, "patient-view")
    assert "her2-rescore" not in cards_for(create_app(settings_factory()), res, "patient-view")


def test_old_her2_low_result_gives_no_rescore_noise_unless_configured(settings_factory):
    res = [b.patient(), b.breast_cancer(), b.metastasis("liver", "2019-01-01"), b.her2_ihc(1, "2020-01-01")]
    assert "her2-rescore" not in cards_for(create_app(settings_factory()), res, "patient-view")
    on = create_app(settings_factory(cards={"her2_rescore": {"recheck_actionable": True}}))
    assert "months old" in cards_for(on, res, "patient-view")["her2-rescore"]["detail"]


def test_unavailable_data_is_named_on_the_card(app, fhir_server):
    from cds_service.config import load

    fhir_server.reset(patients.builta_binary_only(), status=500)
    app2 = create_app(
        load(
            None,
            overrides={
                "auth": {"required": False},
                "storage": {"database_url": "sqlite://"},
                "fhir": {"allowed_servers": [fhir_server.base]},
            },
        )
    )
    prefetch = prefetch_from(patients.builta_binary_only())
    del prefetch["procedures"]
    body = hook_request(
        "patient-view",
        prefetch=prefetch,
        fhirServer=fhir_server.base,
        fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 60, "scope": "s", "subject": "c"},
    )
    resp = app2.test_client().post("/cds-services/her2-patient-view", json=body)
    card = assert_cds_response(resp.get_json())[0]
    assert "procedures (HTTP 500)" in card["detail"]


# --- repetition across hooks
def _as_user(app, resources, hook, drafts, user):
    body = hook_request(hook, prefetch=prefetch_from(resources), draft_orders=list(drafts))
    body["context"]["userId"] = user
    resp = app.test_client().post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=body)
    return [c["source"]["topic"]["code"] for c in assert_cds_response(resp.get_json())]


def test_order_sign_does_not_repeat_an_info_card_that_order_select_showed(settings_factory, caplog):
    app = create_app(settings_factory())
    chart, order = patients.bell(), [draft("capecitabine")]
    assert _as_user(app, chart, "order-select", order, "Practitioner/a") == ["tdxd-consideration"]
    assert _as_user(app, chart, "order-select", order, "Practitioner/a") == ["tdxd-consideration"]  # each edit
    caplog.set_level("INFO", logger="her2_cds.audit")
    assert _as_user(app, chart, "order-sign", order, "Practitioner/a") == []
    assert [getattr(r, "repeats_left_out", None) for r in caplog.records if r.name == "her2_cds.audit"][-1] == 1
    assert _as_user(app, chart, "order-sign", order, "Practitioner/b") == ["tdxd-consideration"]  # another user
    newer = chart + [b.her2_ihc("1+", "2026-10-01")]
    assert _as_user(app, newer, "order-sign", order, "Practitioner/a") == ["tdxd-consideration"]  # new evidence
    assert _as_user(app, chart, "patient-view", [], "Practitioner/a") == ["tdxd-consideration"]


def test_ild_reminder_and_warnings_always_repeat(settings_factory):
    app = create_app(settings_factory())
    chart, order = patients.bell(), [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))]
    for hook in ("order-select", "order-sign", "order-sign"):
        assert _as_user(app, chart, hook, order, "Practitioner/a") == ["ild-monitoring"]


def test_repeat_window_zero_repeats_everything(settings_factory):
    app = create_app(settings_factory(cards={"repeat_window_minutes": 0}))
    chart, order = patients.bell(), [draft("capecitabine")]
    for hook in ("order-select", "order-sign"):
        assert _as_user(app, chart, hook, order, "Practitioner/a") == ["tdxd-consideration"]


def test_a_suggested_resource_that_is_not_valid_fhir_is_never_sent():
    from cds_service.cards.render import check_action

    good = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"text": "HER2 IHC"},
        "subject": {"reference": "Patient/p1"},
    }
    check_action(good)
    no_subject = {k: v for k, v in good.items() if k != "subject"}
    for bad in ({**good, "intent": None}, no_subject, {**good, "code": "HER2"}):
        with pytest.raises(ValueError, match="not valid FHIR R4"):
            check_action(bad)


def test_rescore_card_says_when_there_is_no_receptor_result(app):
    chart = [
        b.breast_cancer(),
        b.metastasis("liver", "2024-01-01"),
        b.her2_ihc({"valueString": "Negative (0-1+)"}, "2025-02-01"),
    ]
    card = cards_for(app, chart, "patient-view")["her2-rescore"]
    assert "- HR status unknown: no ER or PR result" in card["detail"]
    assert "range (0-1+)" in card["detail"]


# --- renal function as an ILD risk factor (latest eGFR)
def _egfr(value, when, **kw):
    v = (
        {"valueString": value}
        if isinstance(value, str)
        else {
            "valueQuantity": {
                "value": value,
                "unit": "mL/min/1.73m2",
                "system": "http://unitsofmeasure.org",
                "code": "mL/min/{1.73_m2}",
            }
        }
    )
    return b.observation(b.cc(b.LOINC, "98979-8", "eGFR (CKD-EPI 2021)"), when, **v, **kw)


@pytest.mark.parametrize(
    "results, indicator, evidence, unknown",
    [
        ([_egfr(45, "2026-10-01")], "warning", "reduced renal function: eGFR 45 mL/min/1.73m2 (under 60)", None),
        ([_egfr(45, "2024-03-01"), _egfr(75, "2026-10-01")], "info", None, None),  # the latest counts
        ([_egfr(75, "2024-03-01"), _egfr(40, "2026-10-01")], "warning", "eGFR 40", None),
        ([_egfr(">60", "2026-10-01")], "info", None, None),  # a bound above the line
        ([_egfr(">30", "2026-10-01")], "info", None, "cannot tell whether renal function is under 60"),
        ([_egfr(20, "2026-10-01", status="entered-in-error")], "info", None, None),
    ],
)
def test_latest_egfr_under_60_is_an_ild_risk_factor(app, results, indicator, evidence, unknown):
    chart = [*patients.bell(), *results]
    card = cards_for(app, chart, "order-sign", [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))])["ild-monitoring"]
    assert card["indicator"] == indicator
    assert evidence is None or evidence in card["detail"]
    assert unknown is None or unknown in card["detail"]
    if indicator == "info":
        assert "reduced renal function: eGFR" not in card["detail"]


def test_egfr_threshold_is_configurable(settings_factory):
    app = create_app(settings_factory(cards={"ild_monitoring": {"enabled": True, "egfr_below": 30}}))
    chart = [*patients.bell(), _egfr(45, "2026-10-01")]
    card = cards_for(app, chart, "order-sign", [draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))])["ild-monitoring"]
    assert card["indicator"] == "info"


def test_a_failing_topic_becomes_an_info_card_and_the_others_still_go_out(settings_factory, monkeypatch, caplog):
    """Fault injection: the T-DXd rule raises; the ILD and re-score cards are unaffected."""
    from cds_service.rules import tdxd

    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(tdxd, "why_silent", broken)  # the first thing the rule's decide asks
    app = create_app(settings_factory())
    client = app.test_client()
    body = hook_request(
        "order-select", prefetch=prefetch_from(patients.builta_binary_only()), draft_orders=[draft("capecitabine")]
    )
    with caplog.at_level("INFO"):
        resp = client.post("/cds-services/her2-order-select", json=body)
    cards = {c["source"]["topic"]["code"]: c for c in assert_cds_response(resp.get_json())}
    assert cards["her2-rescore"]["indicator"] == "warning"
    fallback = cards["tdxd-consideration"]
    assert fallback["indicator"] == "info" and "could not evaluate T-DXd consideration" in fallback["summary"]
    assert "injected" not in fallback["detail"] and "ZeroDivisionError" not in fallback["detail"]
    audit = [r for r in caplog.records if r.name == "her2_cds.audit"]
    assert audit[-1].card_failures == ["tdxd-consideration"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'her2cds_card_failures_total{service="her2-order-select",topic="tdxd-consideration"} 1.0' in metrics
