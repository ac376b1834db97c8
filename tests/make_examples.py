"""Writes hooks/examples/*.json from the test fixtures: `python -m tests.make_examples`.

The examples are committed; tests/test_examples.py checks that each still gives its cards."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from .fixtures import builders as b
from .fixtures import patients
from .helpers import hook_request, prefetch_from

OUT = Path(__file__).resolve().parent.parent / "hooks" / "examples"


def _draft(name: str, dose: tuple[float, str] | None = None, text: str | None = None) -> dict:
    d = b.med_request(name, "2026-11-25", status="draft", dose=dose, id=f"draft-{name.split()[0]}")
    if text:
        d["medicationCodeableConcept"] = {"text": text}
    return d


EXAMPLES = {
    "builta-binary-only.patient-view": ("patient-view", patients.builta_binary_only, []),
    "builta-her2-low.order-select-eribulin": (
        "order-select", patients.builta_her2_low, [_draft("eribulin", text="eribulin 1.4 mg/m2 IV")]),
    "builta-after-pneumonitis.order-sign-tdxd": (
        "order-sign", patients.builta_pneumonitis, [_draft("fam-trastuzumab deruxtecan", (5.4, "mg/kg"))]),
    "bell.order-select-ribociclib": ("order-select", patients.bell, [_draft("ribociclib")]),
    "bell.order-sign-tdxd-gastric-dose": (
        "order-sign", patients.bell, [_draft("fam-trastuzumab deruxtecan", (6.4, "mg/kg"))]),
    "ultralow-hr-positive.patient-view": ("patient-view", lambda: [
        b.patient(), b.breast_cancer(), b.metastasis("bone", "2022-01-01"), b.receptor("ER", 80), b.receptor("PR", 10),
        b.her2_ihc(0, "2025-01-10", membrane="faint-le-10"),
        b.med_statement("anastrozole", "2022-02-01", "2024-12-01", status="stopped", reason="progression")], []),
    "her2-positive.patient-view": ("patient-view", patients.her2_positive, []),
    "triple-negative-her2-low.patient-view": ("patient-view", patients.triple_negative, []),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (hook, make, drafts) in EXAMPLES.items():
        body = hook_request(hook, prefetch=prefetch_from(make()), draft_orders=drafts)
        body["hookInstance"] = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        (OUT / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n", "utf-8")
        print(f"wrote hooks/examples/{name}.json")


if __name__ == "__main__":
    main()
