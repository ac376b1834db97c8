"""The patient's HER2 picture: every HER2 Observation read, readings of one specimen merged into one result (amended
results replacing what they amend, an ISH joined to its IHC), each result categorised, and the current result
with history, discordance and an earlier HER2-low sample."""

from __future__ import annotations

from datetime import date
from typing import Any

from cds_service.facts.her2.category import categorise
from cds_service.facts.her2.model import (
    CATEGORY_LABEL,
    LOW,
    NULL,
    POSITIVE,
    ULTRALOW,
    ZERO_UNSPECIFIED,
    Her2Picture,
    Her2Result,
    Partial,
    merge_values,
)
from cds_service.facts.her2.readings import read_observation
from cds_service.facts.her2.sites import Site, site_of
from cds_service.facts.thresholds import PAIR_ISH
from cds_service.fhir.primitives import fmt, parse_date, ref_of
from cds_service.fhir.read import items, string
from cds_service.fhir.status import result_rank
from cds_service.fhir.terminology import Terminology

AMENDING_STATUS = {"amended", "corrected"}


def _supersede(partials: list[Partial], notes: list[str]) -> list[Partial]:
    """Drop results that an amended/corrected result replaces (derivedFrom, or same specimen,
    date and test with a later issue)."""
    dropped: set[str] = set()
    for p in partials:
        if string(p.resource, "status") not in AMENDING_STATUS:
            continue
        for d in items(p.resource, "derivedFrom"):
            if (target := string(d, "reference")) is not None:
                dropped.add(target.split("/")[-1])
        for q in partials:
            if q is p or string(q.resource, "status") in AMENDING_STATUS:
                continue
            same = q.when == p.when and _spec(q) == _spec(p) and q.has_ihc == p.has_ihc and q.has_ish == p.has_ish
            if same and (parse_date(string(q.resource, "issued")) or date.min) <= (
                parse_date(string(p.resource, "issued")) or date.max
            ):
                dropped.add(str(string(q.resource, "id")))
    for p in partials:
        if str(string(p.resource, "id")) in dropped:
            notes.append(f"{ref_of(p.resource)} was replaced by an amended/corrected result")
    return [p for p in partials if str(string(p.resource, "id")) not in dropped]


def _spec(p: Partial) -> str | None:
    s = p.resource.get("specimen")
    return string(s, "reference") if isinstance(s, dict) else None


def _split_readings(
    key: tuple[Any, ...],
    groups: dict[tuple[Any, ...], list[Partial]],
    sites: dict[tuple[Any, ...], Site],
) -> None:
    """Two readings of one specimen on different days (a report re-read years later) are two results;
    an ISH on the specimen joins the latest reading made before it (or the first)."""
    readings = sorted({p.when for p in groups[key] if not p.has_ish or p.has_ihc}, key=lambda d: d or date.min)
    if len(readings) < 2:
        return
    parts = groups.pop(key)
    for p in parts:
        if not p.has_ish or p.has_ihc:
            day = p.when
        else:
            earlier = [d for d in readings if d and p.when and d <= p.when]
            day = earlier[-1] if earlier else readings[0]
        sub = (*key, day)
        groups.setdefault(sub, []).append(p)
        sites[sub] = sites[key]


def _merge(group: list[Partial], site: Site) -> Her2Result:
    """One result from the readings of one specimen: final/amended/corrected outrank preliminary, and
    among equals the later `issued`, then the later date, wins. An IHC score brings its own staining
    statement (never mixed with another reading's)."""
    group = sorted(group, key=lambda p: (*result_rank(p.resource), p.when or date.min))
    r = Her2Result(category=None, when=None, refs=[ref_of(p.resource) for p in group])
    r.site_kind, r.site = site
    for p in group:
        r.when = max(filter(None, (r.when, p.when)), default=None)
        merge_values(r, p)
        r.by_text = r.by_text or p.by_text
        r.notes.extend(p.notes)
        r.specimen_ref = r.specimen_ref or _spec(p)
    final = [p for p in group if string(p.resource, "status") != "preliminary"]
    for p in group:
        if string(p.resource, "status") == "preliminary":
            r.notes.append(
                f"{ref_of(p.resource)} is preliminary" + (" and outranked by the final result" if final else "")
            )
    stated = next((p.stated for p in reversed(group) if p.stated), None)
    found = categorise(r)
    r.category, r.ish, r.ratio, r.ratio_cmp = found.category, found.ish, found.ratio, found.ratio_cmp
    r.ish_group = found.ish_group
    r.notes.extend(found.notes)
    if r.category is None and stated:
        r.category = stated
        r.notes.append(f"category {CATEGORY_LABEL[stated]} as stated in the report; no score recorded")
    return r


