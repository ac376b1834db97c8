"""Card rendering: CardDecisions → CDS Hooks 2.0 card JSON (uuids, source topic, links, overrides)."""

from __future__ import annotations

import re
import uuid
from functools import lru_cache
from typing import Any

from cds_service.config import CardSettings
from cds_service.facts.label import LABEL_SHORT
from cds_service.fhir.inert import inert
from cds_service.fhir.override_reasons import reasons
from cds_service.fhir.terminology import Terminology
from cds_service.fhir.validation import validated
from cds_service.rules.decision import CardDecision
from cds_service.rules.ruleset import RULESET_VERSION

TOPIC_SYSTEM = "http://her2-cds.org/fhir/CodeSystem/card-topic"
DEFAULT_LINKS = {
    "label": (
        "Enhertu prescribing information (FDA, BLA 761139)",
        "https://www.accessdata.fda.gov/scripts/cder/daf/index.cfm?event=overview.process&ApplNo=761139",
    ),
    "asco_cap": ("ASCO/CAP HER2 testing guideline update (Wolff et al., 2023)", "https://doi.org/10.1200/JCO.22.02864"),
    "db06": ("DESTINY-Breast06 (Bardia et al., NEJM 2024)", "https://doi.org/10.1056/NEJMoa2407086"),
    "db04": ("DESTINY-Breast04 (Modi et al., NEJM 2022)", "https://doi.org/10.1056/NEJMoa2203690"),
}


@lru_cache(maxsize=16)
def _concepts(ts: Terminology, cs_id: str) -> dict[str, str]:
    """code -> display of one of our CodeSystems (they do not change while the process runs)."""
    cs = ts.resources[f"CodeSystem/{cs_id}"]
    return {c["code"]: c["display"] for c in cs["concept"]}


@lru_cache(maxsize=16)
def _offered(ts: Terminology) -> dict[str, dict[str, str]]:
    """The coding a card offers for each override reason of ours (the HL7 one where it fits)."""
    return {code: r.offered for code, r in reasons(ts).items()}


# a resource id ("Observation/obs-7") or a code in brackets ("(sct|266721009)"): for the Sources line, not the prose
REF = re.compile(
    r"\b(?:Observation|Condition|Procedure|DiagnosticReport|Specimen|Medication(?:Request|Statement|"
    r"Administration)?|Patient|Encounter|ServiceRequest)/[A-Za-z0-9\-.]{1,64}"
)
BRACKETED_CODE = re.compile(r"\s*\(([A-Za-z0-9\-.:]+\|[A-Za-z0-9\-.]+)\)")


JUNK = tuple(
    (re.compile(junk), fix)
    for junk, fix in (
        (r"([;,])(?:\s*[;,])+", r"\1"),  # "2023-01-18; Observation/a, Observation/b" leaves "; ,"
        (r"\(\s*(?:[;,]\s*)*\)", ""),
        (r";\s+\(", " ("),
        (r";\s*\)", ")"),
        (r"\(\s*;\s*", "("),
        (r";\s*;", ";"),
        (r"[;,]\s*$", ""),
        (r"\s+([;,.)])", r"\1"),
        (r"\s{2,}", " "),
    )
)


def plain(line: str, refs: list[str], codes: list[str]) -> str:
    """The line in plain words: resource ids and bracketed codes moved to refs and codes."""
    text, found_refs, found_codes = _plain(line)
    refs += found_refs
    codes += found_codes
    return text


