"""Records belong to one patient (DESIGN §3), black box: through the Flask app, with prefetch and with a real local
FHIR server that ignores `patient=` as lenient servers do. Another patient's resources never decide or appear on a
card; they are left out and counted."""

from __future__ import annotations

import pytest

from cds_service.gather.binding import belongs, expected_types
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .fixtures import builders as b
from .fixtures import patients
from .helpers import for_patient, hook_request, prefetch_from
from .test_fallback import _request

BASE = "https://ehr.example.org/fhir"


@pytest.fixture
def app_for(settings_factory, fhir_server):
    def build(**fhir):
        return create_app(settings_factory(fhir={"allowed_servers": [fhir_server.base], "timeout_seconds": 1, **fhir}))

    return build


def other_patients_low_chart() -> list[dict]:
    """Another patient ("p2"): HER2-low, HR-positive, progressed on endocrine therapy, chemotherapy."""
    return for_patient(
        [
            b.breast_cancer("2018-01-01"),
            b.metastasis("liver", "2023-01-10"),
            b.receptor("ER", "positive", "2023-01-20"),
            b.her2_ihc("1+", "2023-01-20", id="OTHER-PATIENT-HER2"),
            b.med_statement("letrozole", "2023-02-01", "2024-06-01", status="stopped", reason="progression"),
            b.med_statement("capecitabine", "2024-07-01", "2025-01-01"),
        ],
        "p2",
    )


def t1_chart() -> list[dict]:
    """This patient ("p1"): breast cancer, metastatic, no HER2 result."""
    return [b.patient(), b.breast_cancer("2018-01-01"), b.metastasis("liver", "2023-01-10")]


def cards(app, body, service="her2-patient-view"):
    resp = app.test_client().post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def test_another_patients_resources_are_left_out_and_counted(settings_factory):
    app = create_app(settings_factory())
    body = hook_request("patient-view", "p1", prefetch=prefetch_from(t1_chart() + other_patients_low_chart()))
    got = cards(app, body)
    assert "tdxd-consideration" not in got  # p2's HER2-low result and chemotherapy decide nothing for p1
    rescore = got["her2-rescore"]  # p1 has no HER2 result of her own
    assert "6 resource(s) left out: not this patient's" in rescore["detail"]
    assert "OTHER-PATIENT-HER2" not in str(got) and "Patient/p2" not in str(got)


def test_a_context_patient_the_prefetch_is_not_about_gets_nothing_from_it(settings_factory):
    app = create_app(settings_factory())
    body = hook_request("patient-view", "p9", prefetch=prefetch_from(patients.builta_her2_low()))
    assert cards(app, body) == {}  # no record of p9's: no breast cancer on record, no card at all


def test_a_lenient_server_answering_with_another_patient_is_not_used(app_for, fhir_server):
    fhir_server.reset(t1_chart() + other_patients_low_chart(), lenient=True)
    app = app_for()
    engine = app_state(app).engine
    outcome = engine.invoke(engine.services["her2-patient-view"], _request(fhir_server.base))
    assert outcome.gathered.binding.other_patient == 6
    assert "tdxd-consideration" not in outcome.topics
    assert "OTHER-PATIENT-HER2" not in str(outcome.body)


def test_a_patient_read_answered_with_another_patient_stops_the_fallback():
    from cds_service.gather.gathering import Gathered, _distrust_a_server_that_names_another_patient

    other = for_patient([b.patient()], "p2")[0]
    out = Gathered(by_key={"patient": [other], "conditions": t1_chart()[1:], "her2Observations": []})
    _distrust_a_server_that_names_another_patient(out, {"patient", "conditions"}, "p1")
    assert out.by_key == {"patient": [], "conditions": [], "her2Observations": []}
    assert "another patient" in out.unavailable["conditions"] and out.binding.other_patient == 3


def test_a_resource_of_the_wrong_type_in_a_search_answer_is_left_out(settings_factory):
    app = create_app(settings_factory())
    prefetch = prefetch_from(t1_chart())
    stray = b.administration("fam-trastuzumab deruxtecan", "2026-11-20")
    prefetch["procedures"]["entry"].append({"resource": stray})
    engine = app_state(app).engine
    outcome = engine.invoke(engine.services["her2-patient-view"], hook_request("patient-view", "p1", prefetch=prefetch))
    assert outcome.gathered.binding.wrong_type == 1
    assert "ild-monitoring" not in outcome.topics  # the stray T-DXd record decided nothing


@pytest.mark.parametrize(
    "reference, ok",
    [
        ("Patient/p1", True),
        ("Patient/p1/_history/3", True),
        (f"{BASE}/Patient/p1", True),
        ("Patient/p2", False),
        ("https://other.example.org/fhir/Patient/p1", False),  # absolute on another server
        (f"{BASE}/Patient/p1/../p2", False),
        ("Group/p1", False),
        ("Patient/p1x", False),
        ("urn:uuid:0b2c", True),  # the Patient's fullUrl in the same answer
        ("urn:uuid:ffff", False),
        ("urn:uuid:p1", True),  # a collection Bundle without fullUrl, referencing the Patient's id as a urn:uuid
        ("urn:uuid:p2", False),
    ],
)
def test_reference_forms(reference, ok):
    obs = {"resourceType": "Observation", "subject": {"reference": reference}}
    assert belongs(obs, "p1", BASE, {"urn:uuid:0b2c"}) is ok


def test_no_subject_and_identifier_only_subjects_are_not_this_patients():
    assert not belongs({"resourceType": "Observation"}, "p1", BASE, set())
    assert not belongs({"resourceType": "Condition", "subject": {"identifier": {"value": "p1"}}}, "p1", BASE, set())
    assert belongs({"resourceType": "Medication"}, "p1", BASE, set())  # a Medication has no patient


def test_expected_types_come_from_the_template():
    assert expected_types("Observation?patient={{context.patientId}}&_include=Observation:specimen") == {
        "Observation",
        "Specimen",
    }
    assert expected_types("MedicationRequest?patient=x&_include=MedicationRequest:medication") == {
        "MedicationRequest",
        "Medication",
    }
    assert expected_types("Patient/{{context.patientId}}") == {"Patient"}
