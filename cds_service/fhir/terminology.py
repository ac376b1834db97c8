"""Terminology: the ValueSets in fhir_profiles/ (plus a site's extra files) as fast matchers."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.valueset import ValueSet

from cds_service.config import ConfigError
from cds_service.fhir.lru import Lru, key_bytes
from cds_service.fhir.read import codings, texts
from cds_service.paths import profiles_dir

TEXT_TERM_URL = "http://her2-cds.org/fhir/StructureDefinition/text-match-term"
VS_BASE = "http://her2-cds.org/fhir/ValueSet/"
MODELS: dict[str | None, Any] = {
    "ValueSet": ValueSet,
    "CodeSystem": CodeSystem,
    "ConceptMap": ConceptMap,
    "StructureDefinition": StructureDefinition,
}
NEGATION = re.compile(
    r"(?:\bno|\bnot|\bnon-?|\bwithout|\bdenies|\bnegative for|\bfree of|\babsence of|\bruled out)"
    r"(?:\s+\S+){0,2}\s*$"
)
# the HER2 value sets, in the order an Observation code is tried
HER2_SETS = (
    "her2-ish-ratio",
    "her2-ish-copy-number",
    "her2-cep17-copy-number",
    "her2-ish",
    "her2-ihc",
    "her2-interpretation",
)
DRUG_CLASSES = (
    "tdxd",
    "her2-directed-antibody",
    "other-adc",
    "cdk46-inhibitor",
    "endocrine-therapy",
    "other-targeted",
    "chemotherapy",
)


@dataclass(frozen=True)
class Match:
    """Why a concept is in a value set: by code (system|code) or by text (the phrase found)."""

    value_set: str
    by: str
    what: str
    canonical: str

    def describe(self) -> str:
        return f"{self.canonical} ({self.what})" if self.by == "code" else f'"{self.what}" (matched by text)'


@dataclass
class ValueSetMatcher:
    """Codes, is-a prefixes and text terms of one value set."""

    id: str
    codes: dict[tuple[str, str], str] = field(default_factory=dict)
    prefixes: list[tuple[str, str]] = field(default_factory=list)
    terms: dict[str, str] = field(default_factory=dict)  # lower-case phrase -> canonical name
    _regex: re.Pattern[str] | None = None
    _ingredient_regex: re.Pattern[str] | None = None
    _terms_in: dict[str, list[str]] = field(default_factory=dict)  # name -> the terms in it (memo)

    def add(self, vs: dict[str, Any]) -> int:
        """Take the codes, is-a filters and text terms of a ValueSet, in its compose form, its expansion
        form (what terminology servers return), or both; returns how many were new."""
        before = len(self.codes) + len(self.prefixes) + len(self.terms)
        for ext in vs.get("extension") or []:
            if ext.get("url") == TEXT_TERM_URL and ext.get("valueString"):
                self.terms[ext["valueString"].lower()] = ext["valueString"]
        for inc in (vs.get("compose") or {}).get("include") or []:
            system = inc.get("system", "")
            for c in inc.get("concept") or []:
                self._add_concept(system, c)
            for f in inc.get("filter") or []:
                if f.get("op") == "is-a" and (system, _norm_code(f["value"])) not in self.prefixes:
                    self.prefixes.append((system, _norm_code(f["value"])))
        for c in _contains((vs.get("expansion") or {}).get("contains") or []):
            if c.get("system") and c.get("code") and not c.get("abstract"):
                self._add_concept(c["system"], c)
        self._regex = None
        self._ingredient_regex = None
        self._terms_in = {}
        return len(self.codes) + len(self.prefixes) + len(self.terms) - before

    def _add_concept(self, system: str, c: dict[str, Any]) -> None:
        canonical = c.get("display") or c["code"]
        self.codes[(system, c["code"])] = canonical
        if c.get("display"):
            self.terms.setdefault(c["display"].lower(), canonical)
        for d in c.get("designation") or []:
            self.terms.setdefault(d["value"].lower(), canonical)

    def ingredient(self, text: str) -> str | None:
        """The ingredient-level name (no strength or form) named in a drug display, if any."""
        if self._ingredient_regex is None:
            names = sorted((t for t, c in self.terms.items() if not re.search(r"\d", c)), key=len, reverse=True)
            if not names:
                return None
            self._ingredient_regex = re.compile(
                r"(?<![a-z0-9])(" + "|".join(re.escape(t) for t in names) + r")(?![a-z0-9])"
            )
        m = self._ingredient_regex.search(text.lower())
        return self.terms[m.group(1)] if m else None

    def terms_in(self, name: str) -> list[str]:
        """Every term of this value set that stands in `name` as whole words (memoised per name: a chart repeats
        its site names)."""
        found = self._terms_in.get(name)
        if found is None:
            if len(self._terms_in) >= 4096:
                self._terms_in.clear()
            found = self._terms_in[name] = [
                t for t in self.terms if re.search(rf"(?<![a-z0-9]){re.escape(t)}(?![a-z0-9])", name)
            ]
        return found

    @property
    def regex(self) -> re.Pattern[str] | None:
        if self._regex is None and self.terms:
            alts = sorted(self.terms, key=len, reverse=True)
            self._regex = re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(t) for t in alts) + r")(?![a-z0-9])")
        return self._regex

    def match_coding(self, system: str, code: str, display: Any = None) -> str | None:
        """The canonical name of a coding in this value set: the concept's display, or, for a code under an is-a
        group (an ICD-10 or ATC class), the coding's own display, else its code."""
        hit = self.codes.get((system, code))
        if hit is not None:
            return hit
        norm = _norm_code(code)
        for psys, prefix in self.prefixes:
            if psys == system and norm.startswith(prefix):
                return display if isinstance(display, str) and display.strip() else code
        return None

    def match_text(self, text: str) -> tuple[str, str] | None:
        """(phrase found, canonical) for the longest non-negated term in text."""
        regex = self.regex
        if regex is None or not text:
            return None
        low = text.lower()
        best: tuple[str, str] | None = None
        for m in regex.finditer(low):
            if NEGATION.search(low[: m.start()]):
                continue
            if best is None or len(m.group(1)) > len(best[0]):
                best = (m.group(1), self.terms[m.group(1)])
        return best


