"""The rule set's identity: its version (on every card and in the ledger) and the source attributes that
the US ONC HTI-1 rule asks of evidence-based decision support interventions (published in discovery, from the
rows of the registry)."""

from __future__ import annotations

import copy
from typing import Any

from cds_service.facts.label import LABEL_REVISION
from cds_service.fhir.read import string
from cds_service.fhir.terminology import Terminology
from cds_service.rules.registry import TOPICS, Topic

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


def source_attributes(topics: tuple[Topic, ...] = TOPICS) -> dict[str, Any]:
    """HTI-1 source attributes (45 CFR 170.315(b)(11)) for the services that carry these card topics."""
    cited = [k for t in topics for k in t.citations]
    revisions = ", ".join(dict.fromkeys(t.label_revision for t in topics if t.label_revision))
    return {
        "ruleset_version": RULESET_VERSION,
        "label_revision": f"Enhertu prescribing information, revised {revisions}",
        "developer": "the her2-cds open-source project",
        "funding_source": "none: volunteer open-source development; no manufacturer funding",
        "intended_use": {t.code: t.intended_use for t in topics},
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


def value_set_versions(ts: Terminology) -> dict[str, str]:
    """canonical URL -> version of every ValueSet in use; a site's local files are named beside it."""
    by_id = {r["id"]: r for r in ts.resources.values() if r["resourceType"] == "ValueSet"}
    out = {r["url"]: string(r, "version") or "unversioned" for r in by_id.values()}
    for extra in ts.extras:
        out[by_id[extra.value_set]["url"]] += f" + local file {extra.path.rsplit('/', 1)[-1]} ({extra.added} codes)"
    return dict(sorted(out.items()))


def with_source_attributes(
    services: dict[str, dict[str, Any]], ts: Terminology, topics: tuple[Topic, ...] = TOPICS
) -> dict[str, dict[str, Any]]:
    """The service definitions with, as a CDS Hooks extension, the rule-set version, the value-set versions and
    the HTI-1 source attributes (a copy)."""
    out = copy.deepcopy(services)
    attributes = {**source_attributes(topics), "value_set_versions": value_set_versions(ts)}
    for svc in out.values():
        svc.setdefault("extension", {})[EXTENSION_KEY] = copy.deepcopy(attributes)
    return out