def build_picture(
    observations: dict[str, list[dict[str, Any]]], specimens: dict[str, dict[str, Any]], ts: Terminology
) -> Her2Picture:
    """All HER2 results of the patient, categorised, and the current picture."""
    notes: list[str] = []
    partials: list[tuple[Partial, Site]] = []
    for kind in (
        "her2-ihc",
        "her2-interpretation",
        "her2-ish",
        "her2-ish-ratio",
        "her2-ish-copy-number",
        "her2-cep17-copy-number",
    ):
        for obs in observations[kind]:  # the status policy was applied at extraction
            partials.append((read_observation(obs, kind, ts), site_of(obs, specimens, ts)))
    kept = {id(p) for p in _supersede([p for p, _ in partials], notes)}
    partials = [(p, s) for p, s in partials if id(p) in kept]
    groups: dict[tuple[Any, ...], list[Partial]] = {}
    sites: dict[tuple[Any, ...], Site] = {}
    for p, site in partials:
        key = ("spec", _spec(p)) if _spec(p) else ("day", p.when, site[0])
        groups.setdefault(key, []).append(p)
        if key not in sites or sites[key][1] is None:
            sites[key] = site
    for key in [k for k in groups if k[0] == "spec"]:
        _split_readings(key, groups, sites)
    # an ISH-only group joins the nearest earlier IHC group (same specimen site) lacking ISH
    for key in [k for k, g in groups.items() if not any(p.has_ihc for p in g) and any(p.has_ish for p in g)]:
        when = max((p.when for p in groups[key] if p.when), default=None)
        best = None
        for other, g in groups.items():
            if other == key or not any(p.has_ihc for p in g) or any(p.has_ish for p in g):
                continue
            ihc_when = max((p.when for p in g if p.when), default=None)
            if (
                when
                and ihc_when
                and 0 <= (when - ihc_when).days <= PAIR_ISH.value
                and (sites[other][0] == sites[key][0] or "unknown" in (sites[other][0], sites[key][0]))
            ):
                if best is None or ihc_when > best[1]:
                    best = (other, ihc_when)
        if best:
            groups[best[0]].extend(groups.pop(key))
    results = [_merge(g, sites[k]) for k, g in groups.items()]
    unreadable = [r for r in results if r.category is None]
    for r in unreadable:
        notes.append(f"HER2 result {', '.join(r.refs)} could not be read: no score, ISH or interpretation found")
        notes.extend(r.notes)
    results = sorted((r for r in results if r.category), key=lambda r: (r.when is not None, r.when or date.min))
    current = results[-1] if results else None
    if current:
        notes.extend(f"latest HER2 result: {n}" for n in current.notes)
    if current and current.when is None:
        notes.append("no HER2 result has a date: the current result cannot be told from older ones")
    ever_positive = any(r.category == POSITIVE for r in results)
    discordant = ever_positive and any(r.category != POSITIVE for r in results)
    earlier_low = None
    if current and current.category in (NULL, ZERO_UNSPECIFIED) and not ever_positive:
        earlier_low = next((r for r in reversed(results[:-1]) if r.category in (LOW, ULTRALOW)), None)
        if earlier_low:
            discordant = True
            notes.append(
                f"the latest result ({CATEGORY_LABEL[str(current.category)]}, {fmt(current.when)}) differs "
                f"from an earlier sample ({CATEGORY_LABEL[str(earlier_low.category)]}, "
                f"{fmt(earlier_low.when)})"
            )
    return Her2Picture(results, current, ever_positive, discordant, notes, earlier_low)
