"""Hormone-receptor status (DESIGN §6.2): ER/PR positive at ≥1% staining; ER-low 1-10% noted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .evidence import Evidence, effective_date, ref_of
from .terminology import Terminology, texts

_PCT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


@dataclass
class ReceptorResult:
    receptor: str  # ER | PR
    positive: bool | None
    percent: float | None
    evidence: Evidence


@dataclass
class HrStatus:
    """HR-positive / HR-negative / unknown, with the ER and PR results it stands on."""

    status: str  # positive | negative | unknown
    er: ReceptorResult | None
    pr: ReceptorResult | None
    notes: list[str] = field(default_factory=list)

    def evidence(self) -> list[Evidence]:
        return [r.evidence for r in (self.er, self.pr) if r]


def _percent(obs: dict[str, Any]) -> float | None:
    q = obs.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), (int, float)) and (
            q.get("unit") in ("%", "percent") or q.get("code") == "%"):
        return float(q["value"])
    for t in texts(obs.get("valueCodeableConcept")) + (
            [obs["valueString"]] if isinstance(obs.get("valueString"), str) else []):
        m = _PCT.search(t)
        if m:
            return float(m.group(1))
    for comp in obs.get("component") or []:
        if isinstance(comp, dict):
            q = comp.get("valueQuantity")
            if isinstance(q, dict) and isinstance(q.get("value"), (int, float)) and q.get("unit") in ("%", "percent"):
                return float(q["value"])
    return None


def read_receptor(obs: dict[str, Any], receptor: str, ts: Terminology) -> ReceptorResult | None:
    pct = _percent(obs)
    value = obs.get("valueCodeableConcept") or ({"text": obs["valueString"]}
                                                 if isinstance(obs.get("valueString"), str) else None)
    positive: bool | None = None
    if pct is not None:
        positive = pct >= 1.0
    elif ts.match("result-negative", value):
        positive = False
    elif ts.match("result-positive", value):
        positive = True
    else:
        for interp in obs.get("interpretation") or []:
            codes = {c.get("code") for c in (interp.get("coding") or []) if isinstance(c, dict)}
            positive = True if codes & {"POS"} else False if codes & {"NEG"} else positive
    if positive is None:
        return None
    label = f"{receptor} {'positive' if positive else 'negative'}" + (f" ({pct:g}%)" if pct is not None else "")
    return ReceptorResult(receptor, positive, pct, Evidence(ref_of(obs), effective_date(obs), label))


def hr_status(er_obs: list[dict[str, Any]], pr_obs: list[dict[str, Any]], ts: Terminology) -> HrStatus:
    """The latest readable ER and PR results decide; both needed to call HR-negative."""
    notes: list[str] = []

    def latest(obs_list: list[dict[str, Any]], receptor: str) -> ReceptorResult | None:
        results = []
        for o in obs_list:
            if o.get("status") in ("entered-in-error", "cancelled", "registered"):
                continue
            r = read_receptor(o, receptor, ts)
            if r is None:
                notes.append(f"{ref_of(o)}: {receptor} result could not be read")
            else:
                results.append(r)
        results.sort(key=lambda r: r.evidence.when or date.min)
        return results[-1] if results else None

    er, pr = latest(er_obs, "ER"), latest(pr_obs, "PR")
    if er and er.percent is not None and 1 <= er.percent <= 10:
        notes.append(f"ER-low ({er.percent:g}%): counted as HR-positive; endocrine sensitivity may be limited")
    if (er and er.positive) or (pr and pr.positive):
        status = "positive"
    elif er and pr:
        status = "negative"
    else:
        status = "unknown"
        missing = [n for n, r in (("ER", er), ("PR", pr)) if r is None]
        notes.append(f"no readable {' or '.join(missing)} result: hormone-receptor status unknown")
    return HrStatus(status, er, pr, notes)
