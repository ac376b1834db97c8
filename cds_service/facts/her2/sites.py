"""Where a HER2 result was taken: primary tumour, metastatic site, or unknown, from Specimen or bodySite."""

from __future__ import annotations

from typing import Any

from cds_service.facts.her2.model import SiteKind
from cds_service.fhir.read import concept, obj, reference, string
from cds_service.fhir.terminology import Terminology, texts

Site = tuple[SiteKind, str | None]  # (primary | metastatic | unknown, a short site text)


def site_of(obs: dict[str, Any], specimens: dict[str, dict[str, Any]], ts: Terminology) -> Site:
    """(primary | metastatic | unknown, a short site text) from Specimen or bodySite."""
    concepts: list[Any] = []
    spec_ref = reference(obs, "specimen")
    if (display := string(obj(obs, "specimen"), "display")) is not None:
        concepts.append({"text": display})
    spec = specimens.get(spec_ref.split("/")[-1]) if isinstance(spec_ref, str) else None
    if spec:
        concepts += [concept(spec, "type"), obj(spec, "collection").get("bodySite")]
    concepts.append(obs.get("bodySite"))
    concepts = [cc for cc in concepts if cc]
    for cc in concepts:  # any concept that tells metastatic from primary decides, wherever it sits
        label = next(iter(texts(cc)), None)
        if "metasta" in " ".join(texts(cc)).lower() or ts.match("metastatic-site", cc):
            return "metastatic", label
        if ts.match("primary-site", cc):
            return "primary", label
    said = next((t for cc in concepts for t in texts(cc)), None)
    if said is None and spec is None and isinstance(spec_ref, str) and spec_ref.startswith("Specimen/"):
        said = "specimen not delivered"  # referenced, not sent (nor fetched): not known, rather than "not recorded"
    return "unknown", said
