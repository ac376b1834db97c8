"""tdxd-consideration: the DESTINY-Breast06 and DESTINY-Breast04 label pathways, criterion by criterion."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.facts.derive import Facts
from cds_service.facts.evidence import Evidence
from cds_service.facts.her2 import CATEGORY_LABEL, LOW, POSITIVE, ULTRALOW
from cds_service.facts.label import GASTRIC_DOSE, LABEL_SHORT, STARTING_DOSE
from cds_service.facts.request import RequestContext
from cds_service.facts.therapy import Line
from cds_service.fhir.primitives import fmt
from cds_service.rules.decision import CardDecision, Suggestion
from cds_service.rules.her2_rescore import IHC, ISH, service_request
from cds_service.rules.ordered import order_line

TOPIC = "tdxd-consideration"
TDXD_RXNORM = {
    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "code": "2267582",
    "display": "fam-trastuzumab deruxtecan",
}


@dataclass
class Pathway:
    """A label pathway: each criterion met (True), not met (False) or unknown (None), with why."""

    name: str
    short: str
    criteria: list[tuple[str, bool | None, str]] = field(default_factory=list)

    def add(self, label: str, state: bool | None, why: str) -> None:
        self.criteria.append((label, state, why))

    @property
    def met(self) -> bool:
        return all(s is True for _, s, _ in self.criteria)

    @property
    def failed(self) -> bool:
        return any(s is False for _, s, _ in self.criteria)

    @property
    def unknown(self) -> list[str]:
        return [f"{label}: {why}" for label, s, why in self.criteria if s is None]


Verdict = tuple[bool | None, str] | tuple[bool | None, str, str]  # met?, why (, the criterion as it was met)


@dataclass(frozen=True)
class Criterion:
    """One named criterion of a label pathway: its check says met (True), not met (False) or unknown (None), and
    why; a check that returns None does not apply to this record."""

    label: str
    check: Callable[[Facts], Verdict | None]


@dataclass(frozen=True)
class PathwayRule:
    """A label pathway as a list of named criteria, all of which must be met."""

    name: str
    short: str
    source: str
    criteria: tuple[Criterion, ...]

    def evaluate(self, facts: Facts) -> Pathway:
        p = Pathway(self.name, self.short)
        for c in self.criteria:
            verdict = c.check(facts)
            if verdict is not None:
                p.add(verdict[2] if len(verdict) == 3 else c.label, verdict[0], verdict[1])
        return p


def _her2(facts: Facts, allowed: tuple[str, ...]) -> Verdict:
    cur, earlier = facts.her2.current, facts.her2.earlier_low
    if cur is None:
        return None, "no HER2 result"
    if cur.by_notation and ULTRALOW in allowed:
        return None, (
            f'{cur.describe()}: "0+" is the 2026 consensus notation for ultralow, but older reports printed "0+" '
            "for a score of 0; ask pathology to confirm faint/incomplete membrane staining in ≤10% of cells"
        )
    if cur.by_notation:
        return False, cur.describe()
    if cur.category in allowed:
        return True, cur.describe()
    if earlier is not None and earlier.category in allowed:
        return None, (
            f"latest {cur.describe()}; earlier sample {earlier.describe()}. The label does not say which "
            "sample counts; expert consensus (ESMO 2023) accepts a HER2-low result on any sample. "
            "Consider re-testing"
        )
    return False, cur.describe()


def her2_low_or_ultralow(facts: Facts) -> Verdict:
    return _her2(facts, (LOW, ULTRALOW))


def her2_low(facts: Facts) -> Verdict:
    return _her2(facts, (LOW,))


def no_unreadable_her2(facts: Facts) -> Verdict | None:
    """A HER2 result that could not be read may be HER2-positive: the pathway cannot be called met."""
    if not facts.her2.unreadable:
        return None
    return None, (
        f"HER2 result(s) {', '.join(facts.her2.unreadable)} could not be read (not valid FHIR); check "
        "them in the pathology report"
    )


def no_erbb2_gain(facts: Facts) -> Verdict | None:
    """ERBB2 amplification by sequencing beside IHC 0-2+ is a discordance: never assertive (DESIGN §6.1)."""
    if not facts.erbb2_gain:
        return None
    return None, (
        "; ".join(e.line() for e in facts.erbb2_gain)
        + ": sequencing is not an ASCO/CAP HER2 test, but it contradicts a HER2-low/ultralow result; confirm by ISH"
    )


def hr_positive(facts: Facts) -> Verdict:
    hr = facts.hr
    return (
        {"positive": True, "negative": False}.get(hr.status),
        "; ".join(e.line() for e in hr.evidence()) or "no ER/PR result",
    )


def endocrine_progression(facts: Facts) -> Verdict:
    et = facts.therapy.metastatic("is_endocrine")
    progressed = [ln for ln in et if ln.outcome == "progressed"]
    unclear = [ln for ln in et if ln.outcome == "ended-reason-unknown"] + [
        ln for ln in facts.therapy.lines if ln.is_endocrine and ln.setting == "unknown"
    ]
    if progressed:
        return True, "; ".join(ln.describe() for ln in progressed)
    if unclear:
        return None, "progression not documented for: " + "; ".join(ln.describe() for ln in unclear)
    return False, "; ".join(ln.describe() for ln in et) or "no endocrine therapy recorded in the metastatic setting"


def metastatic_chemo(facts: Facts) -> list[Line]:
    """Chemotherapy in the advanced setting: it does not exclude DB-06 (the label does not), but the trial
    enrolled patients without it, and the card says so."""
    return facts.therapy.metastatic("is_chemo")


def prior_chemo(facts: Facts) -> Verdict:
    chemo = facts.therapy.metastatic("is_chemo")
    adj = facts.therapy.adjuvant_recurrence
    unknown_chemo = [ln for ln in facts.therapy.lines if ln.is_chemo and ln.setting == "unknown"]
    if chemo:
        return True, "; ".join(ln.describe() for ln in chemo), "prior chemotherapy in the metastatic setting"
    if adj:
        return True, adj.line(), "recurrence during or within 6 months of adjuvant chemotherapy"
    if unknown_chemo:
        return None, "setting unknown: " + "; ".join(ln.describe() for ln in unknown_chemo)
    adc = facts.therapy.metastatic("is_other_adc")
    if adc:
        return None, (
            "the only systemic therapy for advanced disease on record is a TROP2 antibody-drug conjugate ("
            + "; ".join(ln.describe() for ln in adc)
            + "); the label requires prior chemotherapy: whether this counts is not settled"
        )
    return False, "no chemotherapy in the metastatic setting and no early recurrence after adjuvant chemotherapy"


DB06 = PathwayRule(
    "DESTINY-Breast06",
    "DB-06",
    f"{LABEL_SHORT}; Bardia et al., NEJM 2024",
    (
        Criterion("HER2-low or HER2-ultralow", her2_low_or_ultralow),
        Criterion("no HER2-positive result", no_unreadable_her2),
        Criterion("no ERBB2 amplification by sequencing", no_erbb2_gain),
        Criterion("HR-positive", hr_positive),
        Criterion("progression on ≥1 endocrine therapy in the metastatic setting", endocrine_progression),
    ),
)
DB04 = PathwayRule(
    "DESTINY-Breast04",
    "DB-04",
    f"{LABEL_SHORT}; Modi et al., NEJM 2022",
    (
        Criterion("HER2-low (IHC 1+ or 2+/ISH-negative)", her2_low),
        Criterion("no HER2-positive result", no_unreadable_her2),
        Criterion("no ERBB2 amplification by sequencing", no_erbb2_gain),
        Criterion("prior chemotherapy (metastatic, or adjuvant with recurrence ≤6 months)", prior_chemo),
    ),
)
PATHWAYS = (DB06, DB04)


def db06(facts: Facts) -> Pathway:
    return DB06.evaluate(facts)


def db04(facts: Facts) -> Pathway:
    return DB04.evaluate(facts)


def pathway_criteria(facts: Facts) -> list[tuple[str, str, list[tuple[str, bool | None, str]]]]:
    """Each label pathway, whether the record meets it, and its criteria (for explain)."""
    out = []
    for p in (db06(facts), db04(facts)):
        state = "met" if p.met else ("not met" if p.failed else "not confirmed (a criterion is unknown)")
        out.append((p.name, state, list(p.criteria)))
    return out


def pathways_markdown() -> str:
    """The pathways as README shows them: each a list of named criteria, all of which must be met."""
    out = []
    for rule in PATHWAYS:
        out.append(f"**{rule.name} ({rule.short})**, {rule.source}: all of")
        out += [
            f"{i}. {c.label}"
            + (" (asked only when a HER2 result could not be read)" if c.check is no_unreadable_her2 else "")
            + (" (asked only when sequencing reports one)" if c.check is no_erbb2_gain else "")
            for i, c in enumerate(rule.criteria, 1)
        ]
        if rule is DB06:
            out.append(
                "Chemotherapy for advanced disease does not exclude DB-06 (the label does not); the card then says "
                "that DESTINY-Breast06 enrolled patients without it."
            )
        out.append("")
    out.append(
        "Never for a HER2-positive history (a positive result on any sample, a report or diagnosis stating "
        "HER2-positive disease, or HER2-directed therapy), never outside breast cancer, never after T-DXd."
    )
    return "\n".join(out).rstrip()


LINK = {"DB-06": "db06", "DB-04": "db04"}


def _why(met: list[Pathway], possible: list[Pathway], earlier: bool) -> str:
    """The card's first line: why it fired and what to consider."""
    if earlier:
        return (
            "Why: the latest HER2 result is not HER2-low, but an earlier sample was; the label does not say which "
            "sample counts. Consider re-testing, then T-DXd if HER2-low or -ultralow."
        )
    if met:
        return (
            "Why: "
            + "; ".join(f"the record meets {p.name} ({', '.join(label for label, _, _ in p.criteria)})" for p in met)
            + ". Consider T-DXd."
        )
    unknown = {p.name: ", ".join(label for label, state, _ in p.criteria if state is None) for p in possible}
    return (
        "Why: "
        + "; ".join(f"{name} may be met; not known: {labels}" for name, labels in unknown.items())
        + ". Confirm these before considering T-DXd."
    )


