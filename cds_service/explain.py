"""Why the service said what it said: the derived facts, each rule's verdict criterion by criterion, and the
codings that matched no value set. For `evaluate --explain` and the operator-only explain route; it holds
patient data, so it is never logged and never sent to an EHR."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cds_service.config import CardSettings
from cds_service.facts.derive import Facts
from cds_service.facts.her2 import CATEGORY_LABEL
from cds_service.facts.request import RequestContext
from cds_service.fhir.inert import one_line
from cds_service.fhir.primitives import fmt
from cds_service.fhir.terminology import Terminology, codings
from cds_service.rules.registry import TOPICS, Topic, topic_settings

MED = ("medicationCodeableConcept",)
CODED_FIELDS = {
    "Observation": ("code",),
    "Condition": ("code",),
    "Procedure": ("code",),
    "Medication": ("code",),
    "MedicationRequest": MED,
    "MedicationStatement": MED,
    "MedicationAdministration": MED,
}
MARK = {True: "✔", False: "✘", None: "?"}


def _facts(f: Facts, request: RequestContext) -> dict[str, list[str]]:
    her2 = f.her2
    current = her2.current
    out = {
        "HER2": [
            f"current: {current.describe() if current else 'no readable result'}"
            + (f" → {CATEGORY_LABEL.get(current.category, current.category)}" if current and current.category else "")
        ]
        + [f"history: {r.describe()}" for r in reversed(her2.results)]
        + (["ever HER2-positive"] if her2.ever_positive else [])
        + (["discordant results"] if her2.discordant else [])
        + ([f"earlier HER2-low/ultralow sample: {her2.earlier_low.describe()}"] if her2.earlier_low else [])
        + [f"not readable: {ref}" for ref in her2.unreadable]
        + [f"note: {n}" for n in her2.notes],
        "HR": [f"status: {f.hr.status}"] + [e.line() for e in f.hr.evidence()] + [f"note: {n}" for n in f.hr.notes],
        "Setting": [f"metastatic: {'yes, since ' + fmt(f.setting.start) if f.setting.metastatic else 'no'}"]
        + [e.line() for e in f.setting.evidence]
        + [f"breast cancer: {e.line()}" for e in f.setting.breast_cancer]
        + [f"lung metastasis: {e.line()}" for e in f.setting.lung_metastases]
        + [f"note: {n}" for n in f.setting.notes],
        "Lines of therapy": [ln.describe() for ln in f.therapy.lines] or ["none recorded"],
        "Chemotherapy": [ln.describe() for ln in f.therapy.lines if ln.is_chemo] or ["none recorded"],
        "ILD risk": [f"factor: {e.line()}" for e in f.ild.factors]
        + [f"T-DXd-associated ILD grade ≥2: {e.line()}" for e in f.ild.tdxd_ild_grade2plus]
        + ([f"eGFR: {f.ild.egfr.evidence.line()}"] if f.ild.egfr else [])
        + [f"note: {n}" for n in f.ild.notes]
        or ["no risk factor recorded"],
        "Orders in the request": [
            f"{d.ref}: {d.drug.canonical if d.drug else 'drug not recognised'}"
            + (f", {d.dose_mg_per_kg:g} mg/kg" if d.dose_mg_per_kg is not None else "")
            for d in request.drafts
        ]
        or ["none"],
    }
    if f.therapy.adjuvant_recurrence:
        out["Chemotherapy"].append(f"recurrence after adjuvant chemotherapy: {f.therapy.adjuvant_recurrence.line()}")
    if request.unavailable:
        out["Data not available"] = [f"{k}: {v}" for k, v in sorted(request.unavailable.items())]
    if request.set_aside or f.data_notes:
        out["Records set aside"] = list(request.set_aside) + list(f.data_notes)
    return out


def _verdicts(
    f: Facts, request: RequestContext, cards_cfg: CardSettings, topics: tuple[Topic, ...]
) -> dict[str, list[str]]:
    """Each topic's verdict, as the registry lists them: why it is silent, or that it has a card; the T-DXd
    pathways criterion by criterion."""
    out: dict[str, list[str]] = {}
    for topic in topics:
        settings = topic_settings(topic, cards_cfg.topics)
        silent = topic.why_silent(f, request, settings.options)
        lines = [f"no card: {silent}"] if silent else [f"card: {topic.has_card}"] if topic.has_card else []
        if topic.criteria is not None:
            for name, state, criteria in topic.criteria(f):
                lines.append(f"{name}: {state}")
                lines += [f"  {MARK[s]} {label}: {why}" for label, s, why in criteria]
        if not settings.enabled:
            lines.insert(0, f"switched off in the configuration (cards.{topic.config_key}.enabled: false)")
        out[topic.label] = lines
    return out


def unmatched_codings(resources: list[dict[str, Any]], ts: Terminology) -> list[str]:
    """Every coding of a resource's main concept that is in no value set (a local code to map), with how
    many resources carry it."""
    seen: Counter[str] = Counter()
    for res in resources:
        for name in CODED_FIELDS.get(str(res.get("resourceType")), ()):
            for c in codings(res.get(name)):
                system, code = c.get("system"), c.get("code")
                if not isinstance(system, str) or not isinstance(code, str):
                    continue
                if any(vs.match_coding(system, code) is not None for vs in ts.sets.values()):
                    continue
                seen[
                    f"{res['resourceType']}.{name}: {system}|{code}"
                    + (f' "{c["display"]}"' if isinstance(c.get("display"), str) else "")
                ] += 1
    return [f"{k} ({n}×)" if n > 1 else k for k, n in sorted(seen.items())]


def nothing_drafted() -> dict[str, Any]:
    """The explanation of an order-select with no drafted medication yet."""
    return {
        "facts": {},
        "unmatched_codings": [],
        "rules": {"all": ["order-select with no drafted medication: nothing is evaluated"]},
    }


def explain(
    facts: Facts | None,
    request: RequestContext,
    cards_cfg: CardSettings,
    resources: list[dict[str, Any]],
    ts: Terminology,
    topics: tuple[Topic, ...] = TOPICS,
) -> dict[str, Any]:
    """The whole explanation as plain data (JSON-ready)."""
    if facts is None:
        out: dict[str, Any] = {
            "facts": {},
            "rules": {"all": ["the facts could not be derived for this request"]},
            "unmatched_codings": unmatched_codings(resources, ts),
        }
    else:
        out = {
            "facts": _facts(facts, request),
            "rules": _verdicts(facts, request, cards_cfg, topics),
            "unmatched_codings": unmatched_codings(resources, ts),
        }
    return _plain(out)


def _plain(value: Any) -> Any:
    """Every string one plain line (record text reaches a terminal or an operator's screen: no escape sequence,
    newline or bidi override from a record)."""
    if isinstance(value, str):
        return one_line(value, 2000)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def render(explanation: dict[str, Any]) -> str:
    """The explanation as text for a terminal."""
    out = ["== Facts"]
    for section, lines in explanation["facts"].items():
        out.append(f"{section}:")
        out += [f"    {line}" for line in lines]
    out.append("== Rules")
    for topic, lines in explanation["rules"].items():
        out.append(f"{topic}:")
        out += [f"    {line}" for line in lines]
    out.append("== Codings in no value set (map them with value_sets.extra_files)")
    out += [f"    {line}" for line in explanation["unmatched_codings"]] or ["    none"]
    return "\n".join(out)
