"""The worklist's files: CSV for a spreadsheet, JSON (each row with its cards as an EHR would show them), an HTML
page with counts and a chart, FHIR (a transaction Bundle: a Task per patient whose HER2 needs re-scoring and a List
of the patients, for an EHR to import), and the summary. They hold patient identifiers (PHI): each is written
readable by its owner only. Record text in them is inert: one plain line per cell, escaped on the page, never a
spreadsheet formula."""

from __future__ import annotations

import csv
import html
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from cds_service.fhir.inert import csv_cell, one_line
from cds_service.report import bar_chart
from cds_service.rules.decision import REASONS
from cds_service.rules.registry import TOPICS
from cds_service.sweep.files import private_text

OUTPUTS = ("worklist.csv", "worklist.json", "worklist.html", "worklist-fhir.json", "summary.json")
# the CSV's columns, in order, and what each means (docs/sweep.md lists them)
COLUMNS: dict[str, str] = {
    "patient_id": "the Patient's id in the export (the EHR's FHIR id)",
    "mrn": "medical record number (the identifier typed MR, else the first identifier)",
    "name": "the patient's name as recorded",
    "birth_date": "date of birth",
    "patient_record": "whether the export holds the Patient resource ('not in export': records name a patient the "
    "export does not have)",
    "needs": "the cards a clinician opening this chart would see, by topic",
    **{
        col: text
        for t in TOPICS
        for col, text in (
            (f"{t.config_key}_reason", f"why the {t.label} card, as a code (see the reason table)"),
            (f"{t.config_key}_summary", f"the {t.label} card's summary, as the EHR would show it"),
        )
    },
    "tdxd_pathways": "the T-DXd label pathways the card names (DB-06: HER2-low/ultralow HR-positive after endocrine "
    "therapy; DB-04: HER2-low after chemotherapy)",
    "her2_latest": "the latest HER2 result the card rests on: score, staining, ISH, sample",
    "her2_date": "its date",
    "her2_sample": "the sample it came from (site, or primary / metastatic)",
    "hr_status": "hormone-receptor status (positive, negative, unknown)",
    "setting": "metastatic or unresectable setting, and since when",
    "endocrine_lines": "endocrine therapy lines in the metastatic setting, with their outcome",
    "chemotherapy_lines": "chemotherapy lines in the metastatic setting, with their outcome",
    "unknowns": "what the service could not determine (a criterion it could not check)",
    "evidence": "each card's evidence lines, with the records (Type/id) they come from",
    "records_set_aside": "this patient's records set aside as not valid FHIR, or not final",
}
# what could not be read, by the count that says it (summary.json), in the words of the page and of the command
PROBLEMS = {
    "malformed": "lines that are not a FHIR resource (not JSON, no resourceType)",
    "damaged-files": "files damaged or truncated (read up to the damage)",
    "no-patient": "records with no readable patient reference",
    "patients-without-patient-record": "patients whose Patient resource is not in the export (judged all the same)",
    "records-set-aside": "records set aside by the facts (not valid FHIR, or not final)",
    "patients-not-evaluated": "patients whose facts could not be derived (cards say 'could not evaluate')",
}
EXPORT_ERRORS = "errors the export itself reported (its manifest's error files)"
RESCORE_KEY = "her2_rescore"
CELL_CAP = 32_000  # characters of one CSV cell (a spreadsheet holds 32,767): the evidence whole
REASON_SYSTEM = "http://her2-cds.org/fhir/CodeSystem/card-reason"  # this service's own codes (rules/decision.REASONS)


def write_worklist(out: Path, rows: Iterable[dict[str, Any]], summary: dict[str, Any]) -> list[Path]:
    """The files in out from rows in their order, streamed (a worklist of any length is never held whole), each
    renamed into place when complete, owner-readable only; summary.json last: present means the rest is whole."""
    names = [n for n in OUTPUTS if n != "summary.json"]
    tmp = {name: private_text(out / f"{name}.tmp") for name in names}
    try:
        table = csv.writer(tmp["worklist.csv"])
        table.writerow(list(COLUMNS))
        tmp["worklist.json"].write("[")
        tmp["worklist.html"].write(html_head(summary))
        tmp["worklist-fhir.json"].write('{"resourceType": "Bundle", "type": "transaction", "entry": [\n')
        as_of, listed = str(summary.get("as_of", "")), []
        for i, row in enumerate(rows):
            table.writerow([csv_cell(row.get(col, ""), CELL_CAP) for col in COLUMNS])
            tmp["worklist.json"].write(("," if i else "") + "\n" + orjson.dumps(row).decode())
            tmp["worklist.html"].write(html_row(row))
            if (task := rescore_task(row, as_of)) is not None:
                tmp["worklist-fhir.json"].write(
                    orjson.dumps(_entry(task, f"{as_of}/task/{row['patient_id']}")).decode()
                )
                tmp["worklist-fhir.json"].write(",\n")
            listed.append(
                {
                    "item": {"reference": f"Patient/{row['patient_id']}"},
                    "flag": {"text": one_line(row.get("needs", ""))},
                }
            )
        tmp["worklist.json"].write("\n]\n")
        tmp["worklist.html"].write(html_tail(summary, bool(listed)))
        tmp["worklist-fhir.json"].write(orjson.dumps(_entry(worklist_list(listed, as_of), f"{as_of}/list")).decode())
        tmp["worklist-fhir.json"].write("\n]}\n")
    finally:
        for f in tmp.values():
            f.close()
    for name in names:
        os.replace(out / f"{name}.tmp", out / name)
    summary_file = private_text(out / "summary.json.tmp")
    with summary_file:
        summary_file.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    os.replace(out / "summary.json.tmp", out / "summary.json")
    return [out / name for name in OUTPUTS]


