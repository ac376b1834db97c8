"""HER2: read each result from the encodings EHRs and labs use, categorise it (DESIGN §6.1),
and build the patient's HER2 picture with history and discordance."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.fhir.primitives import effective_date, fmt, parse_date, ref_of
from cds_service.fhir.status import result_rank
from cds_service.fhir.terminology import Terminology, codings, note_texts, texts

POSITIVE, LOW, ULTRALOW, NULL = "positive", "low", "ultralow", "null"
INDETERMINATE, ZERO_UNSPECIFIED, BINARY_ONLY = "indeterminate", "zero-unspecified", "binary-only"
INCONSISTENT = "inconsistent"
CATEGORY_LABEL = {
    POSITIVE: "HER2-positive", LOW: "HER2-low", ULTRALOW: "HER2-ultralow", NULL: "HER2-null (IHC 0, no staining)",
    INDETERMINATE: "HER2 indeterminate (IHC 2+ without ISH, or ISH that cannot be interpreted)",
    ZERO_UNSPECIFIED: "HER2 IHC 0 without a membrane-staining statement",
    BINARY_ONLY: "HER2-negative (no IHC score reported)",
    INCONSISTENT: "HER2 IHC 0 with staining in >10% of cells (inconsistent report)",
}
LOCAL_CS = "http://her2-cds.org/fhir/CodeSystem/her2-ihc"
AMENDING_STATUS = {"amended", "corrected"}
PAIR_ISH_DAYS = 60

_SCORE_PLUS = re.compile(r"(?<![\d.])([0-3])\s*\+")
_SCORE_WORD = re.compile(r"(?:score|ihc|her2(?:/neu)?)\s*(?:of|is|=|:)?\s*\(?\s*([0-3])(?![\d.%+])")
_BARE_ZERO = re.compile(r"^\s*\(?0\)?\s*(?:$|[(,;:/-]|\s+(?:ultra|null|no |with|faint))")
_ZERO_PAREN = re.compile(r"\(\s*0\s*\)")
_ULTRALOW = re.compile(r"ultra[\s-]?low|faint[^.;]*?(?:≤|<=|<|less than|up to|no more than)\s*10\s*%"
                       r"|(?:≤|<=|<|less than|up to)\s*10\s*%[^.;]*faint|barely perceptible")
_NULL = re.compile(r"her2[\s-]?null|\bnull\b|no (?:\w+ )?(?:membrane )?staining|absen(?:t|ce of) (?:\w+ )?staining"
                   r"|without (?:\w+ )?staining|complete absence")
_STATED = [(re.compile(r"her2[\s-]?ultra[\s-]?low"), ULTRALOW), (re.compile(r"her2[\s-]?low"), LOW),
           (re.compile(r"her2[\s-]?null"), NULL)]
_NOT_AMP = re.compile(r"not amplified|non[\s-]?amplified|no amplification|without amplification|unamplified")
_AMP = re.compile(r"(?<!not )(?<!non-)(?<!non )amplified|amplification")
_EQUIVOCAL = re.compile(r"equivocal|borderline")
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
_RANGE = re.compile(r"(?<![\d.])([0-3])\s*\+?\s*(?:-|–|/|to|or)\s*([0-3])\s*\+")
_FAINT_PCT = re.compile(r"(?:faint|barely perceptible|weak|incomplete)[^.;]*?(\d+(?:\.\d+)?)\s*%")
_ISH_WORD = re.compile(r"(?<![a-z])(?:fish|sish|cish|dish|ish|in[\s-]situ hybridi[sz]ation)(?![a-z])")


@dataclass
class Partial:
    """What one Observation says about HER2 (any subset of IHC, ISH, interpretation)."""

    resource: dict[str, Any]
    when: date | None
    ihc: int | None = None
    membrane: str | None = None  # "absent" | "faint-le-10"
    membrane_pct: float | None = None
    membrane_pct_cmp: str | None = None
    ish: str | None = None  # "amplified" | "not-amplified" | "equivocal"
    ratio: float | None = None
    ratio_cmp: str | None = None
    copy_number: float | None = None
    cep17: float | None = None
    binary: str | None = None  # "positive" | "negative" | "equivocal"
    stated: str | None = None  # a category the report states in words (HER2-low ...)
    by_text: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def has_ihc(self) -> bool:
        return self.ihc is not None

    @property
    def has_ish(self) -> bool:
        return self.ish is not None or self.ratio is not None or self.copy_number is not None or self.cep17 is not None


@dataclass
class Her2Result:
    """One HER2 test result (IHC and/or ISH on one specimen) and its category."""

    category: str | None
    when: date | None
    refs: list[str]
    ihc: int | None = None
    membrane: str | None = None
    membrane_pct: float | None = None
    membrane_pct_cmp: str | None = None
    ish: str | None = None
    ratio: float | None = None
    ratio_cmp: str | None = None
    copy_number: float | None = None
    cep17: float | None = None
    ish_group: int | None = None
    binary: str | None = None
    site_kind: str = "unknown"  # primary | metastatic | unknown
    site: str | None = None
    specimen_ref: str | None = None
    by_text: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        parts = [p for p, present in (("IHC", self.ihc is not None),
                                      ("ISH", self.ish is not None or self.ratio is not None
                                       or self.copy_number is not None)) if present]
        return "+".join(parts) or "interpretation only"

    def _membrane_text(self) -> str:
        if self.membrane == "faint-le-10":
            return "faint/incomplete membrane staining ≤10%"
        if self.membrane == "absent":
            return "no membrane staining"
        if self.membrane_pct is not None:
            return f"{self.membrane_pct_cmp or ''}{self.membrane_pct:g}% cells with membrane staining"
        return "no membrane-staining statement"

    def describe(self) -> str:
        bits = []
        if self.ihc is not None:
            bits.append(f"IHC {self.ihc}{'+' if self.ihc else ''}")
            if self.ihc == 0:
                bits.append(self._membrane_text())
        if self.ish or self.ratio is not None or self.copy_number is not None:
            ratio = f"ratio {self.ratio_cmp or ''}{self.ratio:g}" if self.ratio is not None else ""
            copies = f"{self.copy_number:g} copies/cell" if self.copy_number is not None else ""
            nums = ", ".join(x for x in (ratio, copies) if x)
            call = f" {self.ish.replace('-', ' ')}" if self.ish else ""
            bits.append(f"ISH{call}" + (f" ({nums})" if nums else ""))
        if not bits and self.binary:
            bits.append(f"reported only as {self.binary}")
        where = self.site or ("metastatic site" if self.site_kind == "metastatic" else
                              "primary tumour" if self.site_kind == "primary" else "specimen site not recorded")
        label = CATEGORY_LABEL.get(self.category or "", "category undetermined")
        text = f"{label}: {', '.join(bits) or 'no readable value'}; {where}; {fmt(self.when)}; {', '.join(self.refs)}"
        return text + (" (read from free text)" if self.by_text else "")


@dataclass
class Her2Picture:
    """The patient's HER2 picture: the current (most recent valid) result and the history."""

    results: list[Her2Result]
    current: Her2Result | None
    ever_positive: bool
    discordant: bool
    notes: list[str] = field(default_factory=list)
    earlier_low: Her2Result | None = None  # latest null/zero-unspecified, an earlier sample low/ultralow
    unreadable: list[str] = field(default_factory=list)  # HER2 results that are not valid FHIR (named, not read)

    @property
    def category(self) -> str | None:
        return self.current.category if self.current else None


