"""DESIGN §6.1: the HER2 category of one result, as an ordered table (the first row that matches decides), and the
ISH call behind it (ASCO/CAP 2018 groups from the numbers, integrated with the concurrent IHC score). Pure: the
result is read, never changed."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts.her2.model import (
    BINARY_ONLY,
    CATEGORY_LABEL,
    INCONSISTENT,
    INDETERMINATE,
    LOW,
    NULL,
    POSITIVE,
    ULTRALOW,
    ZERO_UNSPECIFIED,
    Her2Values,
)
from cds_service.facts.thresholds import ISH_COPIES_HIGH, ISH_COPIES_LOW, ISH_RATIO, ULTRALOW_MAX

ANY = None  # a column that matches anything


@dataclass(frozen=True)
class Row:
    """One row of the table. Columns: the IHC score ("3+" .. "0", or "none"), the ISH call ("amplified",
    "not-amplified", "equivocal", or "none"), the membrane-staining statement of an IHC 0 ("faint ≤10%",
    "absent", ">10%", "not stated", "cannot be told"), and the reported interpretation when there is no score
    ("positive", "negative", "equivocal", "none"). ANY matches anything."""

    ihc: str
    ish: frozenset[str] | None
    staining: frozenset[str] | None
    reported: frozenset[str] | None
    category: str

    def matches(self, ihc: str, ish: str, staining: str, reported: str) -> bool:
        return (
            self.ihc == ihc
            and (self.ish is None or ish in self.ish)
            and (self.staining is None or staining in self.staining)
            and (self.reported is None or reported in self.reported)
        )


def _row(
    ihc: str,
    category: str,
    ish: set[str] | None = ANY,
    staining: set[str] | None = ANY,
    reported: set[str] | None = ANY,
) -> Row:
    return Row(
        ihc,
        frozenset(ish) if ish else None,
        frozenset(staining) if staining else None,
        frozenset(reported) if reported else None,
        category,
    )


HER2_TABLE: tuple[Row, ...] = (
    _row("3+", POSITIVE),
    _row("2+", POSITIVE, ish={"amplified"}),
    _row("2+", LOW, ish={"not-amplified"}),
    _row("2+", INDETERMINATE),  # no ISH, or equivocal: needs ISH
    _row("1+", POSITIVE, ish={"amplified"}),
    _row("1+", LOW),
    _row("0", POSITIVE, ish={"amplified"}),
    _row("0", ULTRALOW, staining={"faint ≤10%", "0+ notation"}),  # "0+": ultralow by notation, never asserted
    _row("0", NULL, staining={"absent"}),
    _row("0", INCONSISTENT, staining={">10%"}),  # that is the 1+ definition: re-score, never low by guess
    _row("0", ZERO_UNSPECIFIED, staining={"not stated", "cannot be told"}),  # never upgraded to ultralow
    _row("none", POSITIVE, ish={"amplified"}),
    _row("none", POSITIVE, reported={"positive"}),
    _row("none", BINARY_ONLY, ish={"not-amplified"}),
    _row("none", BINARY_ONLY, reported={"negative"}),
    _row("none", INDETERMINATE, ish={"equivocal"}),
    _row("none", INDETERMINATE, reported={"equivocal"}),
)


@dataclass(frozen=True)
class Interpretation:
    """A result's category and what it rests on: the ISH call used, the ratio (computed from the copy numbers
    when only they were given), the ASCO/CAP group, and notes for the card."""

    category: str | None
    ish: str | None
    ratio: float | None
    ratio_cmp: str | None
    ish_group: int | None
    notes: tuple[str, ...]


def ish_group(ratio: float | None, copies: float | None) -> int | None:
    """ASCO/CAP 2018 dual-probe ISH group (1-5), or None when a number is missing."""
    if ratio is None or copies is None:
        return None
    return _group(ratio >= ISH_RATIO.value, copies)


def _group(ratio_ge2: bool, copies: float) -> int:
    """Group 1 (ratio ≥2.0, ≥4.0 copies), 2 (ratio ≥2.0, <4.0), 3 (ratio <2.0, ≥6.0), 4 (4.0-<6.0), 5 (<4.0)."""
    if ratio_ge2:
        return 1 if copies >= ISH_COPIES_LOW.value else 2
    if copies >= ISH_COPIES_HIGH.value:
        return 3
    return 4 if copies >= ISH_COPIES_LOW.value else 5


def ratio_at_least_2(ratio: float | None, cmp: str | None) -> bool | None:
    """Whether a (possibly bounded) HER2/CEP17 ratio is ≥2.0; None when the bound leaves it open."""
    cut = ISH_RATIO.value
    if ratio is None:
        return None
    if cmp is None:
        return ratio >= cut
    if cmp in ("<", "<="):
        return False if (ratio <= cut if cmp == "<" else ratio < cut) else None
    return True if ratio >= cut else None  # ">", ">="


@dataclass
class _Ish:
    """The ISH call being worked out, with the numbers and notes it adds."""

    ratio: float | None
    ratio_cmp: str | None
    group: int | None = None


def _numeric_call(v: Her2Values, w: _Ish, notes: list[str]) -> str | None:
    """The ISH call from numbers (ASCO/CAP 2018 groups, integrated with the concurrent IHC score)."""
    if w.ratio is None and v.copy_number is not None and v.cep17:
        w.ratio, w.ratio_cmp = round(v.copy_number / v.cep17, 2), None
        notes.append(f"HER2/CEP17 ratio {w.ratio:g} computed from the copy numbers")
    ge2 = ratio_at_least_2(w.ratio, w.ratio_cmp)
    if w.ratio is not None and ge2 is None:
        notes.append(f"ISH ratio {w.ratio_cmp}{w.ratio:g} cannot be placed above or below 2.0")
        return "amplified" if v.ihc == 3 else "equivocal"
    if ge2 is None:
        if v.copy_number is None:
            return None
        notes.append("ISH reported as HER2 copies per cell only (single-probe criteria)")
        return (
            "amplified"
            if v.copy_number >= ISH_COPIES_HIGH.value
            else "not-amplified"
            if v.copy_number < ISH_COPIES_LOW.value
            else "equivocal"
        )
    if v.copy_number is None:
        notes.append("ISH ratio without HER2 copy number: ASCO/CAP group cannot be assigned")
        if v.ihc == 3:
            return "amplified"
        if not ge2 and (v.ihc in (0, 1) or (v.ihc is None and v.binary in (None, "negative"))):
            return "not-amplified"  # groups 3-5 are all not amplified with IHC 0-1+; no IHC here: it is asked for
        if ge2 and v.ihc is None and v.binary in (None, "positive"):
            notes.append("ISH ratio ≥2.0 with no IHC score or copy number: read as amplified (group 1 or 2)")
            return "amplified"
        return "equivocal"
    group = w.group = _group(ge2, v.copy_number)
    if group == 1:
        return "amplified"
    if group == 5:
        return "not-amplified"
    if v.ihc == 3 or (group == 3 and v.ihc == 2):
        return "amplified"
    if v.ihc in (0, 1, 2):
        if group == 4:
            notes.append("ISH group 4 (ratio <2.0, 4.0-<6.0 copies): not amplified, with a comment (ASCO/CAP 2018)")
        return "not-amplified"
    notes.append(f"ISH group {group} needs the concurrent IHC score to be interpreted")
    return "equivocal"


def _ish_call(v: Her2Values, w: _Ish, notes: list[str]) -> str | None:
    """The ISH call: a stated call wins over numbers that disagree, with a note."""
    numeric = _numeric_call(v, w, notes) if (v.ratio is not None or v.copy_number is not None) else None
    if v.ish in ("amplified", "not-amplified"):
        if numeric in ("amplified", "not-amplified") and numeric != v.ish:
            notes.append(
                f"the reported ISH call ({v.ish.replace('-', ' ')}) disagrees with its numbers "
                f"({numeric.replace('-', ' ')}): the reported call is used"
            )
        return v.ish
    return numeric or v.ish


def staining(v: Her2Values, notes: list[str]) -> str:
    """The membrane-staining statement of an IHC 0 result (the table's third column)."""
    if v.membrane == "faint-le-10":
        return "faint ≤10%"
    if v.membrane == "absent":
        return "absent"
    if v.membrane == "notation" and v.membrane_pct is None:
        return "0+ notation"
    pct, cmp, most = v.membrane_pct, v.membrane_pct_cmp, ULTRALOW_MAX.value
    if pct is None:
        return "not stated"
    if cmp is None:
        if pct == 0:
            return "absent"
        if pct <= most:
            return "faint ≤10%"
    elif cmp in ("<", "<=") and pct <= most:
        return "faint ≤10%" if pct > 0 else "absent"
    elif cmp in (">", ">=") and pct >= most and not (cmp == ">=" and pct == most):
        pass
    else:
        notes.append(f"IHC 0 with membrane staining in {cmp}{pct:g}% of cells: ≤10% or not cannot be told")
        return "cannot be told"
    notes.append(
        f"IHC 0 with membrane staining in {cmp or ''}{pct:g}% of cells is contradictory "
        "(>10% would be 1+): pathology review needed"
    )
    return ">10%"


def categorise(v: Her2Values) -> Interpretation:
    """DESIGN §6.1 by HER2_TABLE. Never upgrades: an IHC 0 without a staining statement stays zero-unspecified."""
    notes: list[str] = []
    work = _Ish(v.ratio, v.ratio_cmp)
    ish = _ish_call(v, work, notes)
    ihc = "none" if v.ihc is None else f"{v.ihc}+" if v.ihc else "0"
    stain = staining(v, notes) if v.ihc == 0 and ish != "amplified" else "-"
    row = next((r for r in HER2_TABLE if r.matches(ihc, ish or "none", stain, v.binary or "none")), None)
    return Interpretation(
        category=row.category if row else None,
        ish=ish or v.ish,
        ratio=work.ratio,
        ratio_cmp=work.ratio_cmp,
        ish_group=work.group,
        notes=tuple(notes),
    )


def _column(values: frozenset[str] | None) -> str:
    return "any" if values is None else " or ".join(sorted(v.replace("-", " ") for v in values))


def table_markdown() -> str:
    """HER2_TABLE as README shows it."""
    rows = [
        "| # | IHC | ISH | membrane staining (IHC 0) | reported (no IHC score) | category |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(HER2_TABLE, 1):
        rows.append(
            f"| {i} | {r.ihc} | {_column(r.ish)} | {_column(r.staining)} | {_column(r.reported)} | "
            f"{CATEGORY_LABEL[r.category]} |"
        )
    return "\n".join(rows) + "\n\nThe first row that matches decides; no row: the result cannot be read."
