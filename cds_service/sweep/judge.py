"""Pass 3: each patient of a partition judged as a patient-view request would be, by the engine the hooks use
(gathered, bound to the patient, facts derived, each topic decided; nothing held back, nothing recorded), into a
worklist row when a card would be shown."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from cds_service.config import Settings
from cds_service.engine import Engine, Judged
from cds_service.facts.derive import Facts
from cds_service.facts.request import RequestContext
from cds_service.gather.binding import expected_types, search_type
from cds_service.rules.registry import TOPICS
from cds_service.sweep.shuffle import joined_refs
from cds_service.sweep.tally import Tally

HOOK = "patient-view"
SWEEP_USER = "Device/her2-cds-sweep"  # who "opens the chart": the sweep itself
_ENGINES: dict[bytes, Engine] = {}  # one per settings in each worker process


@dataclass
class Judgement:
    """What judging one partition gave: the worklist rows, and its counts."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def engine_for(settings: Settings) -> Engine:
    """The engine of this process for these settings (built once: value sets, models and rules are warm after)."""
    key = orjson.dumps(settings.data, option=orjson.OPT_SORT_KEYS)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = Engine(settings)
    return engine


def judge_partition(files: list[Path], settings: Settings, today: date) -> Judgement:
    """Every patient of one partition (the files of pass 2 that hold it), in patient-id order."""
    engine = engine_for(settings)
    service = next(s for s in engine.services.values() if s["hook"] == HOOK)
    keys = _key_by_type(service.get("prefetch", {}))
    patients: dict[str, list[bytes]] = defaultdict(list)
    joined: dict[str, bytes] = {}
    for path in files:
        for line in path.read_bytes().splitlines():
            head, _, resource = line.partition(b"\t")
            if head.startswith(b"@"):
                joined[head[1:].decode()] = resource
            else:
                patients[head.decode()].append(resource)
    out = Judgement()
    for pid in sorted(patients):
        resources = [orjson.loads(x) for x in patients.pop(pid)]
        resources += _joined_for(resources, joined)
        row = judge_patient(engine, service, keys, pid, resources, today, out.tally)
        if row is not None:
            out.rows.append(row)
    return out


def _joined_for(resources: list[dict[str, Any]], joined: dict[str, bytes]) -> list[dict[str, Any]]:
    """The Medications and Specimens these records reference (what `_include` would bring)."""
    wanted = dict.fromkeys(ref for r in resources for ref in joined_refs(r) if ref in joined)
    return [orjson.loads(joined[ref]) for ref in wanted]


def _key_by_type(templates: dict[str, str]) -> dict[str, str]:
    """The prefetch key each resource type goes under: the first key that searches for it, else the first that
    `_include`s it (as a FHIR server answering the service's prefetch templates would deliver it)."""
    keys: dict[str, str] = {}
    for key, template in templates.items():
        if (rtype := search_type(template)) is not None:
            keys.setdefault(rtype, key)
    for key, template in templates.items():
        for rtype in expected_types(template):
            keys.setdefault(rtype, key)
    return keys


def patient_view(
    pid: str, resources: list[dict[str, Any]], templates: dict[str, str], keys: dict[str, str]
) -> dict[str, Any]:
    """The patient-view request an EHR would send for this patient with every prefetch key filled (keys: the key
    of each resource type, `_key_by_type(templates)`)."""
    by_key: dict[str, list[dict[str, Any]]] = {key: [] for key in templates}
    patient = None
    for r in resources:
        rtype = r["resourceType"]
        if rtype == "Patient":
            patient = r
        elif rtype in keys:
            by_key[keys[rtype]].append(r)
    prefetch: dict[str, Any] = {
        key: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}
        for key, rs in by_key.items()
    }
    prefetch[keys.get("Patient", "patient")] = patient
    return {
        "hook": HOOK,
        "hookInstance": f"sweep-{pid}",
        "context": {"userId": SWEEP_USER, "patientId": pid},
        "prefetch": prefetch,
    }


