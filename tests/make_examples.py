"""Writes hooks/examples/*.json from the test fixtures: `python -m tests.make_examples`.

The examples are committed; tests/test_examples.py checks that each still gives its cards."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from .fixtures import builders as b
from .fixtures import patients
from .helpers import hook_request, prefetch_from

OUT = Path(__file__).resolve().parent.parent / "hooks" / "examples"


def _draft(name: str, dose: tuple[float, str] | None = None, text: str | None = None) -> dict:
    d = b.med_request(name, "2026-11-25", status="draft", dose=dose, id=f"draft-{name.split()[0]}")
    if text:
        d["medicationCodeableConcept"] = {"text": text}
    return d


def _ultralow() -> list[dict]:
    return [
        b.patient(),
        b.breast_cancer(),
        b.metastasis("bone", "2022-01-01"),
        b.receptor("ER", 80),
        b.receptor("PR", 10),
        b.her2_ihc(0, "2025-01-10", membrane="faint-le-10"),
        b.med_statement("anastrozole", "2022-02-01", "2024-12-01", status="stopped", reason="progression"),
    ]


# story -> (patient id, given name, family name, records); each story is one patient in `her2-cds seed`
STORIES = {
    "builta-binary-only": ("Builta", "Demo-Binary", patients.builta_binary_only),
    "builta-her2-low": ("Builta", "Demo-Low", patients.builta_her2_low),
    "builta-pneumonitis": ("Builta", "Demo-Pneumonitis", patients.builta_pneumonitis),
    "bell": ("Bell", "Demo", patients.bell),
    "ultralow-hr-positive": ("Una", "Demo-Ultralow", _ultralow),
    "her2-positive": ("Hana", "Demo-Positive", patients.her2_positive),
    "triple-negative": ("Tess", "Demo-Triple-Negative", patients.triple_negative),
}

EXAMPLES = {
    "builta-binary-only.patient-view": ("patient-view", "builta-binary-only", []),
    "builta-her2-low.order-select-eribulin": (
        "order-select",
        "builta-her2-low",
        [_draft("eribulin", text="eribulin 1.4 mg/m2 IV")],
    ),
    "builta-after-pneumonitis.order-sign-tdxd": (
        "order-sign",
        "builta-pneumonitis",
        [_draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))],
    ),
    "bell.order-select-ribociclib": ("order-select", "bell", [_draft("ribociclib")]),
    "bell.order-sign-tdxd-gastric-dose": ("order-sign", "bell", [_draft("fam-trastuzumab deruxtecan", (6.4, "mg/kg"))]),
    "ultralow-hr-positive.patient-view": ("patient-view", "ultralow-hr-positive", []),
    "her2-positive.patient-view": ("patient-view", "her2-positive", []),
    "triple-negative-her2-low.patient-view": ("patient-view", "triple-negative", []),
}


def _rewrite(value: Any, refs: dict[str, str]) -> Any:
    """Every `reference` renamed by refs (old "Type/id" -> new)."""
    if isinstance(value, dict):
        return {
            k: (refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, refs) for v in value]
    return value


def as_patient(story: str, resources: list[dict], drafts: list[dict]) -> tuple[list[dict], list[dict]]:
    """The story's records under its own patient (id = story, with a name) and ids unique across stories."""
    given, family, _ = STORIES[story]
    refs = {f"Patient/{b.PATIENT}": f"Patient/{story}"}
    for res in resources:
        if res["resourceType"] != "Patient":
            refs[f"{res['resourceType']}/{res['id']}"] = f"{res['resourceType']}/{story}-{res['id']}"
    out = []
    for res in resources:
        res = _rewrite(res, refs)
        if res["resourceType"] == "Patient":
            res.update(id=story, name=[{"use": "official", "family": family, "given": [given]}])
        else:
            res["id"] = f"{story}-{res['id']}"
        out.append(res)
    return out, [_rewrite(d, refs) for d in drafts]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    records = {story: make() for story, (_, _, make) in STORIES.items()}
    for name, (hook, story, drafts) in EXAMPLES.items():
        resources, drafts = as_patient(story, records[story], drafts)
        body = hook_request(hook, story, prefetch=prefetch_from(resources), draft_orders=drafts)
        body["hookInstance"] = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        (OUT / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n", "utf-8")
        print(f"wrote hooks/examples/{name}.json")


if __name__ == "__main__":
    main()