def _contains(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """expansion.contains, nested levels included."""
    for item in items:
        yield item
        yield from _contains(item.get("contains") or [])


def _norm_code(code: str) -> str:
    return code.replace(".", "").upper()


@dataclass(frozen=True)
class ExtraFile:
    """What one of a site's value_sets.extra_files added, for check-config and the start-up banner."""

    path: str
    value_set: str
    added: int


@dataclass
class GroupIndex:
    """Several value sets at once: one dict lookup per coding and one regex per text decide whether
    any of them can match, so the (many) irrelevant resources cost almost nothing."""

    codes: dict[tuple[str, str], str]
    prefixed_systems: set[str]
    regex: re.Pattern[str] | None

    def could_match(self, cc: Any) -> bool:
        for c in codings(cc):
            system, code = c.get("system"), c.get("code")
            if (system, code) in self.codes or (system in self.prefixed_systems and isinstance(code, str)):
                return True
        if self.regex is not None:
            return any(isinstance(t, str) and self.regex.search(t.lower()) for t in texts(cc))
        return False


class Terminology:
    """All value sets by id; match CodeableConcepts by code first, then by text."""

    MEMO_SIZE = 100_000
    MEMO_MB = 32  # and at most this much by what the concepts weigh (their bytes plus 600 each)
    MEMO_LARGEST = 16_384  # a concept weighing more (a pasted report in .text) is matched afresh, not kept
    SORTINGS_SIZE = 40_000  # how each resource sorts, one per resource of the charts seen
    SORTINGS_MB = 40  # and at most this much by what their keys hold (each resource's bytes)

    def __init__(
        self,
        matchers: dict[str, ValueSetMatcher],
        resources: dict[str, dict[str, Any]],
        extras: list[ExtraFile] | None = None,
    ) -> None:
        self.sets = matchers
        self.resources = resources
        self.extras = extras or []
        self._groups: dict[tuple[str, ...], GroupIndex] = {}
        # verdicts by concept (a chart resends the same concepts), boxed: a verdict may be None
        self._memo = Lru(self.MEMO_SIZE, self.MEMO_MB * 1_000_000, key_bytes, largest=self.MEMO_LARGEST)
        # how a resource sorts into the value sets, by its bytes (facts are kept by facts/kept.py, not here)
        self._sortings = Lru(self.SORTINGS_SIZE, self.SORTINGS_MB * 1_000_000, key_bytes)

    @property
    def memoised_verdicts(self) -> int:
        """How many value-set verdicts are memoised (the warm-up fills them)."""
        return len(self._memo)

    def _memoised(self, kind: str, vs: Any, cc: Any, compute: Callable[[], Any]) -> Any:
        """The verdict on a concept, computed once per process (the value sets do not change while it runs).
        Bounded like the readings (MEMO_SIZE verdicts, MEMO_MB). Concepts that cannot be serialised, or are over
        MEMO_LARGEST bytes, are not kept."""
        try:
            key = (kind, vs, orjson.dumps(cc))
        except (TypeError, orjson.JSONEncodeError):
            return compute()
        return self._memo.get_or_make(key, lambda: (compute(),))[0]

    def compile_all(self) -> int:
        """Compile every value set's text regex now (the warm-up), not on the first concept that needs it; the
        number compiled."""
        return sum(vs.regex is not None for vs in self.sets.values())

    def forget_verdicts(self) -> None:
        """Drop every memoised verdict and sorting (benchmarks of a cold start; the value sets and indexes stay)."""
        self._memo.clear()
        self._sortings.clear()

    def sorting(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """How a resource sorts into the value sets, kept by the bytes of what the sorting reads (its codes or its
        drug: key holds them) in a bounded LRU of its own (SORTINGS_SIZE): a matter of codes, so the terminology's."""
        return self._sortings.get_or_make(key, lambda: (compute(),))[0]  # boxed: a sorting may be None

    def group(self, vs_ids: tuple[str, ...]) -> GroupIndex:
        index = self._groups.get(vs_ids)
        if index is None:
            codes: dict[tuple[str, str], str] = {}
            terms: set[str] = set()
            systems: set[str] = set()
            for vs_id in reversed(vs_ids):
                vs = self.sets[vs_id]
                codes.update({k: vs_id for k in vs.codes})
                terms.update(vs.terms)
                systems.update(s for s, _ in vs.prefixes)
            alts = sorted(terms, key=len, reverse=True)
            regex = (
                re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(t) for t in alts) + r")(?![a-z0-9])")
                if alts
                else None
            )
            index = self._groups[vs_ids] = GroupIndex(codes, systems, regex)
        return index

    def match(self, vs_id: str, cc: Any, extra_text: Iterable[str] = ()) -> Match | None:
        """By code first; failing that, by the concept's words (and extra_text)."""
        extra_text = tuple(extra_text)
        if extra_text:
            return self._match(vs_id, cc, extra_text)
        return self._memoised("match", vs_id, cc, lambda: self._match(vs_id, cc, ()))

    def _match(self, vs_id: str, cc: Any, extra_text: tuple[str, ...]) -> Match | None:
        hit = self.match_code(vs_id, cc)
        if hit is not None:
            return hit
        vs = self.sets[vs_id]
        for text in [*texts(cc), *extra_text]:
            found = vs.match_text(text) if isinstance(text, str) else None
            if found:
                return Match(vs_id, "text", found[0], found[1])
        return None

    def match_code(self, vs_id: str, cc: Any) -> Match | None:
        """A match by code only (never by text)."""
        vs = self.sets[vs_id]
        for c in codings(cc):
            system, code = c.get("system"), c.get("code")
            if isinstance(system, str) and isinstance(code, str):
                hit = vs.match_coding(system, code, c.get("display"))
                if hit is not None:
                    return Match(vs_id, "code", f"{system.rsplit('/', 1)[-1]}|{code}", hit)
        return None

    def unmatched_texts(self, vs_ids: Iterable[str], cc: Any) -> list[str]:
        """The text of a CodeableConcept that may be read: its `text`, and the display of each coding
        that is in none of vs_ids (a coded answer is read by its code, never by its words)."""
        vs_ids = tuple(vs_ids)
        out = [cc["text"]] if isinstance(cc, dict) and isinstance(cc.get("text"), str) else []
        for c in codings(cc):
            system, code = c.get("system"), c.get("code")
            coded = (
                isinstance(system, str)
                and isinstance(code, str)
                and any(self.sets[v].match_coding(system, code) is not None for v in vs_ids)
            )
            if not coded and isinstance(c.get("display"), str):
                out.append(c["display"])
        return out

    def match_any(self, vs_ids: Iterable[str], cc: Any) -> Match | None:
        """The first value set that has one of cc's codes; failing that, the first that names it."""
        vs_ids = tuple(vs_ids)
        if not isinstance(cc, dict):
            return None
        return self._memoised("any", vs_ids, cc, lambda: self._match_any(vs_ids, cc))

    def _match_any(self, vs_ids: tuple[str, ...], cc: Any) -> Match | None:
        if not self.group(vs_ids).could_match(cc):
            return None
        for c in codings(cc):
            system, code = c.get("system"), c.get("code")
            if isinstance(system, str) and isinstance(code, str):
                for vs_id in vs_ids:
                    hit = self.sets[vs_id].match_coding(system, code, c.get("display"))
                    if hit is not None:
                        return Match(vs_id, "code", f"{system.rsplit('/', 1)[-1]}|{code}", hit)
        for text in texts(cc):
            for vs_id in vs_ids:
                found = self.sets[vs_id].match_text(text)
                if found:
                    return Match(vs_id, "text", found[0], found[1])
        return None

    def classify_drug(self, cc: Any) -> Match | None:
        """The drug class (first match in DRUG_CLASSES order) and the ingredient's name."""
        return self._memoised("drug", None, cc, lambda: self._classify_drug(cc))

    def _classify_drug(self, cc: Any) -> Match | None:
        hit = self.match_any(DRUG_CLASSES, cc)
        if hit:
            name = self.sets[hit.value_set].ingredient(hit.canonical)
            if name and name != hit.canonical:
                hit = Match(hit.value_set, hit.by, hit.what, name)
        return hit


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read FHIR JSON: {exc}") from exc
    rtype = data.get("resourceType") if isinstance(data, dict) else None
    model = MODELS.get(rtype)
    if model is None:
        raise ConfigError(f"{path}: resourceType must be one of {', '.join(str(m) for m in MODELS)}, not {rtype!r}")
    try:
        model.model_validate(data)
    except Exception as exc:
        raise ConfigError(f"{path}: not a valid FHIR R4 {rtype}: {str(exc)[:600]}") from exc
    return data


