"""The rule set's identity: its version (on every card and in the ledger) and the source attributes that
the US ONC HTI-1 rule asks of evidence-based decision support interventions (published in discovery)."""

from __future__ import annotations

from typing import Any

from cds_service.facts.label import LABEL_REVISION

RULESET_VERSION = "2026.12.0"
LAST_CLINICAL_REVIEW = "2026-12-05"
EXTENSION_KEY = "her2-cds.org/source-attributes"

CITATIONS = {
    "label": "ENHERTU (fam-trastuzumab deruxtecan-nxki) prescribing information. Daiichi Sankyo / AstraZeneca; "
    f"FDA BLA 761139; revised {LABEL_REVISION}.",
    "db06": "Bardia A, et al. Trastuzumab deruxtecan after endocrine therapy in metastatic breast cancer "
    "(DESTINY-Breast06). N Engl J Med 2024;391:2110-2122. doi:10.1056/NEJMoa2407086",
    "db04": "Modi S, et al. Trastuzumab deruxtecan in previously treated HER2-low advanced breast cancer "
    "(DESTINY-Breast04). N Engl J Med 2022;387:9-20. doi:10.1056/NEJMoa2203690",
    "asco_cap": "Wolff AC, et al. Human epidermal growth factor receptor 2 testing in breast cancer: ASCO-College "
    "of American Pathologists guideline update. J Clin Oncol 2023;41:3867-3872. "
    "doi:10.1200/JCO.22.02864",
    "esmo": "Tarantino P, et al. ESMO expert consensus statements on the definition, diagnosis, and management of "
    "HER2-low breast cancer. Ann Oncol 2023;34:645-659. doi:10.1016/j.annonc.2023.05.008",
}

RULES = {
    "her2-rescore": {
        "citations": ["asco_cap", "esmo", "label"],
        "intended_use": "Prompt HER2 IHC re-scoring or reflex ISH when a metastatic breast cancer's HER2 "
        "report cannot tell HER2-low, -ultralow and -null apart.",
    },
    "tdxd-consideration": {
        "citations": ["label", "db06", "db04", "esmo"],
        "intended_use": "Point out that the record meets (or may meet) a T-DXd label pathway "
        "for HER2-low or -ultralow metastatic breast cancer.",
    },
    "ild-monitoring": {
        "citations": ["label"],
        "intended_use": "Beside every T-DXd order (any HER2 status, setting or tumour): before the first dose the "
        "baseline work-up; on continuing therapy ILD/pneumonitis or symptoms since the first dose, chest imaging "
        "overdue, the label's ILD table and the breast-cancer dose levels (no re-escalation after a reduction).",
    },
}


def source_attributes(topics: list[str]) -> dict[str, Any]:
    """HTI-1 source attributes (45 CFR 170.315(b)(11)) for the services that carry these card topics."""
    cited = [k for t in topics for k in RULES[t]["citations"]]
    return {
        "ruleset_version": RULESET_VERSION,
        "label_revision": f"Enhertu prescribing information, revised {LABEL_REVISION}",
        "developer": "the her2-cds open-source project",
        "funding_source": "none: volunteer open-source development; no manufacturer funding",
        "intended_use": {t: RULES[t]["intended_use"] for t in topics},
        "intended_population": "Adults with metastatic (stage IV or recurrent distant) or unresectable breast cancer; "
        "for the ILD monitoring card, every adult with a T-DXd order.",
        "intended_users": "Oncologists, oncology pharmacists and pathologists, at order entry or chart review.",
        "cautions": [
            "Advisory only: every card is a prompt for clinical judgement, never an order.",
            "Reads the coded and free-text data the EHR sends; missing or miscoded data are named on the card, "
            "and a HER2 category is never guessed.",
            "The HER2 re-scoring and T-DXd consideration cards are not validated for HER2-positive disease, early "
            "breast cancer or other tumour types; the ILD monitoring card serves every T-DXd order.",
            "Derived from trials and label text as of the last clinical review date; check the current label.",
        ],
        "citations": [CITATIONS[k] for k in dict.fromkeys(cited)],
        "last_clinical_review": LAST_CLINICAL_REVIEW,
    }