def _order(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [TDXD_RXNORM], "text": "trastuzumab deruxtecan (Enhertu)"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "dosageInstruction": [
            {
                "text": "5.4 mg/kg IV infusion every 3 weeks (21-day cycle) until progression or unacceptable toxicity",
                "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}},
                "route": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "47625008", "display": "Intravenous route"}]
                },
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": STARTING_DOSE,
                            "unit": "mg/kg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg/kg",
                        }
                    }
                ],
            }
        ],
    }


def why_silent(facts: Facts, request: RequestContext, cfg: Mapping[str, Any] | None = None) -> str | None:
    """Why this rule says nothing before any pathway is weighed (None: the pathways decide)."""
    if not facts.setting.in_scope:
        other = "; ".join(e.text for e in facts.setting.other_primary)
        return "no breast cancer on record" + (f" ({other})" if other else "")  # "other primary cancer: ..."
    if not facts.setting.advanced:
        return "no metastatic or unresectable disease on record"
    if facts.her2.ever_positive or facts.her2_positive_history:
        shown = facts.her2_positive_history or [
            Evidence(r.refs[0], r.when, r.describe()) for r in facts.her2.results if r.category == POSITIVE
        ]
        return (
            "HER2-positive history on record ("
            + "; ".join(e.line() for e in shown[:3])
            + "): DESTINY-Breast04/-06 enrolled only patients never HER2-positive; HER2-positive disease has its "
            "own pathways"
        )
    if facts.therapy.tdxd or facts.therapy.tdxd_active:
        return "T-DXd already given"
    if facts.her2.category not in (LOW, ULTRALOW) and facts.her2.earlier_low is None:
        return (
            f"HER2 is {CATEGORY_LABEL.get(facts.her2.category, 'unknown') if facts.her2.category else 'unknown'}, "
            "not HER2-low or -ultralow (the re-scoring card speaks when the picture is unclear)"
        )
    if request.hook != "patient-view" and request.tdxd_order():
        return "the order is T-DXd itself: the ILD monitoring card speaks instead"
    if request.hook != "patient-view" and request.systemic_order() is None:
        return "the order is not a systemic breast-cancer therapy this service recognises"
    return None


