"""The facts of one chart: everything the rules read about the patient, each with its evidence and unknowns. What
belongs to the request (hook, drafts, what could not be fetched) is facts/request.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, TypeVar

from cds_service.facts.dosing import DoseHistory, dose_history
from cds_service.facts.evidence import Evidence
from cds_service.facts.her2 import Her2Picture, build_picture
from cds_service.facts.her2.history import erbb2_sequencing, positive_history
from cds_service.facts.ild_risk import Exposure, IldRisk, derive_ild
from cds_service.facts.kept import kept
from cds_service.facts.receptors import HrStatus, hr_status
from cds_service.facts.setting import Setting, derive_setting
from cds_service.facts.therapy import TherapyHistory, derive_therapy
from cds_service.fhir.extraction import Extracted, extract
from cds_service.fhir.primitives import effective_date, latest_day, ref_of
from cds_service.fhir.read import concept, items
from cds_service.fhir.terminology import HER2_SETS, Terminology, first_text
from cds_service.fhir.validation import content_key

T = TypeVar("T")


@dataclass
class Facts:
    """The patient's HER2 and treatment picture, as the rules see it (no raw JSON, no HTTP): a function of the
    chart's resources and today's date alone, so the memo may keep it."""

    today: date
    her2: Her2Picture
    hr: HrStatus
    setting: Setting
    therapy: TherapyHistory
    ild: IldRisk
    later_metastatic_biopsy: Evidence | None
    data_notes: list[str] = field(default_factory=list)  # the chart's records set aside, and why
    her2_positive_history: list[Evidence] = field(default_factory=list)  # DESIGN §6.1, any route
    erbb2_gain: list[Evidence] = field(default_factory=list)  # ERBB2 amplification / gain by sequencing
    erbb2_other: list[Evidence] = field(default_factory=list)  # other ERBB2 findings by sequencing (context)
    doses: DoseHistory = field(default_factory=DoseHistory)
    chest_imaging: list[Evidence] = field(default_factory=list)
    respiratory: list[Evidence] = field(default_factory=list)  # respiratory symptoms recorded as conditions

    @property
    def triple_negative(self) -> bool:
        return (
            self.hr.status == "negative"
            and self.her2.category not in (None, "positive")
            and not self.her2.ever_positive
        )


def _later_metastatic_biopsy(ex: Extracted, her2: Her2Picture, ts: Terminology) -> Evidence | None:
    """A biopsy of a metastatic site after the latest HER2 result, when no result is from metastatic tissue."""
    if not her2.current or any(r.site_kind == "metastatic" for r in her2.results):
        return None
    latest = her2.current.when
    for proc in ex.procedures["biopsy"]:
        when = effective_date(proc)
        sites = list(items(proc, "bodySite")) + [concept(proc, "code")]
        if when and latest and when > latest and any(ts.match("metastatic-site", s) for s in sites):
            return Evidence(ref_of(proc), when, "biopsy of a metastatic site after the latest HER2 result")
    return None


def tdxd_exposure(therapy: TherapyHistory) -> Exposure | None:
    """First T-DXd dose to the last (open while it continues)."""
    starts = [r.start for r in therapy.tdxd if r.start]
    if not starts:
        return None
    ongoing = therapy.tdxd_active and any(r.ongoing for r in therapy.tdxd)
    last = max((latest_day(d) for r in therapy.tdxd if (d := r.end or r.start)), default=None)
    return Exposure(min(starts), None if ongoing else last)


def _kept(ts: Terminology, what: str, inputs: Any, build: Callable[[], T]) -> T:
    """build(), kept by the bytes of everything it reads (inputs) so that a chart that changed elsewhere (a new
    lab result) does not rebuild it; built afresh when the inputs cannot be written as bytes. What is kept is
    shared by later calls: never changed after it is built (derive replaces, the rules only read)."""
    key = content_key(inputs)
    found: T = build() if key is None else kept(ts, (what, key), build)
    return found


def derive(resources: list[dict[str, Any]], ts: Terminology, today: date) -> Facts:
    """Build the facts of a chart from its resources (prefetched or fetched)."""
    ex = extract(resources, ts)
    obs = ex.observations
    her2_obs = {k: obs[k] for k in HER2_SETS}
    her2 = replace(
        _kept(ts, "her2", (her2_obs, ex.specimens), lambda: build_picture(her2_obs, ex.specimens, ts)),
        unreadable=[ref for vs, refs in ex.unreadable.items() if vs.startswith("her2-") for ref in refs],
    )
    receptors = (obs["er"], obs["pr"], obs["hr-combined"])
    hr = _kept(ts, "hr", receptors, lambda: hr_status(obs["er"], obs["pr"], ts, obs["hr-combined"]))
    setting = _kept(
        ts, "setting", (ex.conditions, obs["staging"]), lambda: derive_setting(ex.conditions, obs["staging"], ts)
    )
    therapy = derive_therapy(
        ex.meds,
        ex.observations["disease-status"],
        setting.advanced_start,
        setting.advanced,
        ts,
        today,
        setting.distant,
    )
    ild = derive_ild(
        ex.conditions,
        ex.procedures,
        setting.lung_metastases,
        tdxd_exposure(therapy),
        ts,
        ex.observations["renal-function"],
        ex.observations["ild"],
    )
    history = positive_history(
        her2,
        ex.report_texts,
        setting.her2_positive_dx,
        [(r.ref, r.start, r.ingredient) for r in therapy.her2_directed],
    )
    gains, other = erbb2_sequencing(obs["erbb2-genomic"])
    return Facts(
        today=today,
        her2=her2,
        hr=hr,
        setting=setting,
        therapy=therapy,
        ild=ild,
        later_metastatic_biopsy=_later_metastatic_biopsy(ex, her2, ts),
        data_notes=ex.notes,
        her2_positive_history=history,
        erbb2_gain=gains,
        erbb2_other=other,
        doses=dose_history(ex.meds, ex.weights),
        chest_imaging=[
            Evidence(ref_of(p), effective_date(p), f"chest imaging: {first_text(p.get('code'), 'chest imaging')}")
            for p in ex.procedures["chest-imaging"]
        ],
        respiratory=[
            Evidence(ref_of(c), effective_date(c), m.describe())  # onset, else recordedDate
            for c, m in ex.conditions["respiratory-symptom"]
        ],
    )