def load_terminology(extra_files: Iterable[str] = ()) -> Terminology:
    """Load and validate the shipped profiles and a site's extra ValueSets (they extend ours)."""
    return _load(tuple(extra_files))


@cache
def _load(extra_files: tuple[str, ...]) -> Terminology:
    matchers: dict[str, ValueSetMatcher] = {}
    resources: dict[str, dict[str, Any]] = {}
    by_url: dict[str, str] = {}
    for path in sorted(profiles_dir().glob("*.json")):
        data = _read(path)
        resources[f"{data['resourceType']}/{data['id']}"] = data
        if data["resourceType"] == "ValueSet":
            matcher = matchers.setdefault(data["id"], ValueSetMatcher(data["id"]))
            matcher.add(data)
            by_url[data["url"]] = data["id"]
    extras = [_add_extra(Path(name), matchers, by_url) for name in extra_files]
    missing = [v for v in DRUG_CLASSES if v not in matchers]
    if missing:
        raise ConfigError(f"{profiles_dir()}: missing ValueSets {missing}")
    return Terminology(matchers, resources, extras)


def _problems(data: dict[str, Any]) -> list[str]:
    """What in a site's ValueSet this service would not read (and so would ignore without a word)."""
    out = []
    for i, inc in enumerate((data.get("compose") or {}).get("include") or []):
        where = f"compose.include[{i}]"
        if inc.get("valueSet"):
            out.append(f"{where}.valueSet is not supported: expand it (list its codes) in this file")
        if not inc.get("system") and (inc.get("concept") or inc.get("filter")):
            out.append(f"{where} has no system: codes without a system match nothing")
        for j, f in enumerate(inc.get("filter") or []):
            if f.get("op") != "is-a":
                out.append(f"{where}.filter[{j}]: only op 'is-a' is supported, not {f.get('op')!r}")
            elif inc.get("system") and inc["system"] not in CODE_PREFIX_HIERARCHIES:
                out.append(
                    f"{where}.filter[{j}]: is-a in {inc['system']} needs a terminology server to evaluate (its "
                    "codes do not spell their parents); ship the expansion instead: list the codes under it in "
                    "compose.include.concept or expansion.contains (a terminology server's $expand gives them)"
                )
        if (system := inc.get("system")) and isinstance(system, str):
            out += _unknown_system(system, f"{where}.system")
    for i, c in enumerate(_contains((data.get("expansion") or {}).get("contains") or [])):
        if isinstance(system := c.get("system"), str):
            out += _unknown_system(system, f"expansion.contains[{i}].system")
    for i, _ in enumerate((data.get("compose") or {}).get("exclude") or []):
        out.append(f"compose.exclude[{i}] is not supported: leave the codes out instead")
    missing = [
        c.get("code", "?")
        for c in _contains((data.get("expansion") or {}).get("contains") or [])
        if c.get("code") and not c.get("system")
    ]
    if missing:
        out.append(f"expansion.contains: code(s) {', '.join(missing[:5])} have no system")
    return out


