"""Metastatic setting (DESIGN §6.2): a distant metastasis, metastatic breast cancer, stage IV or M1.
Regional lymph nodes are N, never M; an M0 / stage 0-III staging newer than a text-only metastasis wins."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.facts.evidence import Evidence
from cds_service.fhir.primitives import effective_date, fmt, parse_date, ref_of
from cds_service.fhir.read import concept, items, string, value_words
from cds_service.fhir.terminology import Match, Terminology, codings, first_text, note_texts, texts

_STAGE_IV = re.compile(
    r"(?<![a-z0-9])(?:stage\s*(?:iv|4)[a-c]?|[cpy]{0,2}m1[a-d]?(?:\([a-z]+\))?|iv[a-c]?|4[a-c]?)"
    r"(?![a-z0-9])",
    re.I,
)
_NO_DISTANT = re.compile(
    r"(?<![a-z0-9])(?:stage\s*(?:0|i{1,3}|[1-3])[a-c]?|[cpy]{0,2}m0(?:\([a-z+]+\))?|"
    r"i{1,3}[a-c]?|[0-3][a-c]?)(?![a-z0-9])",
    re.I,
)
METASTASIS_SETS = ("metastatic-disease", "lymph-node-metastasis", "regional-lymph-node")
_UNRESECTABLE = re.compile(r"(?<![a-z])(?:un-?resectable|non-?resectable|not resectable|inoperable|not operable)", re.I)
NEGATED = re.compile(
    r"(?:\bno|\bnot|\bnever|\bwithout|\bdenies|\bnegative for|\bruled out|\bfree of)(?:\s+\S+){0,2}\s*$", re.I
)


_STAGE_WORD = re.compile(r"\bstage\b", re.I)


def stated(regex: re.Pattern[str], text: str) -> bool:
    """The text states what regex finds, not negated by the words just before it."""
    return any(not NEGATED.search(text[: m.start()].lower()) for m in regex.finditer(text))


@dataclass(frozen=True)
class Metastasis:
    """A distant metastasis: where, since when, and the record."""

    site: str
    onset: date | None
    evidence: Evidence
    by_text: bool


@dataclass
class Setting:
    """Whether the disease is metastatic, since when, where, and the breast cancer diagnosis."""

    metastatic: bool
    start: date | None
    evidence: list[Evidence] = field(default_factory=list)
    lung_metastases: list[Evidence] = field(default_factory=list)
    breast_cancer: list[Evidence] = field(default_factory=list)
    distant: list[Metastasis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    other_primary: list[Evidence] = field(default_factory=list)  # a primary cancer other than breast
    her2_positive_dx: list[Evidence] = field(default_factory=list)  # a diagnosis that names HER2-positive disease
    unresectable: list[Evidence] = field(default_factory=list)  # locally advanced disease stated unresectable

    @property
    def advanced(self) -> bool:
        """The label's "unresectable or metastatic"."""
        return self.metastatic or bool(self.unresectable)

    @property
    def advanced_start(self) -> date | None:
        dated = [e.when for e in self.evidence + self.unresectable if e.when]
        return min(dated) if dated else None

    def describe(self) -> str:
        """Which advanced setting, since when (cards say which)."""
        if self.metastatic:
            return f"metastatic since {fmt(self.start)}"
        if self.unresectable:
            first = self.unresectable[0]
            return f"locally advanced, unresectable ({first.text}, {fmt(first.when)})"
        return "not advanced on record"

    @property
    def in_scope(self) -> bool:
        """Breast cancer is on record (HER2/ER/PR results alone never make a breast-cancer patient)."""
        return bool(self.breast_cancer)


def code_text(cc: Any) -> str:
    """system|code of the first coding, for a concept sent without any words."""
    c = next(iter(codings(cc)), {})
    return f"{str(c.get('system', '')).rsplit('/', 1)[-1]}|{c.get('code', '?')}" if c else "not coded"


def _onset(cond: dict[str, Any]) -> date | None:
    return effective_date(cond) or parse_date(string(cond, "recordedDate"))