def reason_counts(summary: dict[str, Any]) -> Counter[tuple[str, str]]:
    """Patients by (reason, topic) of the cards shown, from the judges' counts (`card:<topic>:<reason>`)."""
    counts: Counter[tuple[str, str]] = Counter()
    for key, n in summary.get("counts", {}).items():
        parts = key.split(":")
        if len(parts) == 3 and parts[0] == "card":
            counts[(parts[2], parts[1])] += n
    return counts


_SHOWN = ["patient_id", "mrn", "name", "needs"] + [f"{t.config_key}_reason" for t in TOPICS]
_SHOWN += ["tdxd_pathways", "her2_latest", "her2_date", "her2_sample", "hr_status", "setting", "unknowns"]


def html_head(summary: dict[str, Any]) -> str:
    """The page down to the worklist table's first row: counts, chart, reasons."""
    counts = reason_counts(summary)
    by_topic: Counter[str] = Counter()
    for (_, topic), n in counts.items():
        by_topic[topic] += n
    reasons = [r for r in REASONS if any(counts.get((r, t.code)) for t in TOPICS)]
    chart = bar_chart("chart-reasons", "Patients by reason", reasons, [t.code for t in TOPICS], dict(counts), True)
    e = html.escape
    reason_rows = "".join(
        f"<tr><td>{e(r)}</td><td>{e(REASONS[r])}</td><td>{sum(counts.get((r, t.code), 0) for t in TOPICS)}</td></tr>"
        for r in reasons
    )
    c = summary.get("counts", {})
    totals = [("Patients judged", c.get("patients", 0)), ("On the worklist", summary.get("rows", 0))] + [
        (t.label, by_topic.get(t.code, 0)) for t in TOPICS
    ]
    head = "".join(f"<th>{e(col)}</th>" for col in _SHOWN)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>her2-cds worklist as of {e(summary.get("as_of", ""))}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }} .phi {{ background: #fff4d6; padding: .5em 1em; border: 1px solid #e0c060; }}
.totals span {{ display: inline-block; margin-right: 2em; }}
</style></head><body>
<h1>her2-cds worklist, as of {e(summary.get("as_of", ""))}</h1>
<p class="phi"><strong>Protected health information.</strong> This page names patients: keep it where the EHR's
data may be kept. It is a review aid for a tumour board or a pathology department, not an order: each row says what
a clinician opening the chart would be shown, and why.</p>
<p class="totals">{"".join(f"<span>{e(label)}: {n}</span>" for label, n in totals)}</p>
<p>Export: {e(str(summary.get("export", "")))} · {summary.get("files", 0)} file(s) ·
{c.get("lines", 0)} lines read · {summary.get("cohort", 0)} patients with breast cancer or T-DXd on record.</p>
<h2>Patients by reason</h2>
{chart}
<table id="reasons"><thead><tr><th>reason</th><th>meaning</th><th>patients</th></tr></thead>
<tbody>{reason_rows}</tbody></table>
<h2>Worklist</h2>
<table id="worklist"><thead><tr>{head}</tr></thead><tbody>
"""


def html_row(row: dict[str, Any]) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(one_line(str(row.get(c, ''))))}</td>" for c in _SHOWN) + "</tr>\n"


def html_tail(summary: dict[str, Any], any_row: bool) -> str:
    """The rest of the page: what could not be read."""
    e = html.escape
    c = summary.get("counts", {})
    problems = [(what, c.get(kind, 0)) for kind, what in PROBLEMS.items()]
    problems.append((EXPORT_ERRORS, summary.get("export_reported_errors", 0)))
    problem_rows = "".join(f"<tr><td>{e(what)}</td><td>{n}</td></tr>" for what, n in problems)
    empty = "" if any_row else f'<tr><td colspan="{len(_SHOWN)}">no patient needs anything</td></tr>'
    return f"""{empty}</tbody></table>
<p>Every column, with the evidence lines: worklist.csv.</p>
<h2>What could not be read</h2>
<table id="problems"><thead><tr><th>what</th><th>count</th></tr></thead><tbody>{problem_rows}</tbody></table>
</body></html>
"""


def rescore_task(row: dict[str, Any], as_of: str) -> dict[str, Any] | None:
    """The Task for a patient whose HER2 needs re-scoring (requested, a proposal: a person decides), or None."""
    reason = row.get(f"{RESCORE_KEY}_reason")
    if not reason:
        return None
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "proposal",
        "priority": "routine",
        "code": {"text": "HER2 re-scoring / pathology review (HER2-low and HER2-ultralow)"},
        "description": one_line(row.get(f"{RESCORE_KEY}_summary", "")),
        "for": {"reference": f"Patient/{row['patient_id']}"},
        "authoredOn": as_of,
        "reasonCode": {
            "coding": [{"system": REASON_SYSTEM, "code": reason, "display": REASONS.get(reason, reason)}],
            "text": REASONS.get(reason, reason),
        },
        "note": [{"text": one_line(row.get("her2_latest", "")) or "no HER2 result"}],
    }


def worklist_list(items: list[dict[str, Any]], as_of: str) -> dict[str, Any]:
    """The List of the worklist's patients, each flagged with what it needs."""
    return {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "title": f"her2-cds worklist as of {as_of}",
        "date": as_of,
        "note": [{"text": "A review aid from her2-cds sweep, not an order."}],
        **({"entry": items} if items else {"emptyReason": {"text": "no patient needs anything"}}),
    }


def _entry(resource: dict[str, Any], name: str) -> dict[str, Any]:
    """A transaction entry; its fullUrl the same on every run of the same sweep (a name-based uuid)."""
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, REASON_SYSTEM + '/' + name)}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
