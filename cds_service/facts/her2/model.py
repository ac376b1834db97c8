"""HER2 results as data: the categories, the values a test reports, one Observation's reading (Partial), one
result per specimen (Her2Result) and the patient's picture."""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from datetime import date
from typing import Any, Literal

from cds_service.fhir.primitives import fmt

SiteKind = Literal["primary", "metastatic", "unknown"]

POSITIVE, LOW, ULTRALOW, NULL = "positive", "low", "ultralow", "null"
INDETERMINATE, ZERO_UNSPECIFIED, BINARY_ONLY = "indeterminate", "zero-unspecified", "binary-only"
INCONSISTENT = "inconsistent"
CATEGORY_LABEL = {
    POSITIVE: "HER2-positive",
    LOW: "HER2-low",
    ULTRALOW: "HER2-ultralow",
    NULL: "HER2-null (IHC 0, no staining)",
    INDETERMINATE: "HER2 indeterminate (IHC 2+ without ISH, or ISH that cannot be interpreted)",
    ZERO_UNSPECIFIED: "HER2 IHC 0 without a membrane-staining statement",
    BINARY_ONLY: "HER2-negative (no IHC score reported)",
    INCONSISTENT: "HER2 IHC 0 with staining in >10% of cells (inconsistent report)",
}


def _value(bundle: str | None = None, alone: bool = True) -> Any:
    """A reported value. When readings of one specimen are merged, a value `alone` is taken from any reading
    that has it; a value in a `bundle` comes with its bundle's first value (an IHC score brings its own staining
    statement, a ratio its own comparator), never mixed with another reading's."""
    return field(default=None, metadata={"bundle": bundle, "alone": alone})


@dataclass(kw_only=True)
class Her2Values:
    """What a HER2 test reports: IHC score and membrane staining, ISH call and numbers, an interpretation."""

    ihc: int | None = _value("ihc", alone=False)
    membrane: str | None = _value("ihc")  # "absent" | "faint-le-10" | "notation" (a bare "0+")
    membrane_pct: float | None = _value("ihc")
    membrane_pct_cmp: str | None = _value("ihc", alone=False)
    ish: str | None = _value()  # "amplified" | "not-amplified" | "equivocal"
    ratio: float | None = _value("ratio", alone=False)
    ratio_cmp: str | None = _value("ratio", alone=False)
    copy_number: float | None = _value()
    cep17: float | None = _value()
    binary: str | None = _value()  # "positive" | "negative" | "equivocal"


VALUES: tuple[Field[Any], ...] = fields(Her2Values)
# bundle name -> its members, leader first (field order)
BUNDLES: dict[str, tuple[str, ...]] = {
    bundle: tuple(f.name for f in VALUES if f.metadata["bundle"] == bundle)
    for bundle in dict.fromkeys(f.metadata["bundle"] for f in VALUES if f.metadata["bundle"])
}
ALONE = tuple(f.name for f in VALUES if f.metadata["alone"])


def merge_values(into: Her2Values, reading: Her2Values) -> None:
    """Take what a later-ranked reading reports (see `_value`)."""
    for name in ALONE:
        if getattr(reading, name) is not None:
            setattr(into, name, getattr(reading, name))
    for members in BUNDLES.values():
        if getattr(reading, members[0]) is not None:
            for name in members:
                setattr(into, name, getattr(reading, name))


@dataclass(kw_only=True)
class Partial(Her2Values):
    """What one Observation says about HER2 (any subset of IHC, ISH, interpretation)."""

    resource: dict[str, Any]
    when: date | None
    stated: str | None = None  # a category the report states in words (HER2-low ...)
    by_text: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def has_ihc(self) -> bool:
        return self.ihc is not None

    @property
    def has_ish(self) -> bool:
        return self.ish is not None or self.ratio is not None or self.copy_number is not None or self.cep17 is not None


@dataclass(kw_only=True)
class Her2Result(Her2Values):
    """One HER2 test result (IHC and/or ISH on one specimen) and its category."""

    category: str | None
    when: date | None
    refs: list[str]
    ish_group: int | None = None
    site_kind: SiteKind = "unknown"
    site: str | None = None
    specimen_ref: str | None = None
    by_text: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def by_notation(self) -> bool:
        """Ultralow only by the "0+" notation: never asserted (DESIGN §6.1)."""
        return self.category == ULTRALOW and self.membrane == "notation"

    @property
    def method(self) -> str:
        parts = [
            p
            for p, present in (
                ("IHC", self.ihc is not None),
                ("ISH", self.ish is not None or self.ratio is not None or self.copy_number is not None),
            )
            if present
        ]
        return "+".join(parts) or "interpretation only"

    def _membrane_text(self) -> str:
        if self.membrane == "faint-le-10":
            return "faint/incomplete membrane staining ≤10%"
        if self.membrane == "absent":
            return "no membrane staining"
        if self.membrane == "notation":
            return 'reported as "0+" (ultralow by notation; membrane staining not stated)'
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
        where = self.site or (
            "metastatic site"
            if self.site_kind == "metastatic"
            else "primary tumour"
            if self.site_kind == "primary"
            else "specimen site not recorded"
        )
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