def judge_patient(
    engine: Engine,
    service: dict[str, Any],
    keys: dict[str, str],
    pid: str,
    resources: list[dict[str, Any]],
    today: date,
    tally: Tally,
) -> dict[str, Any] | None:
    """One patient judged; the worklist row when a card would be shown (None: nothing to do)."""
    body = patient_view(pid, resources, service.get("prefetch", {}), keys)
    request = RequestContext.of(HOOK, body["context"], engine.terminology)
    judged = engine.judge(service, body, request, today=today)
    tally.add("patients")
    tally.add("resources", n=len(resources))
    facts = judged.chart.facts
    patient = body["prefetch"].get(keys.get("Patient", "patient"))
    if patient is None:
        tally.add("patients-without-patient-record", n=1)
    if facts is None:
        tally.add("patients-not-evaluated", f"Patient/{pid}")
    else:
        tally.add("records-set-aside", n=len(facts.data_notes))
    shown = [d for d in judged.decided if d.mode == "live"]
    for d in judged.decided:
        tally.add(f"card:{d.decision.topic}:{d.decision.reason or 'none'}" + (":shadow" if d.mode == "shadow" else ""))
    if not shown:
        return None
    tally.add("rows")
    return row_of(pid, patient, facts, judged, shown)


def row_of(
    pid: str, patient: dict[str, Any] | None, facts: Facts | None, judged: Judged, shown: list[Any]
) -> dict[str, Any]:
    """A worklist row: who, what is needed and why, and the evidence it rests on."""
    by_topic = {d.decision.topic: d for d in shown}
    row: dict[str, Any] = {
        "patient_id": pid,
        "mrn": _mrn(patient),
        "name": _name(patient),
        "birth_date": patient.get("birthDate", "") if isinstance(patient, dict) else "",
        "patient_record": "in export" if patient is not None else "not in export",
        "needs": "; ".join(t.label for t in TOPICS if t.code in by_topic),
    }
    for t in TOPICS:
        d = by_topic.get(t.code)
        row[f"{t.config_key}_reason"] = d.decision.reason if d else ""
        row[f"{t.config_key}_summary"] = d.decision.summary if d else ""
    tdxd = next((d for d in shown if d.decision.pathways), None)
    row["tdxd_pathways"] = ", ".join(tdxd.decision.pathways) if tdxd else ""
    row.update(_picture(facts))
    row["unknowns"] = " | ".join(dict.fromkeys(u for d in shown for u in d.decision.unknowns))
    row["evidence"] = " | ".join(dict.fromkeys(e for d in shown for e in d.decision.evidence))
    row["cards"] = [
        {
            "topic": d.decision.topic,
            "indicator": d.card["indicator"],
            "summary": d.card["summary"],
            "detail": d.card.get("detail", ""),
            "reason": d.decision.reason,
        }
        for d in shown
    ]
    return row


def _picture(facts: Facts | None) -> dict[str, Any]:
    """The HER2 result, HR status, setting and lines the cards rest on."""
    if facts is None:
        return dict.fromkeys(("her2_latest", "her2_date", "her2_sample", "hr_status", "setting", "endocrine_lines",
                              "chemotherapy_lines", "records_set_aside"), "")  # fmt: skip
    cur = facts.her2.current
    metastatic = [ln for ln in facts.therapy.lines if ln.setting == "metastatic"]
    return {
        "her2_latest": cur.describe() if cur else "no HER2 result",
        "her2_date": cur.when.isoformat() if cur and cur.when else "",
        "her2_sample": (cur.site or cur.site_kind) if cur else "",
        "hr_status": facts.hr.status,
        "setting": facts.setting.describe(),
        "endocrine_lines": " | ".join(ln.describe() for ln in metastatic if ln.is_endocrine),
        "chemotherapy_lines": " | ".join(ln.describe() for ln in metastatic if ln.is_chemo),
        "records_set_aside": len(facts.data_notes),
    }


def _mrn(patient: dict[str, Any] | None) -> str:
    """The medical record number (identifier typed MR), else the first identifier's value."""
    found = (patient or {}).get("identifier") or []
    ids = [i for i in found if isinstance(i, dict) and isinstance(i.get("value"), str)]
    for i in ids:
        codings = (i.get("type") or {}).get("coding") or [] if isinstance(i.get("type"), dict) else []
        if any(isinstance(c, dict) and c.get("code") == "MR" for c in codings):
            return str(i["value"])
    return str(ids[0]["value"]) if ids else ""


def _name(patient: dict[str, Any] | None) -> str:
    names = [n for n in (patient or {}).get("name") or [] if isinstance(n, dict)]
    if not names:
        return ""
    n = names[0]
    if isinstance(n.get("text"), str):
        return n["text"]
    given = [g for g in n.get("given") or [] if isinstance(g, str)]
    return " ".join([*given, n["family"]] if isinstance(n.get("family"), str) else given)