# code systems whose codes spell their place in the hierarchy (C50.9 under C50; L02BG03 under L02BG): an is-a
# filter in them is a prefix of the code, evaluated here; in any other system it needs a terminology server
CODE_PREFIX_HIERARCHIES = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
        "http://terminology.hl7.org/CodeSystem/icd-o-3",
        "http://www.whocc.no/atc",
        "http://fhir.de/CodeSystem/bfarm/atc",
    }
)
# the code systems records are written in (besides those of the shipped value sets): a site's system that is
# nearly one of these is a typo, and would match nothing
KNOWN_SYSTEMS = frozenset(
    {
        "http://snomed.info/sct",
        "http://loinc.org",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://unitsofmeasure.org",
        "http://hl7.org/fhir/sid/ndc",
        "http://hl7.org/fhir/sid/icd-9-cm",
        "http://ncimeta.nci.nih.gov",
        "http://ncithesaurus.nci.nih.gov",
        "http://www.ama-assn.org/go/cpt",
        "http://fhir.de/CodeSystem/dimdi/ops",
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "http://terminology.hl7.org/CodeSystem/observation-category",
        *CODE_PREFIX_HIERARCHIES,
    }
)


@cache
def _known_systems() -> frozenset[str]:
    """Every code system a shipped value set uses, and the well-known ones."""
    found = set(KNOWN_SYSTEMS)
    for path in profiles_dir().glob("ValueSet-*.json"):
        data = json.loads(path.read_text("utf-8"))
        found.update(i["system"] for i in (data.get("compose") or {}).get("include") or [] if i.get("system"))
        contains = _contains((data.get("expansion") or {}).get("contains") or [])
        found.update(c["system"] for c in contains if c.get("system"))
    return frozenset(found)