# ---------------------------------------------------------------- reading values

SCORE_SETS = {f"her2-ihc-score-{n}": n for n in range(4)}
_BINARY_SETS = (("result-equivocal", "equivocal"), ("result-negative", "negative"), ("result-positive", "positive"))
ANSWER_SETS = (*SCORE_SETS, *(vs for vs, _ in _BINARY_SETS), "ihc-membrane-staining-answer")
# component codes, in the order a text-only component name is tried (a coded name always wins)
COMPONENT_SETS = ("ihc-membrane-percent", "ihc-membrane-staining", "her2-ish-ratio", "her2-ish-copy-number",
                  "her2-cep17-copy-number", "her2-ish", "her2-ihc", "her2-interpretation")
_MEMBRANE_CODES = {"membrane-staining-absent": "absent", "membrane-staining-faint-le-10": "faint-le-10"}
_BOUND = re.compile(r"(less than|greater than|more than|below|above|under|over|<=|>=|≤|≥|<|>)?\s*(\d+(?:\.\d+)?)")
_WORD_CMP = {"less than": "<", "below": "<", "under": "<", "greater than": ">", "more than": ">", "above": ">",
             "over": ">", "≤": "<=", "≥": ">="}


def _value_texts(holder: dict[str, Any], ts: Terminology) -> list[str]:
    """The words of value[x] that may be read: CodeableConcept text, displays of codings that matched no
    answer value set, valueString."""
    out = ts.unmatched_texts(ANSWER_SETS, holder.get("valueCodeableConcept"))
    if isinstance(holder.get("valueString"), str):
        out.append(holder["valueString"])
    return out


