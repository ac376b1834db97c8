"""Generated patients of a given size: a realistic chart where most resources are irrelevant
(vitals, labs, encounters, other drugs and conditions) and a few per cent are the HER2/HR results,
cancer conditions and cancer therapies the facts read."""

from __future__ import annotations

import random
from typing import Any

from ..fixtures import builders as b
from ..fixtures import patients

LABS = [
    ("8867-4", "Heart rate"),
    ("8480-6", "Systolic blood pressure"),
    ("2339-0", "Glucose"),
    ("718-7", "Hemoglobin"),
    ("6690-2", "Leukocytes"),
    ("777-3", "Platelets"),
    ("2160-0", "Creatinine"),
    ("29463-7", "Body weight"),
    ("8310-5", "Body temperature"),
    ("1742-6", "ALT"),
]
OTHER_DRUGS = [
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("310965", "ibuprofen 200 MG Oral Tablet"),
    ("312615", "prednisone 20 MG Oral Tablet"),
    ("198211", "simvastatin 40 MG Oral Tablet"),
    ("313782", "acetaminophen 325 MG Oral Tablet"),
    ("1049630", "ondansetron 8 MG Oral Tablet"),
]
OTHER_CONDITIONS = [
    ("38341003", "Hypertension"),
    ("44054006", "Diabetes mellitus type 2"),
    ("195662009", "Acute viral pharyngitis"),
    ("10509002", "Acute bronchitis"),
    ("40055000", "Chronic sinusitis"),
]


def _lab(rng: random.Random, i: int) -> dict[str, Any]:
    code, display = rng.choice(LABS)
    when = f"20{rng.randint(10, 26):02d}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    obs = b.observation(
        b.cc(b.LOINC, code, display, text=display),
        when,
        id=f"lab-{i}",
        valueQuantity={
            "value": round(rng.uniform(1, 200), 1),
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    )
    obs["meta"] = {
        "versionId": "1",
        "lastUpdated": "2025-01-01T00:00:00Z",
        "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"],
    }
    obs["encounter"] = {"reference": f"Encounter/enc-{i // 5}"}
    obs["issued"] = "2025-01-02T10:00:00.000+00:00"
    obs["referenceRange"] = [{"low": {"value": 10}, "high": {"value": 100}, "text": "10-100"}]
    return obs


def _encounter(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"enc-{i}",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [b.cc(b.SCT, "185349003", "Encounter for check up", text="Check-up")],
        "subject": b.subject(),
        "period": {"start": "2024-01-01T09:00:00Z", "end": "2024-01-01T09:30:00Z"},
        "participant": [{"individual": {"reference": "Practitioner/pr-1", "display": "Dr. Example"}}],
        "serviceProvider": {"reference": "Organization/org-1", "display": "Example Hospital"},
    }


def _other_med(rng: random.Random, i: int) -> dict[str, Any]:
    code, display = rng.choice(OTHER_DRUGS)
    return {
        "resourceType": "MedicationRequest",
        "id": f"omr-{i}",
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": b.cc(b.RX, code, display, text=display),
        "subject": b.subject(),
        "authoredOn": "2023-05-01",
        "requester": {"reference": "Practitioner/pr-1"},
        "dosageInstruction": [
            {"text": "1 tablet daily", "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
        ],
    }


def _other_condition(rng: random.Random, i: int) -> dict[str, Any]:
    code, display = rng.choice(OTHER_CONDITIONS)
    return b.condition(b.cc(b.SCT, code, display, text=display), "2019-01-01")


def chart(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A patient with n resources: the Bell story plus filler, ~5% cancer-relevant."""
    rng = random.Random(seed)
    core = patients.bell()
    out = list(core)
    i = 0
    while len(out) < n:
        i += 1
        r = rng.random()
        if r < 0.03:
            out.append(b.her2_ihc(rng.choice(["1+", "0", "2+"]), f"20{rng.randint(10, 24)}-01-01"))
        elif r < 0.05:
            out.append(
                b.med_statement(
                    rng.choice(["letrozole", "capecitabine", "palbociclib"]),
                    f"20{rng.randint(10, 24)}-02-01",
                    f"20{rng.randint(10, 24)}-08-01",
                )
            )
        elif r < 0.65:
            out.append(_lab(rng, i))
        elif r < 0.8:
            out.append(_encounter(i))
        elif r < 0.93:
            out.append(_other_med(rng, i))
        else:
            out.append(_other_condition(rng, i))
    return out[:n]


CANCER_DRUGS = [
    "letrozole",
    "anastrozole",
    "fulvestrant",
    "palbociclib",
    "ribociclib",
    "capecitabine",
    "paclitaxel",
    "eribulin",
]
SUPPORT_DRUGS = {
    "ondansetron": "26225",
    "dexamethasone": "3264",
    "filgrastim": "68442",
    "denosumab": "993449",
    "zoledronic acid": "77655",
}
PROCEDURES = [
    ("77477000", "CT of chest"),
    ("241615005", "MRI of breast"),
    ("86273004", "Biopsy"),
    ("387713003", "Surgical procedure"),
    ("71651007", "Mammography"),
]


def _when(rng: random.Random) -> str:
    return f"20{rng.randint(16, 26):02d}-{rng.randint(1, 12):02d}-{rng.randint(10, 28)}"


def prefetch_chart(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """A patient with n resources, all of the kinds the service's prefetch templates ask for (what an EHR
    that honours them sends): HER2, ER/PR, disease-status and eGFR observations by their codes, every
    condition, procedure and medication record of the patient (cancer ones and the others), pathology
    reports. Built on the Bell story, so the answer holds a T-DXd card."""
    rng = random.Random(seed)
    out = list(patients.bell())
    i = 0
    while len(out) < n:
        i += 1
        r = rng.random()
        if r < 0.06:
            out.append(b.her2_ihc(rng.choice(["1+", "0", "2+"]), _when(rng), site=rng.choice(["liver", "bone"])))
        elif r < 0.10:
            out.append(b.receptor(rng.choice(["ER", "PR"]), rng.choice([0, 5, 40, 90]), _when(rng)))
        elif r < 0.18:
            out.append(b.disease_status(rng.choice(["stable", "progression", "response"]), _when(rng)))
        elif r < 0.30:
            out.append(
                b.observation(
                    b.cc(b.LOINC, "33914-3", "eGFR (MDRD)"),
                    _when(rng),
                    id=f"egfr-{i}",
                    valueQuantity={
                        "value": rng.randint(40, 110),
                        "unit": "mL/min/1.73m2",
                        "system": "http://unitsofmeasure.org",
                        "code": "mL/min/{1.73_m2}",
                    },
                )
            )
        elif r < 0.42:
            out.append(
                _other_condition(rng, i)
                if rng.random() < 0.8
                else b.metastasis(rng.choice(["liver", "bone", "lung"]), _when(rng))
            )
        elif r < 0.52:
            code, display = rng.choice(PROCEDURES)
            out.append(b.procedure(b.cc(b.SCT, code, display), _when(rng)))
        elif r < 0.62:
            out.append(b.med_statement(rng.choice(CANCER_DRUGS), _when(rng), _when(rng)))
        elif r < 0.72:
            out.append(_other_med(rng, i))
        elif r < 0.86:
            out.append(b.administration(rng.choice(CANCER_DRUGS), _when(rng)))
        else:
            name = rng.choice(list(SUPPORT_DRUGS))
            admin = b.administration("letrozole", _when(rng))
            admin["medicationCodeableConcept"] = b.cc(b.RX, SUPPORT_DRUGS[name], name)
            out.append(admin)
    return out[:n]