def _unknown_system(system: str, where: str) -> list[str]:
    """A system that is nearly a known one ("http://snomed.info/sctt", "https://loinc.org") is a typo: refused
    with the one meant. One far from every known system is a site's own and is read as it is."""
    known = _known_systems()
    if system in known:
        return []
    close = difflib.get_close_matches(system, sorted(known), n=1, cutoff=0.85)
    return [f"{where} {system!r} is not a code system records use; did you mean {close[0]!r}?"] if close else []


def _add_extra(path: Path, matchers: dict[str, ValueSetMatcher], by_url: dict[str, str]) -> ExtraFile:
    """A site's ValueSet extends the one of ours with the same canonical URL (a `|version` suffix is
    allowed); a file that names none of ours, or adds no code, stops start-up."""
    data = _read(path)
    if data["resourceType"] != "ValueSet":
        raise ConfigError(f"{path}: value_sets.extra_files takes ValueSets, not {data['resourceType']}")
    url = str(data.get("url") or "")
    canonical = url.split("|", 1)[0]
    vs_id = by_url.get(canonical)
    if vs_id is None:
        close = difflib.get_close_matches(canonical, list(by_url), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else f"; ours start with {VS_BASE}"
        raise ConfigError(f"{path}: its url {url!r} matches none of this service's value sets{hint}")
    problems = _problems(data)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    added = matchers[vs_id].add(data)
    if added == 0:
        raise ConfigError(
            f"{path}: adds no code to {vs_id} (no compose.include concept or filter, no "
            "expansion.contains entry with a system and code, or only codes it already has)"
        )
    return ExtraFile(str(path), vs_id, added)


def first_text(cc: Any, default: str) -> str:
    """The first human label of a CodeableConcept, or default."""
    return next(iter(texts(cc)), default)


def note_texts(resource: dict[str, Any]) -> list[str]:
    return [n["text"] for n in resource.get("note") or [] if isinstance(n, dict) and isinstance(n.get("text"), str)]