@lru_cache(maxsize=4096)
def _plain(line: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """plain() of one line, memoised: the same facts give the same lines on every call about that chart. Each
    code or id is looked for only in a line holding the "|" or "/" it cannot be without, and found and removed in
    one pass."""
    codes: list[str] = []
    refs: list[str] = []
    if "|" in line:
        line = BRACKETED_CODE.sub(lambda m: _found(m.group(1), codes), line)
    if "/" in line:
        line = REF.sub(
            lambda m: _found(m.group(0), refs, f"One {m.group(0).split('/')[0]}" if m.start() == 0 else ""), line
        )
    for junk, fix in JUNK:
        line = junk.sub(fix, line)
    return line.strip(), tuple(refs), tuple(codes)


def _found(what: str, into: list[str], words: str = "") -> str:
    """A code or an id found: kept for Sources; in the prose, the words that stand for it ("One Observation" for
    an id that opens the line, else nothing)."""
    into.append(what)
    return words


def _detail(d: CardDecision, footer: str | None) -> str:
    """Why the card fired and what to consider first, then the evidence in plain words, what is not known, the
    site's footer, and last the resource ids and codes behind it all (Sources)."""
    refs: list[str] = []
    codes: list[str] = []
    parts = []
    if d.advice:
        parts.append("\n".join(f"- {_line(a, refs, codes)}" for a in d.advice))
    if d.evidence:
        parts.append("**Evidence used**\n" + "\n".join(f"- {_line(e, refs, codes)}" for e in d.evidence))
    if d.unknowns:
        unknowns = "\n".join(f"- {_line(u, refs, codes)}" for u in dict.fromkeys(d.unknowns))
        parts.append("**Not known / could not be determined**\n" + unknowns)
    if footer:
        parts.append(footer)
    if refs or codes:  # ids are Type/[A-Za-z0-9.-]; each code was made inert in _line, the line is capped here
        sources = ", ".join(dict.fromkeys(refs + codes))
        parts.append("Sources: " + (sources if len(sources) <= SOURCES_CAP else sources[: SOURCES_CAP - 1] + "…"))
    return "\n\n".join(parts)


OWN_HEADING = re.compile(r"\*\*(DESTINY-Breast0[46])\*\* (met|not confirmed):")


SOURCES_CAP = 4000
_inert = lru_cache(maxsize=4096)(inert)  # like _plain: the same chart gives the same lines on every call


def _line(line: str, refs: list[str], codes: list[str]) -> str:
    """One line of the detail, inert: every line may carry record text (our own pathway headings excepted)."""
    if OWN_HEADING.fullmatch(line):
        return line
    found: list[str] = []
    text = plain(line, refs, found)
    codes += [_inert(c) for c in found]  # "www.x.org|1" would be autolinked
    return _inert(text)


def check_action(resource: dict[str, Any]) -> None:
    """Every suggested resource is valid FHIR R4 as it stands (verdicts cached by content digest)."""
    problems: list[str] = []
    if validated(resource, problems) is None or problems:
        raise ValueError(f"suggested {resource['resourceType']} is not valid FHIR R4: {problems}")


def _summary(text: str) -> str:
    return text if len(text) < 140 else text[:136].rstrip() + "…"


def render(
    decisions: list[CardDecision],
    cards_cfg: CardSettings,
    ts: Terminology,
    labels: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """CDS Hooks cards: fresh uuids, no nulls or empty members, actions validated with fhir.resources. A topic's
    display is its concept in the card-topic CodeSystem, else its label in labels (a topic newer than the file)."""
    topics = _concepts(ts, "card-topic")
    offered = _offered(ts)
    urls = {k: (label, cards_cfg.links.get(k, url)) for k, (label, url) in DEFAULT_LINKS.items()}
    texts = cards_cfg.texts
    out = []
    for d in decisions:
        display = topics.get(d.topic) or (labels or {})[d.topic]
        card: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "summary": _summary(inert(texts.get(f"{d.topic}.summary", d.summary), cap=400)),
            "indicator": d.indicator,
            "detail": _detail(d, texts.get(f"{d.topic}.footer")),
            "source": {
                "label": f"{cards_cfg.source_label} · rules {RULESET_VERSION} · {LABEL_SHORT}",
                "topic": {"system": TOPIC_SYSTEM, "code": d.topic, "display": display},
            },
        }
        if cards_cfg.links.get("source"):
            card["source"]["url"] = cards_cfg.links["source"]
        if d.suggestions:
            card["suggestions"] = []
            for s in d.suggestions:
                actions = []
                for res in s.resources:
                    check_action(res)
                    actions.append({"type": "create", "description": s.label, "resource": res})
                for res in s.updates:
                    check_action(res)
                    actions.append({"type": "update", "description": s.label, "resource": res})
                actions += [{"type": "delete", "description": s.label, "resourceId": ref} for ref in s.deletes]
                sug: dict[str, Any] = {"label": inert(s.label, cap=200), "uuid": str(uuid.uuid4()), "actions": actions}
                if s.recommended is not None:
                    sug["isRecommended"] = s.recommended
                card["suggestions"].append(sug)
            card["selectionBehavior"] = d.selection
        if d.overrides:
            card["overrideReasons"] = [dict(offered[c]) for c in d.overrides]
        if d.links:
            card["links"] = [{"label": urls[k][0], "url": urls[k][1], "type": "absolute"} for k in d.links]
        out.append(card)
    return out