def decide(facts: Facts, request: RequestContext, cfg: Mapping[str, Any]) -> CardDecision | None:
    """The card of this topic for this chart and request (None: silent; why_silent says why)."""
    if why_silent(facts, request) is not None:
        return None
    earlier = facts.her2.earlier_low
    pathways = [db06(facts), db04(facts)]
    met = [p for p in pathways if p.met]
    possible = [p for p in pathways if not p.met and not p.failed]
    if not met and not possible:
        return None
    label = CATEGORY_LABEL[str(facts.her2.category)].split(" ")[0]
    stage = "metastatic" if facts.setting.metastatic else "unresectable"
    if earlier is not None:
        earlier_label = CATEGORY_LABEL[str(earlier.category)]
        summary = (
            f"Latest HER2 {'null' if facts.her2.category == 'null' else 'IHC 0'}, earlier sample "
            f"{earlier_label} ({fmt(earlier.when)}): T-DXd possible; consider re-testing"
        )
    elif met:
        names = " and ".join(p.short for p in met)
        summary = f"{label} {stage} breast cancer meets the T-DXd label pathway ({names}): consider T-DXd"
    else:
        summary = f"{label} {stage} breast cancer may meet a T-DXd label pathway: confirm what is unknown"
    evidence: list[str] = []
    unknowns: list[str] = []
    for p in met + possible:
        evidence.append(f"**{p.name}** {'met' if p.met else 'not confirmed'}:")
        evidence += [f"{'✔' if s else '?'} {lab}: {why}" for lab, s, why in p.criteria]
        unknowns += p.unknown
    advice = [
        _why(met, possible, earlier is not None),
        f"Dose for breast cancer: {STARTING_DOSE:g} mg/kg IV every 3 weeks ({GASTRIC_DOSE:g} mg/kg is the gastric "
        f"dose); {LABEL_SHORT}.",
        "Boxed warnings: interstitial lung disease/pneumonitis and embryo-fetal toxicity; assess LVEF before "
        "and during treatment.",
    ]
    indicator = "info"
    if facts.ild.prior_ild:
        indicator = "warning"
        advice.insert(
            1,
            "Caution: history of ILD/pneumonitis ("
            + "; ".join(e.line() for e in facts.ild.prior_ild)
            + "); such patients were excluded from DESTINY-Breast04/06.",
        )
    chemo = metastatic_chemo(facts)
    if any(p.short == "DB-06" for p in met + possible) and chemo:
        advice.insert(
            1,
            "Trial population: DESTINY-Breast06 enrolled patients without chemotherapy for advanced disease; this "
            "patient had it (" + "; ".join(ln.describe() for ln in chemo) + "). The label does not exclude them.",
        )
    if facts.erbb2_other:
        evidence.append("context: " + "; ".join(e.line() for e in facts.erbb2_other))
    order = request.systemic_order()
    if order and (line := order_line(facts, order)):
        evidence.append(line)
    evidence.append(facts.setting.describe())
    patient = request.patient_id
    return CardDecision(
        topic=TOPIC,
        reason="earlier-low" if earlier is not None else "pathway-met" if met else "pathway-possible",
        indicator=indicator,
        summary=summary,
        evidence=evidence,
        advice=advice,
        unknowns=unknowns + facts.her2.notes + facts.hr.notes + request.not_available(facts.data_notes),
        suggestions=[
            Suggestion(
                "Draft T-DXd 5.4 mg/kg IV every 3 weeks (review before signing)",
                [_order(patient)],
                recommended=False,
            )
        ]
        + (
            [Suggestion("Request HER2 re-testing of the latest sample", [service_request(facts, patient, IHC)])]
            if earlier is not None
            else [Suggestion("Request HER2 ISH on the latest sample", [service_request(facts, patient, ISH)])]
            if facts.erbb2_gain
            else []
        ),
        links=["label"] + [LINK[p.short] for p in met + possible],
        pathways=[p.short for p in met + possible],
        overrides=["already-addressed", "patient-declined", "not-a-candidate", "data-incorrect"],
    )
