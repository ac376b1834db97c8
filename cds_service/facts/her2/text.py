"""HER2 in free text: the score, membrane staining, ISH call or stated category a phrase gives."""

from __future__ import annotations

import re

from cds_service.facts.her2.model import LOW, NULL, ULTRALOW

ZERO_PLUS = re.compile(r"(?<![\d.])0\s*\+(?!\s*[/-]?\s*[1-3])")  # "0+", not "0-1+" nor "0+/1+"
_SCORE_PLUS = re.compile(r"(?<![\d.])([0-3])\s*\+")
_SCORE_WORD = re.compile(r"(?:score|ihc|her2(?:/neu)?)\s*(?:of|is|=|:)?\s*\(?\s*([0-3])(?![\d.%+])")
_BARE_ZERO = re.compile(r"^\s*\(?0\)?\s*(?:$|[(,;:/-]|\s+(?:ultra|null|no |with|faint))")
_ZERO_PAREN = re.compile(r"\(\s*0\s*\)")
_ULTRALOW = re.compile(
    r"ultra[\s-]?low|faint[^.;]*?(?:≤|<=|<|less than|up to|no more than)\s*10\s*%"
    r"|(?:≤|<=|<|less than|up to)\s*10\s*%[^.;]*faint|barely perceptible"
)
_NULL = re.compile(
    r"her2[\s-]?null|\bnull\b|no (?:\w+ )?(?:membrane )?staining|absen(?:t|ce of) (?:\w+ )?staining"
    r"|without (?:\w+ )?staining|complete absence"
)
STATED = [
    (re.compile(r"her2[\s-]?ultra[\s-]?low"), ULTRALOW),
    (re.compile(r"her2[\s-]?low"), LOW),
    (re.compile(r"her2[\s-]?null"), NULL),
]
_NOT_AMP = re.compile(r"not[\s-]+amplified|non[\s-]?amplified|no amplification|without amplification|unamplified")
_AMP = re.compile(r"(?<!not )(?<!not-)(?<!non-)(?<!non )(?<!non)amplified|amplification")
_EQUIVOCAL = re.compile(r"equivocal|borderline")
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")
_RANGE = re.compile(r"(?<![\d.])([0-3])\s*\+?\s*(?:-|–|/|to|or)\s*([0-3])\s*\+")
_FAINT_PCT = re.compile(r"(?:faint|barely perceptible|weak|incomplete)[^.;]*?(\d+(?:\.\d+)?)\s*%")
ISH_WORD = re.compile(r"(?<![a-z])(?:fish|sish|cish|dish|ish|in[\s-]situ hybridi[sz]ation)(?![a-z])")


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


_ISH_SIGN = re.compile(r"[\s:=(-]*(negative|neg|positive|pos)\b")


def ish_in_ihc_text(text: str) -> str | None:
    """An ISH call reported in the same text as the IHC score ("2+; FISH not amplified", "IHC 2+/ISH negative":
    negative or positive right after the ISH word is its call)."""
    m = ISH_WORD.search(text.lower())
    if not m:
        return None
    sign = _ISH_SIGN.match(text.lower(), m.end())
    if sign:
        return "not-amplified" if sign.group(1).startswith("neg") else "amplified"
    return ish_from_text(text[m.end() :])


def _first_label(text: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    """The label of the first pattern (in table order) found in text."""
    low = text.lower()
    return next((label for regex, label in table if regex.search(low)), None)


def membrane_from_text(text: str) -> str | None:
    return _first_label(text, ((_ULTRALOW, "faint-le-10"), (_NULL, "absent")))


def ish_from_text(text: str) -> str | None:
    return _first_label(text, ((_NOT_AMP, "not-amplified"), (_EQUIVOCAL, "equivocal"), (_AMP, "amplified")))
