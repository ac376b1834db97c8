"""What a rule decides: a card's content before it becomes CDS Hooks JSON (no uuids, no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# each card's reason code, by topic, in words (the sweep's worklist and its documentation read them)
REASONS = {
    "no-result": "no HER2 result on record",
    "binary-only": "HER2 reported only as negative, no IHC score",
    "zero-unspecified": "IHC 0 without a membrane-staining statement (null vs ultralow)",
    "indeterminate": "IHC 2+ without ISH",
    "ish-unreadable": "ISH result cannot be interpreted as reported",
    "inconsistent": "IHC 0 with staining in more than 10% of cells (contradictory)",
    "stale": "HER2 result old, or from the primary tumour only",
    "unreadable": "a HER2 result is not valid FHIR and could not be read",
    "pathway-met": "a T-DXd label pathway is met",
    "pathway-possible": "a T-DXd label pathway may be met: a criterion is unknown",
    "earlier-low": "latest HER2 0/null, an earlier sample HER2-low/ultralow",
    "discontinue": "grade 2 or higher ILD/pneumonitis on T-DXd: discontinue",
    "ild-event": "ILD/pneumonitis recorded since starting T-DXd",
    "dose": "T-DXd dose not allowed by the label here",
    "symptoms": "new respiratory symptoms on T-DXd",
    "imaging-overdue": "chest imaging overdue on T-DXd",
    "baseline": "starting T-DXd: baseline ILD work-up",
    "not-evaluated": "the service could not evaluate this topic",
}


@dataclass
class Suggestion:
    """Resources to create, drafted orders to update (whole resource) or delete (by reference)."""

    label: str
    resources: list[dict[str, Any]]
    recommended: bool | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


@dataclass
class CardDecision:
    """One card: topic, indicator, a summary under 140 characters, evidence and unknowns."""

    topic: str
    indicator: str
    summary: str
    evidence: list[str]
    unknowns: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    selection: str = "at-most-one"
    links: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    pathways: list[str] = field(default_factory=list)  # the label pathways the card names (DB-06, DB-04)
    reason: str = ""  # why the card, as a code (a worklist column; not shown on the card): REASONS


def not_evaluated(topic: str, label: str) -> CardDecision:
    """The card that stands in for a topic (label: its name) whose derivation failed (no internal detail)."""
    return CardDecision(
        topic=topic,
        indicator="info",
        summary=f"her2-cds could not evaluate {label} for this patient: review it yourself",
        reason="not-evaluated",
        evidence=[],
        unknowns=[
            f"the service could not evaluate {label} for this request; the other "
            "checks ran. The failure was recorded for the service team."
        ],
    )