def read_bound(holder: dict[str, Any], ts: Terminology) -> tuple[float, str | None] | None:
    """A number and its comparator from value[x] (integer, Quantity with comparator, Ratio, or text
    such as "less than 1.8" / "<1%"); None when there is none."""
    v = holder.get("valueInteger")
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v), None
    q = holder.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), (int, float)) and not isinstance(q.get("value"), bool):
        comp = q.get("comparator")
        return float(q["value"]), comp if isinstance(comp, str) else None
    ratio = holder.get("valueRatio")
    if isinstance(ratio, dict):
        num, den = ratio.get("numerator") or {}, ratio.get("denominator") or {}
        if (isinstance(num, dict) and isinstance(den, dict) and isinstance(num.get("value"), (int, float))
                and isinstance(den.get("value"), (int, float)) and den["value"]
                and not num.get("comparator") and not den.get("comparator")):
            return float(num["value"]) / float(den["value"]), None
        return None
    for t in _value_texts(holder, ts):
        m = _BOUND.search(t.lower())
        if m:
            cmp = m.group(1)
            return float(m.group(2)), _WORD_CMP.get(cmp, cmp) if cmp else None
    return None


def _number(holder: dict[str, Any], ts: Terminology) -> float | None:
    b = read_bound(holder, ts)
    return b[0] if b and b[1] is None else None


def ihc_score_from_text(text: str) -> int | None:
    """The IHC score a phrase states ("2+", "score 0", "0 (ultralow)"), or None."""
    low = text.lower().strip()
    m = _SCORE_PLUS.search(low) or _SCORE_WORD.search(low)
    if m:
        return int(m.group(1))
    if _BARE_ZERO.search(low) or _ZERO_PAREN.search(low) or low in ("0", "zero"):
        return 0
    return None


def score_range_in_text(text: str) -> tuple[int, int] | None:
    """Two different scores given as one result ("0-1+", "1+/2+"): not a single score."""
    m = _RANGE.search(text.lower())
    if m and m.group(1) != m.group(2):
        low, high = sorted((int(m.group(1)), int(m.group(2))))
        return low, high
    return None


def membrane_pct_from_text(text: str) -> float | None:
    """The percentage of cells with faint/incomplete staining a phrase states ("faint ... in 5% of cells")."""
    m = _FAINT_PCT.search(text.lower())
    return float(m.group(1)) if m else None


def ish_in_ihc_text(text: str) -> str | None:
    """An ISH call reported in the same text as the IHC score ("2+; FISH not amplified")."""
    m = _ISH_WORD.search(text.lower())
    return ish_from_text(text[m.end():]) if m else None


