"""Every guideline threshold the facts and rules use, in one place, each with its source. README's "Clinical
rules" section shows this table (a test keeps the two in step). Thresholds a site may change (the eGFR under which
renal function is an ILD risk factor, the age of a stale HER2 result) are settings in defaults.yaml instead."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts.label import LABEL_SHORT, STARTING_DOSE

ASCO_CAP_HER2 = "ASCO/CAP HER2 testing guideline 2018 (Wolff et al., J Clin Oncol 2018;36:2105), unchanged in 2023"
ASCO_CAP_ER = "ASCO/CAP ER/PgR testing guideline 2020 (Allison et al., J Clin Oncol 2020;38:1346)"
LABEL = LABEL_SHORT
DESIGN = "her2-cds DESIGN §6 (a working rule of this service, not a guideline)"


@dataclass(frozen=True)
class Threshold:
    """A number a rule compares with, what it means, and where it comes from."""

    value: float
    unit: str
    meaning: str
    source: str


ISH_RATIO = Threshold(2.0, "HER2/CEP17", "dual-probe ISH ratio: ≥2.0 is groups 1-2, <2.0 groups 3-5", ASCO_CAP_HER2)
ISH_COPIES_LOW = Threshold(4.0, "copies/cell", "HER2 copies per cell: <4.0 is group 2 or 5", ASCO_CAP_HER2)
ISH_COPIES_HIGH = Threshold(
    6.0, "copies/cell", "HER2 copies per cell: ≥6.0 is group 3 (single probe: amplified)", ASCO_CAP_HER2
)
ULTRALOW_MAX = Threshold(
    10.0,
    "% of cells",
    "IHC 0 with faint/incomplete membrane staining in at most this share is HER2-ultralow; more would be IHC 1+",
    f"{LABEL}; DESTINY-Breast06",
)
RECEPTOR_POSITIVE = Threshold(1.0, "% of nuclei", "ER or PR staining at or above this is positive", ASCO_CAP_ER)
ER_LOW_MAX = Threshold(10.0, "% of nuclei", "ER 1-10% is ER-low positive (said on the card)", ASCO_CAP_ER)
ADJUVANT_RECURRENCE = Threshold(
    183,
    "days",
    "DB-04: recurrence during or within 6 months of completing adjuvant chemotherapy",
    f"{LABEL}; DESTINY-Breast04",
)
ILD_DISCONTINUE_GRADE = Threshold(
    2,
    "CTCAE grade",
    "ILD/pneumonitis of this grade or higher: discontinue T-DXd permanently (grade 1: interrupt)",
    LABEL,
)
TDXD_ILD_WINDOW = Threshold(
    91,
    "days",
    "ILD/pneumonitis from the first T-DXd dose to 3 months after the last is T-DXd-associated",
    "her2-cds DESIGN §6.5, after the label's ILD section",
)
TDXD_BREAST_DOSE = Threshold(
    STARTING_DOSE, "mg/kg", "T-DXd dose for breast cancer, every 3 weeks (6.4 mg/kg is the gastric cancer dose)", LABEL
)
PROGRESSION_AFTER_END = Threshold(
    90, "days", "progression documented up to this long after a line ended counts for that line", DESIGN
)
EPISODE_GAP = Threshold(90, "days", "records of one drug closer than this form one episode", DESIGN)
COMBINATION = Threshold(45, "days", "drugs started within this of each other form one regimen line", DESIGN)
PAIR_ISH = Threshold(
    60, "days", "an ISH-only result joins the IHC result of the same site up to this much earlier", DESIGN
)
NEW_LINE_GRACE = Threshold(
    30,
    "days",
    "a progression recorded this soon after a line started, and within PROGRESSION_AFTER_END of the line before "
    "ended, is that earlier line's (the new line replaced it)",
    DESIGN,
)
TDXD_ACTIVE = Threshold(
    42,
    "days",
    "T-DXd counts as active (patient-view ILD card, no T-DXd suggestion) while its last dose is this recent: two "
    "3-weekly cycles",
    DESIGN,
)

ALL = {
    "ISH_RATIO": ISH_RATIO,
    "ISH_COPIES_LOW": ISH_COPIES_LOW,
    "ISH_COPIES_HIGH": ISH_COPIES_HIGH,
    "ULTRALOW_MAX": ULTRALOW_MAX,
    "RECEPTOR_POSITIVE": RECEPTOR_POSITIVE,
    "ER_LOW_MAX": ER_LOW_MAX,
    "ADJUVANT_RECURRENCE": ADJUVANT_RECURRENCE,
    "ILD_DISCONTINUE_GRADE": ILD_DISCONTINUE_GRADE,
    "TDXD_ILD_WINDOW": TDXD_ILD_WINDOW,
    "TDXD_BREAST_DOSE": TDXD_BREAST_DOSE,
    "PROGRESSION_AFTER_END": PROGRESSION_AFTER_END,
    "EPISODE_GAP": EPISODE_GAP,
    "COMBINATION": COMBINATION,
    "PAIR_ISH": PAIR_ISH,
    "NEW_LINE_GRACE": NEW_LINE_GRACE,
    "TDXD_ACTIVE": TDXD_ACTIVE,
}


def table_markdown() -> str:
    """The thresholds as README shows them."""
    rows = ["| threshold | value | meaning | source |", "|---|---|---|---|"]
    rows += [f"| `{name}` | {t.value} {t.unit} | {t.meaning} | {t.source} |" for name, t in ALL.items()]
    return "\n".join(rows)