def stage_reading(cc: Any, ts: Terminology) -> str | None:
    """'distant' (stage IV / M1), 'none' (stage 0-III / M0) or None, by code first, then by words."""
    if ts.match_code("stage-distant", cc):
        return "distant"
    if ts.match_code("stage-no-distant", cc):
        return "none"
    for t in ts.unmatched_texts(("stage-distant", "stage-no-distant"), cc):
        if _STAGE_IV.search(t):
            return "distant"
        if _NO_DISTANT.search(t):
            return "none"
    return None


def _staged_what(obs: dict[str, Any], ts: Terminology) -> str | None:
    """What a staging result is about, when it can say metastatic or not: an M category or a stage group (a T or N
    category says nothing about distant metastasis)."""
    if ts.match_code("m-category", concept(obs, "code")):
        return "metastatic status"
    return "stage" if any(_STAGE_WORD.search(t) for t in texts(concept(obs, "code"))) else None


def _region(cond: dict[str, Any], sets: dict[str, Match], ts: Terminology) -> str:
    """'regional', 'distant' or 'unknown' for a condition about metastatic disease: a regional node
    (by code or words, in the code or a body site) is N; a lymph-node metastasis is distant only
    when its station is (coded or named); any other secondary site is distant."""
    sites = [concept(cond, "code"), *items(cond, "bodySite")]
    words = {"text": " ".join(t for cc in sites for t in texts(cc))}
    if any(ts.match_code("regional-lymph-node", cc) for cc in sites) or ts.match("regional-lymph-node", words):
        return "regional"
    if "lymph-node-metastasis" in sets or ts.match("lymph-node-metastasis", words):
        distant = any(ts.match_code("distant-lymph-node", cc) for cc in sites) or ts.match("distant-lymph-node", words)
        return "distant" if distant else "unknown"
    return "distant"


def _site_key(cond: dict[str, Any], match: Match, ts: Terminology) -> str:
    """The organ a distant metastasis is in, one word per organ whatever the coding ("liver" for
    SNOMED 10200004 Liver structure, ICD C78.7 and "liver metastases" alike)."""
    sites = ts.sets["metastatic-site"]
    for cc in [*items(cond, "bodySite"), concept(cond, "code")]:
        hit = ts.match("metastatic-site", cc)
        if hit:
            name = hit.canonical.lower()
            words = sites.terms_in(name)
            return min(words, key=len) if words else name
    return match.canonical.lower()


def _scope(conditions: dict[str, list[tuple[dict[str, Any], Match]]], s: Setting, ts: Terminology) -> None:
    """Breast cancer (coded as such, or a generic malignant neoplasm with a breast site), other primary cancers,
    a diagnosis naming HER2-positive disease, and locally advanced disease stated to be unresectable."""
    breast = [cond for cond, _ in conditions["breast-cancer"]]
    for cond, _ in conditions["malignant-neoplasm"]:
        sites = [*items(cond, "bodySite"), {"text": " ".join(texts(concept(cond, "code")))}]
        if any(ts.match("breast-site", cc) for cc in sites) and cond not in breast:
            breast.append(cond)
    for cond in breast:
        s.breast_cancer.append(Evidence(ref_of(cond), _onset(cond), "breast cancer"))
        words = " ".join(texts(concept(cond, "code")) + note_texts(cond))
        words += " " + " ".join(t for st in items(cond, "stage") for t in texts(concept(st, "summary")))
        if stated(_UNRESECTABLE, words):
            s.unresectable.append(Evidence(ref_of(cond), _onset(cond), "breast cancer stated unresectable/inoperable"))
    breast_refs = {ref_of(c) for c in breast}
    for cond, match in conditions["other-primary-cancer"]:
        if ref_of(cond) not in breast_refs:
            s.other_primary.append(Evidence(ref_of(cond), _onset(cond), f"other primary cancer: {match.describe()}"))
    for cond, match in conditions["her2-positive-disease"]:
        s.her2_positive_dx.append(
            Evidence(ref_of(cond), _onset(cond), f"diagnosis of HER2-positive disease: {match.describe()}")
        )