def _first_label(text: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    """The label of the first pattern (in table order) found in text."""
    low = text.lower()
    return next((label for regex, label in table if regex.search(low)), None)


def membrane_from_text(text: str) -> str | None:
    return _first_label(text, ((_ULTRALOW, "faint-le-10"), (_NULL, "absent")))


def ish_from_text(text: str) -> str | None:
    return _first_label(text, ((_NOT_AMP, "not-amplified"), (_EQUIVOCAL, "equivocal"), (_AMP, "amplified")))


def _binary(ts: Terminology, holder: dict[str, Any], key: str = "valueCodeableConcept") -> str | None:
    """positive / negative / equivocal: by answer code first, then by the readable words."""
    value = holder.get(key)
    values = value if isinstance(value, list) else [value]
    for cc in values:
        hit = next((label for vs, label in _BINARY_SETS if ts.match_code(vs, cc)), None)
        if hit:
            return hit
    words = _value_texts(holder, ts) if key == "valueCodeableConcept" else [t for cc in values for t in texts(cc)]
    for t in words:
        hit = next((label for vs, label in _BINARY_SETS if ts.match(vs, {"text": t})), None)
        if hit:
            return hit
    return None


def _coded_score(holder: dict[str, Any], ts: Terminology) -> int | None:
    cc = holder.get("valueCodeableConcept")
    return next((n for vs, n in SCORE_SETS.items() if ts.match_code(vs, cc)), None)


def _read_ihc_value(p: Partial, holder: dict[str, Any], ts: Terminology) -> None:
    coded = _coded_score(holder, ts)
    if coded is not None:
        p.ihc = coded
        p.binary = p.binary or _binary(ts, holder)
        return
    if "valueInteger" in holder or "valueQuantity" in holder:
        b = read_bound(holder, ts)
        if b is not None and b[1] is None and b[0] in (0, 1, 2, 3):
            p.ihc = int(b[0])
            return
    for t in _value_texts(holder, ts):
        if rng := score_range_in_text(t):  # never pick one end of "0-1+": unscored, re-scoring needed
            p.notes.append(f"{ref_of(p.resource)} gives the IHC score as a range ({rng[0]}-{rng[1]}+), "
                           "not a single score")
            p.binary, p.by_text = ("negative" if rng[1] <= 1 else p.binary or _binary(ts, holder)), True
            return
        score = ihc_score_from_text(t)
        if score is not None:
            p.ihc, p.by_text = score, True
            if score == 0 and p.membrane is None:
                p.membrane = membrane_from_text(t)
                p.membrane_pct = p.membrane_pct if p.membrane else membrane_pct_from_text(t)
            p.ish = p.ish or ish_in_ihc_text(t)
            return
    for t in _value_texts(holder, ts):
        for regex, cat in _STATED:
            if regex.search(t.lower()):
                p.stated, p.by_text = cat, True
                return
        if _ISH_WORD.search(t.lower()) and (call := ish_from_text(t)):
            p.ish, p.by_text = call, True
    if p.binary is None:
        p.binary = _binary(ts, holder)
        if p.binary and not any(ts.match_code(vs, holder.get("valueCodeableConcept")) for vs, _ in _BINARY_SETS):
            p.by_text = True


def _read_ish_value(p: Partial, holder: dict[str, Any], ts: Terminology) -> None:
    for c in codings(holder.get("valueCodeableConcept")):
        if c.get("system") == LOCAL_CS and c.get("code") in ("ish-amplified", "ish-not-amplified"):
            p.ish = c["code"].removeprefix("ish-")
            return
    b = _binary(ts, holder)
    if b and ts.match_code({"positive": "result-positive", "negative": "result-negative",
                            "equivocal": "result-equivocal"}[b], holder.get("valueCodeableConcept")):
        p.ish = {"positive": "amplified", "negative": "not-amplified", "equivocal": "equivocal"}[b]
        return
    for t in _value_texts(holder, ts):
        found = ish_from_text(t)
        if found:
            p.ish, p.by_text = found, True
            return
    bound = read_bound(holder, ts)
    if bound is not None:  # "less than 1.8", "greater than 2.2": a HER2/CEP17 ratio (Synthea)
        p.ratio, p.ratio_cmp = bound
        p.notes.append(f"{ref_of(p.resource)} gives ISH as a ratio only ({_bound_text(bound)})")
        return
    if b:
        p.ish, p.by_text = {"positive": "amplified", "negative": "not-amplified", "equivocal": "equivocal"}[b], True


def _bound_text(bound: tuple[float, str | None]) -> str:
    return f"{bound[1] or ''}{bound[0]:g}"


def _membrane_answer(comp: dict[str, Any], ts: Terminology) -> str | None:
    for c in codings(comp.get("valueCodeableConcept")):
        if c.get("system") == LOCAL_CS and c.get("code") in _MEMBRANE_CODES:
            return _MEMBRANE_CODES[c["code"]]
    return next((m for t in _value_texts(comp, ts) if (m := membrane_from_text(t))), None)


def read_observation(obs: dict[str, Any], kind: str, ts: Terminology) -> Partial:
    """Everything one HER2 Observation says, whatever the encoding."""
    p = Partial(resource=obs, when=effective_date(obs), by_text=bool(obs.get("_from_text")))
    _read_slot(p, obs, kind, ts)
    for comp in obs.get("component") or []:
        if not isinstance(comp, dict):
            continue
        hit = ts.match_any(COMPONENT_SETS, comp.get("code"))
        if hit is not None:
            _read_slot(p, comp, hit.value_set, ts)
    if p.ihc == 0 and p.membrane is None and p.membrane_pct is None:
        for t in texts(obs.get("valueCodeableConcept")) + note_texts(obs):
            if membrane_from_text(t):
                p.membrane, p.by_text = membrane_from_text(t), True
                break
            if (pct := membrane_pct_from_text(t)) is not None:
                p.membrane_pct, p.by_text = pct, True
                break
    if p.ihc is None and p.binary is None and p.stated is None and not p.has_ish:
        p.binary = _binary(ts, obs, "interpretation") if obs.get("interpretation") else None
        for interp in obs.get("interpretation") or []:
            code = {c.get("code") for c in codings(interp)}
            if code & {"POS", "H"}:
                p.binary = "positive"
            elif code & {"NEG", "N"}:
                p.binary = "negative"
    return p


def _read_slot(p: Partial, holder: dict[str, Any], kind: str, ts: Terminology) -> None:
    """Read one Observation or component as the value set its code belongs to says."""
    if kind == "her2-ish-ratio":
        b = read_bound(holder, ts)
        if b:
            p.ratio, p.ratio_cmp = b
    elif kind == "her2-ish-copy-number":
        p.copy_number = _number(holder, ts)
    elif kind == "her2-cep17-copy-number":
        p.cep17 = _number(holder, ts)
    elif kind == "her2-ish":
        _read_ish_value(p, holder, ts)
    elif kind == "ihc-membrane-percent":
        b = read_bound(holder, ts)
        if b:
            p.membrane_pct, p.membrane_pct_cmp = b
    elif kind == "ihc-membrane-staining":
        p.membrane = _membrane_answer(holder, ts) or p.membrane
    elif any(k in holder for k in ("valueCodeableConcept", "valueString", "valueInteger", "valueQuantity")):
        _read_ihc_value(p, holder, ts)
        if p.ihc is None and kind == "her2-interpretation" and p.binary is None:
            p.binary = _binary(ts, holder)


# ---------------------------------------------------------------- sites

def _site(obs: dict[str, Any], specimens: dict[str, dict[str, Any]], ts: Terminology) -> tuple[str, str | None]:
    """(primary | metastatic | unknown, a short site text) from Specimen or bodySite."""
    concepts: list[Any] = []
    spec_ref = (obs.get("specimen") or {}).get("reference") if isinstance(obs.get("specimen"), dict) else None
    if isinstance(obs.get("specimen"), dict) and isinstance(obs["specimen"].get("display"), str):
        concepts.append({"text": obs["specimen"]["display"]})
    spec = specimens.get(spec_ref.split("/")[-1]) if isinstance(spec_ref, str) else None
    if spec:
        concepts += [spec.get("type"), (spec.get("collection") or {}).get("bodySite")]
    concepts.append(obs.get("bodySite"))
    concepts = [cc for cc in concepts if cc]
    for cc in concepts:  # any concept that tells metastatic from primary decides, wherever it sits
        label = next(iter(texts(cc)), None)
        if "metasta" in " ".join(texts(cc)).lower() or ts.match("metastatic-site", cc):
            return "metastatic", label
        if ts.match("primary-site", cc):
            return "primary", label
    return "unknown", next((t for cc in concepts for t in texts(cc)), None)


# ---------------------------------------------------------------- categorising

def ish_group(ratio: float | None, copies: float | None) -> int | None:
    """ASCO/CAP 2018 dual-probe ISH group (1-5), or None when a number is missing."""
    if ratio is None or copies is None:
        return None
    return _group(ratio >= 2.0, copies)


def _group(ratio_ge2: bool, copies: float) -> int:
    """Group 1 (ratio ≥2.0, ≥4.0 copies), 2 (ratio ≥2.0, <4.0), 3 (ratio <2.0, ≥6.0), 4 (4.0-<6.0), 5 (<4.0)."""
    if ratio_ge2:
        return 1 if copies >= 4.0 else 2
    if copies >= 6.0:
        return 3
    return 4 if copies >= 4.0 else 5


def ratio_at_least_2(ratio: float | None, cmp: str | None) -> bool | None:
    """Whether a (possibly bounded) HER2/CEP17 ratio is ≥2.0; None when the bound leaves it open."""
    if ratio is None:
        return None
    if cmp is None:
        return ratio >= 2.0
    if cmp in ("<", "<="):
        return False if (ratio <= 2.0 if cmp == "<" else ratio < 2.0) else None
    return True if ratio >= 2.0 else None  # ">", ">="


def _numeric_call(r: Her2Result) -> str | None:
    """The ISH call from numbers (ASCO/CAP 2018 groups, integrated with the concurrent IHC score)."""
    if r.ratio is None and r.copy_number is not None and r.cep17:
        r.ratio, r.ratio_cmp = round(r.copy_number / r.cep17, 2), None
        r.notes.append(f"HER2/CEP17 ratio {r.ratio:g} computed from the copy numbers")
    ge2 = ratio_at_least_2(r.ratio, r.ratio_cmp)
    if r.ratio is not None and ge2 is None:
        r.notes.append(f"ISH ratio {r.ratio_cmp}{r.ratio:g} cannot be placed above or below 2.0")
        return "amplified" if r.ihc == 3 else "equivocal"
    if ge2 is None:
        if r.copy_number is None:
            return None
        r.notes.append("ISH reported as HER2 copies per cell only (single-probe criteria)")
        return "amplified" if r.copy_number >= 6.0 else "not-amplified" if r.copy_number < 4.0 else "equivocal"
    if r.copy_number is None:
        r.notes.append("ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned")
        if r.ihc == 3:
            return "amplified"
        if not ge2 and (r.ihc in (0, 1) or (r.ihc is None and r.binary == "negative")):
            return "not-amplified"  # groups 3-5 are all not amplified with IHC 0-1+
        return "equivocal"
    group = r.ish_group = _group(ge2, r.copy_number)
    if group == 1:
        return "amplified"
    if group == 5:
        return "not-amplified"
    if r.ihc == 3 or (group == 3 and r.ihc == 2):
        return "amplified"
    if r.ihc in (0, 1, 2):
        if group == 4:
            r.notes.append("ISH group 4 (ratio <2.0, 4.0-<6.0 copies): not amplified, with a comment (ASCO/CAP 2018)")
        return "not-amplified"
    r.notes.append(f"ISH group {group} needs the concurrent IHC score to be interpreted")
    return "equivocal"


def _ish_call(r: Her2Result) -> str | None:
    """The ISH call: a stated call wins over numbers that disagree, with a note."""
    numeric = _numeric_call(r) if (r.ratio is not None or r.copy_number is not None) else None
    if r.ish in ("amplified", "not-amplified"):
        if numeric in ("amplified", "not-amplified") and numeric != r.ish:
            r.notes.append(f"the reported ISH call ({r.ish.replace('-', ' ')}) disagrees with its numbers "
                           f"({numeric.replace('-', ' ')}): the reported call is used")
        return r.ish
    return numeric or r.ish


def _ihc_zero(r: Her2Result) -> str:
    """IHC 0: ultralow, null, zero-unspecified, or an inconsistent report (DESIGN §6.1)."""
    if r.membrane == "faint-le-10":
        return ULTRALOW
    if r.membrane == "absent":
        return NULL
    pct, cmp = r.membrane_pct, r.membrane_pct_cmp
    if pct is None:
        return ZERO_UNSPECIFIED
    if cmp is None:
        if pct == 0:
            return NULL
        if pct <= 10:
            return ULTRALOW
    elif cmp in ("<", "<=") and pct <= 10:
        return ULTRALOW if pct > 0 else NULL
    elif cmp in (">", ">=") and pct >= 10 and not (cmp == ">=" and pct == 10):
        pass
    else:
        r.notes.append(f"IHC 0 with membrane staining in {cmp}{pct:g}% of cells: ≤10% or not cannot be told")
        return ZERO_UNSPECIFIED
    r.notes.append(f"IHC 0 with membrane staining in {cmp or ''}{pct:g}% of cells is contradictory "
                   "(>10% would be 1+): pathology review needed")
    return INCONSISTENT


def categorise(r: Her2Result) -> str | None:
    """DESIGN §6.1. Never upgrades: an IHC 0 without a staining statement stays zero-unspecified."""
    ish = _ish_call(r)
    r.ish = ish or r.ish
    if r.ihc == 3:
        return POSITIVE
    if r.ihc == 2:
        return POSITIVE if ish == "amplified" else LOW if ish == "not-amplified" else INDETERMINATE
    if r.ihc == 1:
        return POSITIVE if ish == "amplified" else LOW
    if r.ihc == 0:
        return POSITIVE if ish == "amplified" else _ihc_zero(r)
    # no IHC score: an amplified ISH or a reported positive decides; then a negative; then equivocal
    if ish == "amplified" or r.binary == "positive":
        return POSITIVE
    if ish == "not-amplified" or r.binary == "negative":
        return BINARY_ONLY
    if ish == "equivocal" or r.binary == "equivocal":
        return INDETERMINATE
    return None


# ---------------------------------------------------------------- grouping and the picture

def _supersede(partials: list[Partial], notes: list[str]) -> list[Partial]:
    """Drop results that an amended/corrected result replaces (derivedFrom, or same specimen,
    date and test with a later issue)."""
    dropped: set[str] = set()
    for p in partials:
        if p.resource.get("status") not in AMENDING_STATUS:
            continue
        for d in p.resource.get("derivedFrom") or []:
            if isinstance(d, dict) and isinstance(d.get("reference"), str):
                dropped.add(d["reference"].split("/")[-1])
        for q in partials:
            if q is p or q.resource.get("status") in AMENDING_STATUS:
                continue
            same = (q.when == p.when and _spec(q) == _spec(p) and q.has_ihc == p.has_ihc and q.has_ish == p.has_ish)
            if same and (parse_date(q.resource.get("issued")) or date.min) <= (
                    parse_date(p.resource.get("issued")) or date.max):
                dropped.add(str(q.resource.get("id")))
    for p in partials:
        if str(p.resource.get("id")) in dropped:
            notes.append(f"{ref_of(p.resource)} was replaced by an amended/corrected result")
    return [p for p in partials if str(p.resource.get("id")) not in dropped]


def _spec(p: Partial) -> str | None:
    s = p.resource.get("specimen")
    return s.get("reference") if isinstance(s, dict) else None


def _split_readings(key: tuple[Any, ...], groups: dict[tuple[Any, ...], list[Partial]],
                    sites: dict[tuple[Any, ...], tuple[str, str | None]]) -> None:
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


_BUNDLES = (("ihc", "membrane", "membrane_pct", "membrane_pct_cmp"), ("ratio", "ratio_cmp"))
_SINGLE = ("membrane", "membrane_pct", "ish", "copy_number", "cep17", "binary")


def _merge(group: list[Partial], site: tuple[str, str | None]) -> Her2Result:
    """One result from the readings of one specimen: final/amended/corrected outrank preliminary, and
    among equals the later `issued`, then the later date, wins. An IHC score brings its own staining
    statement (never mixed with another reading's)."""
    group = sorted(group, key=lambda p: (*result_rank(p.resource), p.when or date.min))
    r = Her2Result(category=None, when=None, refs=[ref_of(p.resource) for p in group])
    r.site_kind, r.site = site
    for p in group:
        r.when = max(filter(None, (r.when, p.when)), default=None)
        for attr in _SINGLE:
            if getattr(p, attr) is not None:
                setattr(r, attr, getattr(p, attr))
        for bundle in _BUNDLES:
            if getattr(p, bundle[0]) is not None:
                for attr in bundle:
                    setattr(r, attr, getattr(p, attr))
        r.by_text = r.by_text or p.by_text
        r.notes.extend(p.notes)
        r.specimen_ref = r.specimen_ref or _spec(p)
    final = [p for p in group if p.resource.get("status") != "preliminary"]
    for p in group:
        if p.resource.get("status") == "preliminary":
            r.notes.append(f"{ref_of(p.resource)} is preliminary" + (" and outranked by the final result" if final
                                                                     else ""))
    stated = next((p.stated for p in reversed(group) if p.stated), None)
    r.category = categorise(r)
    if r.category is None and stated:
        r.category = stated
        r.notes.append(f"category {CATEGORY_LABEL[stated]} as stated in the report; no score recorded")
    return r


def build_picture(observations: dict[str, list[dict[str, Any]]], specimens: dict[str, dict[str, Any]],
                  ts: Terminology) -> Her2Picture:
    """All HER2 results of the patient, categorised, and the current picture."""
    notes: list[str] = []
    partials: list[tuple[Partial, tuple[str, str | None]]] = []
    for kind in ("her2-ihc", "her2-interpretation", "her2-ish", "her2-ish-ratio", "her2-ish-copy-number",
                 "her2-cep17-copy-number"):
        for obs in observations[kind]:  # the status policy was applied at extraction
            partials.append((read_observation(obs, kind, ts), _site(obs, specimens, ts)))
    kept = {id(p) for p in _supersede([p for p, _ in partials], notes)}
    partials = [(p, s) for p, s in partials if id(p) in kept]
    groups: dict[tuple[Any, ...], list[Partial]] = {}
    sites: dict[tuple[Any, ...], tuple[str, str | None]] = {}
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
            if when and ihc_when and 0 <= (when - ihc_when).days <= PAIR_ISH_DAYS and (
                    sites[other][0] == sites[key][0] or "unknown" in (sites[other][0], sites[key][0])):
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
            notes.append(f"the latest result ({CATEGORY_LABEL[current.category]}, {fmt(current.when)}) differs from "
                         f"an earlier sample ({CATEGORY_LABEL[earlier_low.category]}, {fmt(earlier_low.when)})")
    return Her2Picture(results, current, ever_positive, discordant, notes, earlier_low)
