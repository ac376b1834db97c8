"""Pathology reports: the HER2/ER/PR results a DiagnosticReport references (whatever their code),
and its conclusion read as text when it holds no structured result of that kind."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from cds_service.fhir.primitives import ref_of
from cds_service.fhir.terminology import HER2_SETS, Terminology, codings, texts

HER2_KINDS = frozenset(HER2_SETS)
_HER2 = re.compile(r"(?<![a-z0-9])(?:her-?2(?:/neu)?|erbb-?2|c-?erbb-?2)(?![a-z0-9])", re.I)
_ER = re.compile(r"(?<![a-z0-9])(?:o?estrogen receptors?|er)(?![a-z0-9])", re.I)
_PR = re.compile(r"(?<![a-z0-9])(?:progesterone receptors?|pg?r)(?![a-z0-9])", re.I)
_ISH = re.compile(r"(?<![a-z])(?:fish|sish|cish|dish|ish|in[\s-]situ hybridi[sz]ation|amplification)(?![a-z])", re.I)
_RATIO = re.compile(r"ratio|/\s*cep\s*17|:\s*cep\s*17", re.I)
_CEP17 = re.compile(r"cep\s*17|chromosome 17", re.I)
_COPIES = re.compile(r"cop(?:y|ies)|signals", re.I)
_MARKERS = ((_HER2, "her2-ihc"), (_ER, "er"), (_PR, "pr"))
_SENTENCE_END = re.compile(r"\.(?:\s|$)|;|\n")


_OBS_REF = re.compile(r"(?:^|/)Observation/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def result_refs(report: dict[str, Any]) -> list[str]:
    """`Observation/id` of each result the report references (relative, absolute or versioned)."""
    out = []
    for ref in report.get("result") or []:
        target = ref.get("reference") if isinstance(ref, dict) else None
        m = _OBS_REF.search(target) if isinstance(target, str) else None
        if m:
            out.append(f"Observation/{m.group(1)}")
    return out


def is_pathology_report(report: dict[str, Any], ts: Terminology) -> bool:
    concepts = [*(report.get("category") or []), report.get("code")]
    return any(ts.match("pathology-report", cc) for cc in concepts if isinstance(cc, dict))


def pathology_reports(
    resources: list[dict[str, Any]], ts: Terminology, admit: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """The pathology DiagnosticReports that pass the status policy and validation."""
    out = []
    for r in resources:
        if r.get("resourceType") == "DiagnosticReport" and is_pathology_report(r, ts):
            admitted = admit(r)
            if admitted is not None:
                out.append(admitted)
    return out


def report_member_set(obs: dict[str, Any]) -> str | None:
    """What a result referenced by a pathology report is about, from its code's words (local codes)."""
    words = " ".join(texts(obs.get("code")) + [str(c.get("code", "")) for c in codings(obs.get("code"))])
    if _HER2.search(words) or (_CEP17.search(words) and _COPIES.search(words)):
        if _CEP17.search(words) and not _HER2.search(words):
            return "her2-cep17-copy-number"
        if _RATIO.search(words):
            return "her2-ish-ratio"
        if _ISH.search(words):
            return "her2-ish-copy-number" if _COPIES.search(words) else "her2-ish"
        return "her2-ihc"
    if _ER.search(words):
        return "er"
    if _PR.search(words):
        return "pr"
    return None


def with_report_context(obs: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The result as read: it names its report, and takes the report's specimen and date when it has none."""
    out = {**obs, "_report": report.get("id")}
    context = _report_context(report)
    if not obs.get("specimen") and "specimen" in context:
        out["specimen"] = context["specimen"]
    if not any(k in obs for k in ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")):
        out.update({k: v for k, v in context.items() if k != "specimen"})
    return out


def _report_context(report: dict[str, Any]) -> dict[str, Any]:
    """The report's dates and first specimen, as a result read from it carries them."""
    out: dict[str, Any] = {
        key: report[key] for key in ("effectiveDateTime", "effectivePeriod", "issued") if key in report
    }
    if isinstance(report.get("specimen"), list) and report["specimen"]:
        out["specimen"] = report["specimen"][0]
    return out


def statements(text: str) -> list[tuple[str, str]]:
    """(kind, phrase) for each HER2 / ER / PR statement in free text: a phrase runs from its marker to
    the next marker or the end of the sentence ("ER positive (95%), PR negative, HER2 1+")."""
    # the markers cannot overlap: each is a whole word
    marks = sorted((m.start(), m.end(), kind) for regex, kind in _MARKERS for m in regex.finditer(text))
    out = []
    for i, (start, end, kind) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        sentence = _SENTENCE_END.search(text, end, stop)
        close = sentence.start() if sentence else stop
        ish = _ISH.search(text, close, stop) if kind == "her2-ihc" and sentence else None
        if ish:  # "HER2: IHC 2+ (equivocal). FISH: not amplified": the ISH sentence belongs to the HER2 statement
            after = _SENTENCE_END.search(text, ish.end(), stop)
            close = after.start() if after else stop
        phrase = text[start:close].strip(" ,:")
        if len(phrase) > end - start:
            out.append((kind, phrase))
    return out


_TEXT_FORM_MAX = 65536


def report_text(report: dict[str, Any]) -> str:
    """All the words of a report: its conclusion, its conclusion codes' words and any small plain-text form."""
    parts = [report["conclusion"]] if isinstance(report.get("conclusion"), str) else []
    parts += [t for cc in report.get("conclusionCode") or [] for t in texts(cc)]
    for form in report.get("presentedForm") or []:
        data = form.get("data") if isinstance(form, dict) else None
        if (
            isinstance(data, str)
            and str(form.get("contentType", "")).startswith("text/plain")
            and len(data) < _TEXT_FORM_MAX
        ):
            try:
                parts.append(base64.b64decode(data, validate=True).decode("utf-8", "replace"))
            except (ValueError, binascii.Error):
                continue
    return "\n".join(parts)


def conclusion_statements(report: dict[str, Any], present: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Results read from the report's conclusion / conclusionCode for each kind (HER2, ER, PR) the report
    holds no structured result of. Each is an Observation-shaped reading that names the report."""
    parts = [report["conclusion"]] if isinstance(report.get("conclusion"), str) else []
    parts += [t for cc in report.get("conclusionCode") or [] for t in texts(cc)]
    blob = "\n".join(parts)
    have_her2 = bool(present & HER2_KINDS)
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for kind, phrase in statements(blob):
        structured = have_her2 if kind == "her2-ihc" else kind in present
        if kind in seen or structured:
            continue
        seen.add(kind)
        reading: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"{report.get('id')}-{kind}",
            "_ref": ref_of(report),
            "_report": report.get("id"),
            "_from_text": True,
            "status": report.get("status"),
            "code": {"text": f"{kind.split('-')[0].upper()} (pathology report conclusion)"},
            "valueString": phrase[:300],
            **_report_context(report),
        }
        out.append((kind, reading))
    return out
