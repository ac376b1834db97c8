"""The Enhertu label as data: its revision, the dose levels for breast cancer and the ILD management table.

A change of label is a change of this module and of its tests (DESIGN §6, "Clinical knowledge is versioned
data"), never a number edited in passing elsewhere. `her2-cds knowledge` prints it for a clinical reviewer."""

from __future__ import annotations

from dataclasses import dataclass

LABEL_NAME = "FDA Enhertu (fam-trastuzumab deruxtecan-nxki) prescribing information, BLA 761139"
LABEL_REVISION = "May 2026"
LABEL = f"{LABEL_NAME}, revised {LABEL_REVISION}"
LABEL_SHORT = f"Enhertu label ({LABEL_REVISION})"
# what the May 2026 revision covers in breast cancer (DESIGN §6 sources)
BREAST_INDICATIONS = (
    "DB-03: unresectable or metastatic HER2-positive, after a prior anti-HER2 regimen",
    "DB-09: first-line unresectable or metastatic HER2-positive, with pertuzumab (Dec 2025)",
    "DB-11 / DB-05: HER2-positive early breast cancer, neoadjuvant and adjuvant (May 2026)",
    "DB-04: unresectable or metastatic HER2-low, after chemotherapy in the metastatic setting or recurrence "
    "during or within 6 months of adjuvant chemotherapy",
    "DB-06: unresectable or metastatic HR-positive, HER2-low or HER2-ultralow, progressed on one or more "
    "endocrine therapies in the metastatic setting",
)


@dataclass(frozen=True)
class DoseLevel:
    """One level of the label's dose-reduction schedule for breast cancer."""

    mg_per_kg: float
    name: str


# label section 2 (dose modifications), breast cancer of any HER2 status: 5.4 -> 4.4 -> 3.2; a further reduction
# needed means discontinue; do not re-escalate after a dose reduction
DOSE_LEVELS = (
    DoseLevel(5.4, "starting dose"),
    DoseLevel(4.4, "first dose reduction"),
    DoseLevel(3.2, "second dose reduction"),
)
STARTING_DOSE = DOSE_LEVELS[0].mg_per_kg
LOWEST_LEVEL = DOSE_LEVELS[-1].mg_per_kg
GASTRIC_DOSE = 6.4  # gastric / GEJ adenocarcinoma: not a breast-cancer level
DOSE_TOLERANCE = 0.05  # mg/kg: a drafted dose within this of a level is that level (EHRs round to 0.1)
DOSE_RULES = (
    "Breast cancer, every HER2 status: 5.4 mg/kg IV every 3 weeks; dose reductions to 4.4 mg/kg, then 3.2 mg/kg.",
    "If a further dose reduction is needed below 3.2 mg/kg: discontinue.",
    "Do not re-escalate the dose after a dose reduction is made.",
    "6.4 mg/kg is the gastric cancer dose, not a breast-cancer level.",
)


def within(dose: float, level: float) -> bool:
    """dose is level, within the tolerance (compared in millionths: 3.2 - 0.05 is 3.1500000000000004 in floating
    point, which made 3.15 both "3.2 mg/kg" and "below 3.2 mg/kg")."""
    return round(abs(dose - level), 6) <= DOSE_TOLERANCE


def below(dose: float, level: float) -> bool:
    """dose is lower than level by more than the tolerance."""
    return round(level - dose, 6) > DOSE_TOLERANCE


def level_of(dose: float) -> DoseLevel | None:
    """The label level a dose is (within the tolerance), or None."""
    return next((lv for lv in DOSE_LEVELS if within(dose, lv.mg_per_kg)), None)


def one_level_below(dose: float) -> float | None:
    """The next lower label level (None: below the lowest level the label says discontinue)."""
    lower = [lv.mg_per_kg for lv in DOSE_LEVELS if below(lv.mg_per_kg, dose)]
    return max(lower) if lower else None


@dataclass(frozen=True)
class IldRow:
    """One row of the label's ILD/pneumonitis management table."""

    grade: str
    action: str


ILD_RESOLVED_WITHIN_DAYS = 28  # grade 1 resolved within this many days of onset: same dose; later: one level lower
ILD_TABLE = (
    IldRow(
        "Asymptomatic ILD/pneumonitis (grade 1)",
        "Interrupt T-DXd until resolved to grade 0. If resolved in 28 days or less from the date of onset, "
        "maintain the dose; if resolved in more than 28 days from the date of onset, reduce the dose one level. "
        "Consider corticosteroid treatment as soon as ILD/pneumonitis is suspected (e.g. ≥0.5 mg/kg/day "
        "prednisolone or equivalent).",
    ),
    IldRow(
        "Symptomatic ILD/pneumonitis (grade 2 or greater)",
        "Permanently discontinue T-DXd. Promptly initiate systemic corticosteroid treatment as soon as "
        "ILD/pneumonitis is suspected (e.g. ≥1 mg/kg/day prednisolone or equivalent) and continue for at least "
        "14 days, followed by a gradual taper for at least 4 weeks.",
    ),
)
ILD_MONITORING = (
    "Before the first dose: baseline chest imaging (CT) and pulse oximetry.",
    "Monitor for signs and symptoms of ILD/pneumonitis (cough, dyspnoea, fever, other new or worsening "
    "respiratory symptoms) and evaluate promptly; teach the patient to report them at once.",
)


def ild_table_lines() -> list[str]:
    """The label's ILD table, one line per grade, as the card's advice shows it."""
    return [f"Label ILD rules — {row.grade}: {row.action}" for row in ILD_TABLE]


def knowledge_markdown() -> str:
    """The label knowledge as a clinical reviewer reads it."""
    out = [f"Source: {LABEL}.", "", "Breast-cancer indications in this revision:"]
    out += [f"- {line}" for line in BREAST_INDICATIONS]
    out += ["", "| dose level | mg/kg |", "|---|---|"]
    out += [f"| {lv.name} | {lv.mg_per_kg:g} |" for lv in DOSE_LEVELS]
    out += ["", *(f"- {rule}" for rule in DOSE_RULES), "", "| ILD/pneumonitis | label action |", "|---|---|"]
    out += [f"| {row.grade} | {row.action} |" for row in ILD_TABLE]
    out += ["", *(f"- {line}" for line in ILD_MONITORING)]
    return "\n".join(out)
