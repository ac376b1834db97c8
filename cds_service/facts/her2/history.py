"""HER2-positive history (DESIGN §6.1): a positive result on any sample, a report or diagnosis stating a
HER2-positive (3+, amplified) tumour, or exposure to HER2-directed therapy (T-DXd itself proves nothing). Any of
them closes the HER2-low/-ultralow pathways: DESTINY-Breast04/-06 enrolled only patients never HER2-positive."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from cds_service.facts.evidence import Evidence
from cds_service.facts.her2.model import POSITIVE, Her2Picture
from cds_service.fhir.primitives import effective_date, ref_of
from cds_service.fhir.read import items, string
from cds_service.fhir.terminology import codings, texts

_HER2 = r"(?:her-?2(?:/neu)?|erbb-?2|c-?erbb-?2)"
# "HER2-positive", "HER2 +", "HER2: 3+", "HER2 (IHC) 3+", "HER2 amplified", "HER2 overexpressed"; not "HER2 2+",
# "HER2 not amplified", "HER2-low", "HER2 negative"
POSITIVE_STATEMENT = re.compile(
    _HER2 + r"\s*(?:\(\s*(?:ihc|fish|ish)\s*\))?\s*[:=\-]?\s*(?:"
    r"positive|pos\b|\+(?![\d+])|\(\s*\+\s*\)|(?:ihc\s*|score\s*(?:of\s*)?)?3\s*\+"
    r"|amplified|over-?expressed|over-?expression)",
    re.I,
)
_NEGATED = re.compile(
    r"(?:\bno|\bnot|\bnever|\bwithout|\bnegative for|\bruled out|\bnon|\brule out|\bexclude[sd]?)(?:\s+\S+){0,3}\s*$",
    re.I,
)


def positive_statements(text: str) -> list[str]:
    """The phrases of a text that state a HER2-positive tumour (not negated, not a question of "HER2 2+")."""
    out = []
    for m in POSITIVE_STATEMENT.finditer(text):
        before = text[max(0, m.start() - 40) : m.start()]
        if not _NEGATED.search(before) and not re.match(r"\s*(?:or|/)\s*neg", text[m.end() : m.end() + 8], re.I):
            out.append(text[max(0, m.start() - 20) : m.end() + 20].strip())
    return out


def positive_history(
    picture: Her2Picture,
    reports: Iterable[tuple[dict[str, Any], str]],
    diagnoses: Iterable[Evidence],
    her2_directed: Iterable[tuple[str, date | None, str]],
) -> list[Evidence]:
    """Every piece of evidence of a HER2-positive history, oldest first."""
    found = [
        Evidence(r.refs[0], r.when, f"HER2-positive result: {r.describe()}")
        for r in picture.results
        if r.category == POSITIVE
    ]
    for report, text in reports:
        phrases = positive_statements(text)
        if phrases:
            found.append(
                Evidence(ref_of(report), effective_date(report), f'report text states HER2-positive: "{phrases[0]}"')
            )
    found += list(diagnoses)
    found += [Evidence(ref, when, f"HER2-directed therapy: {drug}") for ref, when, drug in her2_directed]
    return sorted(found, key=lambda e: e.when or date.min)


_GENE = re.compile(r"(?<![a-z0-9])(?:erbb-?2|her-?2)(?![a-z0-9])|hgnc:3430", re.I)
_GAIN = re.compile(r"amplif|copy[\s-]*number[\s-]*gain|\bgain\b|la14033-7", re.I)
_NO_GAIN = re.compile(r"no (?:\w+ )?amplification|not amplified|non-?amplified|no copy[\s-]*number", re.I)


def _words(obs: dict[str, Any]) -> str:
    parts: list[str] = []
    holders = [obs, *items(obs, "component")]
    for h in holders:
        for key in ("code", "valueCodeableConcept", "interpretation"):
            cc = h.get(key)
            for one in cc if isinstance(cc, list) else [cc]:
                parts += texts(one) + [str(c.get("code", "")) for c in codings(one)]
        if (found := string(h, "valueString")) is not None:
            parts.append(found)
    return " ".join(parts)


def erbb2_sequencing(observations: Iterable[dict[str, Any]]) -> tuple[list[Evidence], list[Evidence]]:
    """(ERBB2 amplification or copy-number gain by sequencing, other ERBB2 findings shown as context)."""
    gains, other = [], []
    for obs in observations:
        words = _words(obs)
        if not _GENE.search(words):
            continue
        ev_when = effective_date(obs)
        if _GAIN.search(words) and not _NO_GAIN.search(words):
            gains.append(Evidence(ref_of(obs), ev_when, "ERBB2 amplification / copy-number gain by sequencing"))
        else:
            other.append(Evidence(ref_of(obs), ev_when, "ERBB2 finding by sequencing (not an amplification)"))
    return gains, other