def derive_setting(
    conditions: dict[str, list[tuple[dict[str, Any], Match]]], staging: list[dict[str, Any]], ts: Terminology
) -> Setting:
    s = Setting(metastatic=False, start=None)
    by_ref: dict[str, tuple[dict[str, Any], dict[str, Match]]] = {}
    for vs in METASTASIS_SETS:
        for cond, match in conditions[vs]:
            by_ref.setdefault(ref_of(cond), (cond, {}))[1][vs] = match
    text_only: list[Evidence] = []
    for ref, (cond, sets) in by_ref.items():
        region = _region(cond, sets, ts)
        label = first_text(concept(cond, "code"), code_text(concept(cond, "code")))
        if region == "regional":
            s.notes.append(f"{ref} ({label}): regional lymph-node disease (N category), not distant metastasis")
            continue
        if region == "unknown":
            s.notes.append(
                f"{ref} ({label}): lymph-node metastasis whose region (regional or distant) is not "
                "recorded; not counted as distant metastasis"
            )
            continue
        match = sets.get("metastatic-disease") or next(iter(sets.values()))
        shown = match.describe() if match.by == "text" else match.canonical
        ev = Evidence(ref, _onset(cond), f"metastatic disease: {shown}")
        s.evidence.append(ev)
        s.distant.append(Metastasis(_site_key(cond, match, ts), ev.when, ev, match.by == "text"))
        if match.by == "text":
            text_only.append(ev)
    staged_none: list[Evidence] = []
    _scope(conditions, s, ts)
    for cond, _ in conditions["breast-cancer"]:
        for stage in items(cond, "stage"):
            summary = concept(stage, "summary")
            reading = stage_reading(summary, ts)
            label = first_text(summary, code_text(summary))
            if reading == "distant" and ref_of(cond) not in by_ref:
                s.evidence.append(Evidence(ref_of(cond), _onset(cond), f"breast cancer, stage {label}"))
            elif reading == "none":
                staged_none.append(Evidence(ref_of(cond), _onset(cond), f"stage {label}"))
    for obs in staging:  # the status policy was applied at extraction
        words = " ".join(value_words(obs))
        if stated(_UNRESECTABLE, words):
            s.unresectable.append(Evidence(ref_of(obs), effective_date(obs), f"stated unresectable: {words[:80]}"))
        reading = stage_reading(concept(obs, "valueCodeableConcept"), ts)
        value = concept(obs, "valueCodeableConcept")
        code = concept(obs, "code")
        what_was_staged = first_text(code, code_text(code))
        label = f"{what_was_staged}: {first_text(value, code_text(value))}"
        if reading == "distant":
            s.evidence.append(Evidence(ref_of(obs), effective_date(obs), f"stage IV / M1 staging ({label})"))
        elif reading == "none":
            staged_none.append(Evidence(ref_of(obs), effective_date(obs), label))
        elif (what := _staged_what(obs, ts)) is not None:  # said, never dropped: "MX", a value not read, none
            if value is not None or words:
                s.notes.append(f"{ref_of(obs)}: {what} not readable ({label})")
            else:
                s.notes.append(f"{ref_of(obs)}: {what} recorded without a value ({what_was_staged})")
    for ev in text_only:
        newer = [m for m in staged_none if m.when and (ev.when is None or m.when > ev.when)]
        if newer:
            s.evidence.remove(ev)
            s.distant = [d for d in s.distant if d.evidence != ev]
            s.notes.append(
                f"{ev.ref} ({ev.text}, {fmt(ev.when)}) is a text-only statement; the newer staging "
                f"{newer[-1].ref} ({newer[-1].text}, {fmt(newer[-1].when)}) says no distant metastasis"
            )
    for cond, _ in conditions["lung-metastasis"]:
        s.lung_metastases.append(Evidence(ref_of(cond), _onset(cond), "lung/pleural metastasis"))
    s.metastatic = bool(s.evidence)
    dated = [e.when for e in s.evidence if e.when]
    s.start = min(dated) if dated else None
    if s.metastatic and s.start is None:
        s.notes.append(
            "metastatic disease is recorded without a date: therapy lines cannot be placed before or after it"
        )
    if not s.metastatic:
        s.notes.append("no record of metastatic disease (secondary malignancy, stage IV or M1)")
    return s
