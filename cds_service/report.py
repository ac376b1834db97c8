"""`her2-cds report`: what the service did, for a CDS committee. Reads the card ledger joined to feedback and
writes report.html (self-contained: inline CSS and SVG charts, nothing fetched) and one CSV per table."""

from __future__ import annotations

import csv
import html
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from cds_service.fhir.inert import csv_cell, one_line
from cds_service.fhir.override_reasons import Reason, by_any_code
from cds_service.fhir.terminology import load_terminology
from cds_service.rules.registry import TOPICS as REGISTRY
from cds_service.storage.feedback import feedback
from cds_service.storage.ledger import ledger

TOPICS = {t.code: t.label for t in REGISTRY}  # the registry's topics, as it lists them
OUTCOMES = ("accepted", "overridden", "no feedback")
COLOURS = {
    **{t.code: t.colour for t in REGISTRY},
    "accepted": "#2ca02c",
    "overridden": "#d62728",
    "no feedback": "#bbbbbb",
}


@dataclass
class Card:
    """One ledger row with its latest feedback."""

    uuid: str
    week: str
    topic: str
    pathways: list[str]
    indicator: str
    client: str
    ruleset: str
    held_back: str | None
    outcome: str = "no feedback"
    reason: str | None = None


@dataclass
class Tables:
    """Every table of the report: a title, a header and rows (what the CSV files hold)."""

    period: tuple[date, date]
    tables: dict[str, tuple[str, list[str], list[list[Any]]]] = field(default_factory=dict)


def _category(reason: Reason | None) -> str:
    """A reason's HL7 category, or why there is none."""
    if reason is None:
        return "(not a reason the cards offer)"
    return reason.category or "(none fits: this service's own code)"


def _week(when: datetime) -> str:
    return (when.date() - timedelta(days=when.weekday())).isoformat()


def load_cards(engine: Engine, since: date, until: date) -> list[Card]:
    """Ledger rows created in [since, until), each with the outcome of its latest feedback entry."""
    start = datetime.combine(since, time(), timezone.utc)
    end = datetime.combine(until, time(), timezone.utc)
    query = (
        select(ledger, feedback.c.outcome, feedback.c.override_reason_code, feedback.c.received_at)
        .select_from(ledger.outerjoin(feedback, feedback.c.card_uuid == ledger.c.card_uuid))
        .where(ledger.c.created_at >= start, ledger.c.created_at < end)
        .order_by(ledger.c.created_at, feedback.c.received_at)
    )
    cards: dict[str, Card] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=timezone.utc)
            card = cards.setdefault(
                r.card_uuid,
                Card(
                    r.card_uuid,
                    _week(created),
                    r.topic,
                    (r.pathways or "").split(",") if r.pathways else ["-"],
                    r.indicator,
                    r.client or "-",
                    r.ruleset_version,
                    r.held_back,
                ),
            )
            if r.outcome:  # rows come oldest feedback first: the last one wins
                card.outcome, card.reason = r.outcome, r.override_reason_code
    return list(cards.values())


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def build(cards: list[Card], since: date, until: date) -> Tables:
    """The report's tables from the cards (returned cards for outcomes; held-back ones counted apart)."""
    out = Tables((since, until))
    shown = [c for c in cards if c.held_back is None]
    weeks = sorted({c.week for c in cards})
    per_week = Counter((c.week, c.topic, c.held_back or "returned") for c in cards)
    kinds = ("returned", "shadow", "repeat", "snooze")
    out.tables["cards_per_topic_week"] = (
        "Cards per topic and week",
        ["week", "topic", *kinds],
        [
            [w, t] + [per_week[(w, t, k)] for k in kinds]
            for w in weeks
            for t in TOPICS
            if any(per_week[(w, t, k)] for k in kinds)
        ],
    )
    by_pathway: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for c in shown:
        for p in c.pathways:
            by_pathway[(c.topic, p)][c.outcome] += 1
    out.tables["outcomes_by_topic_pathway"] = (
        "Returned cards: accepted, overridden, no feedback, by topic and pathway",
        ["topic", "pathway", "returned", "accepted", "overridden", "no feedback", "accepted %", "overridden %"],
        [
            [
                t,
                p,
                sum(n.values()),
                n["accepted"],
                n["overridden"],
                n["no feedback"],
                _rate(n["accepted"], sum(n.values())),
                _rate(n["overridden"], sum(n.values())),
            ]
            for (t, p), n in sorted(by_pathway.items())
        ],
    )
    reasons = Counter((c.topic, c.reason or "(no reason given)") for c in shown if c.outcome == "overridden")
    known = by_any_code(load_terminology())
    out.tables["override_reasons"] = (
        "Override reasons (the reason as the EHR sent it, and its HL7 non-adherence category)",
        ["topic", "reason", "HL7 category", "overridden"],
        [[t, r, _category(known.get(r)), n] for (t, r), n in sorted(reasons.items())],
    )
    categories = Counter(_category(known.get(c.reason or "")) for c in shown if c.outcome == "overridden")
    out.tables["override_categories"] = (
        "Overrides by HL7 non-adherence category (comparable across sites)",
        ["HL7 category", "overridden"],
        [[k, n] for k, n in sorted(categories.items())],
    )
    by_client: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for c in shown:
        by_client[(c.client, c.topic)][c.outcome] += 1
    out.tables["outcomes_by_client"] = (
        "Returned cards by client (EHR issuer)",
        ["client", "topic", "returned", "accepted", "overridden", "no feedback"],
        [
            [cl, t, sum(n.values()), n["accepted"], n["overridden"], n["no feedback"]]
            for (cl, t), n in sorted(by_client.items())
        ],
    )
    by_week: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for c in shown:
        by_week[(c.week, c.topic)][c.outcome] += 1
    out.tables["outcomes_by_week"] = (
        "Returned cards by week: outcomes",
        ["week", "topic", "returned", "accepted", "overridden", "no feedback"],
        [
            [w, t, sum(n.values()), n["accepted"], n["overridden"], n["no feedback"]]
            for (w, t), n in sorted(by_week.items())
        ],
    )
    shadow = Counter((c.week, c.topic) for c in cards if c.held_back == "shadow")
    out.tables["shadow_mode"] = (
        "Shadow mode: cards derived and recorded, never returned",
        ["week", "topic", "cards"],
        [[w, t, n] for (w, t), n in sorted(shadow.items())],
    )
    held = Counter((c.topic, c.held_back) for c in cards if c.held_back in ("repeat", "snooze"))
    out.tables["held_back"] = (
        "Cards held back: snoozed after an override, or repeated within the window",
        ["topic", "why", "cards"],
        [[t, w, n] for (t, w), n in sorted(held.items())],
    )
    versions = Counter(c.ruleset for c in cards)
    out.tables["ruleset_versions"] = (
        "Rule-set versions that produced these cards",
        ["version", "cards"],
        [[v, n] for v, n in sorted(versions.items())],
    )
    return out


def write_csv(tables: Tables, out_dir: Path) -> list[Path]:
    paths = []
    for name, (_, header, rows) in tables.tables.items():
        path = out_dir / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([csv_cell(h) for h in header])
            writer.writerows([csv_cell(v) for v in row] for row in rows)  # a reason code is a client's text
        paths.append(path)
    return paths


def bar_chart(
    chart_id: str, title: str, groups: list[str], series: list[str], values: dict[tuple[str, str], int], stacked: bool
) -> str:
    """An inline SVG bar chart: one group of bars (or one stacked bar) per group; every bar carries its numbers
    in data attributes and a <title>."""
    width, height, left, bottom, top = 720, 260, 48, 40, 24
    top_value = (
        max(
            [
                sum(values.get((g, s), 0) for s in series)
                if stacked
                else max((values.get((g, s), 0) for s in series), default=0)
                for g in groups
            ]
            or [0]
        )
        or 1
    )
    slot = (width - left - 10) / max(len(groups), 1)
    bar_w = slot * 0.7 / (1 if stacked else max(len(series), 1))
    scale = (height - bottom - top) / top_value
    parts = [
        f'<svg id="{chart_id}" role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#333"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{top_value}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, g in enumerate(groups):
        x0 = left + i * slot + slot * 0.15
        y: float
        y = height - bottom
        for j, s in enumerate(series):
            v = values.get((g, s), 0)
            h = v * scale
            x = x0 if stacked else x0 + j * bar_w
            y_top = (y - h) if stacked else (height - bottom - h)
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS.get(s, "#888")}" data-group="{html.escape(g)}" '
                f'data-series="{html.escape(s)}" data-value="{v}"><title>{html.escape(g)} · '
                f"{html.escape(TOPICS.get(s, s))}: {v}</title></rect>"
            )
            if stacked:
                y -= h
        parts.append(
            f'<text x="{x0 + slot * 0.35:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'font-size="11">{html.escape(TOPICS.get(g, g))}</text>'
        )
    legend_x = left
    for s in series:
        parts.append(
            f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{COLOURS.get(s, "#888")}"/>'
            f'<text x="{legend_x + 14}" y="13" font-size="11">{html.escape(TOPICS.get(s, s))}</text>'
        )
        legend_x += 20 + 7 * len(TOPICS.get(s, s))
    parts.append("</svg>")
    return "".join(parts)


def _table(name: str, title: str, header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = (
        "".join("<tr>" + "".join(f"<td>{html.escape(one_line(str(v)))}</td>" for v in row) + "</tr>" for row in rows)
        or f'<tr><td colspan="{len(header)}">none in this period</td></tr>'
    )
    return (
        f'<h2>{html.escape(title)}</h2><table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        f'</table><p class="csv">CSV: {name}.csv</p>'
    )


def render_html(tables: Tables, generated: datetime, source: str = "") -> str:
    since, until = tables.period
    weekly = tables.tables["cards_per_topic_week"][2]
    weeks = sorted({r[0] for r in weekly})
    returned = {(r[0], r[1]): r[2] for r in weekly}
    per_topic: Counter[tuple[str, str]] = Counter()
    by_week = tables.tables["outcomes_by_week"][2]
    for _, topic, _, acc, ovr, none in by_week:
        per_topic[(topic, "accepted")] += acc
        per_topic[(topic, "overridden")] += ovr
        per_topic[(topic, "no feedback")] += none
    total = sum(r[2] for r in weekly)
    overridden = sum(per_topic[(t, "overridden")] for t in TOPICS)
    charts = (
        "<h2>Cards returned per week, by topic</h2>"
        + bar_chart("chart-weekly", "Cards returned per week, by topic", weeks, list(TOPICS), returned, False)
        + "<h2>Outcome of returned cards, by topic</h2>"
        + bar_chart(
            "chart-outcomes", "Outcome of returned cards, by topic", list(TOPICS), list(OUTCOMES), dict(per_topic), True
        )
    )
    sections = "".join(_table(name, *spec) for name, spec in tables.tables.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>her2-cds report {since} to {until}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f3f3f3; }} .csv {{ color: #777; font-size: 12px; margin-top: -1em; }}
.totals span {{ display: inline-block; margin-right: 2em; }}
</style></head><body>
<h1>her2-cds: cards and feedback, {since} to {until}</h1>
<p class="totals"><span id="total-cards">Cards recorded: {total + sum(r[3] + r[4] + r[5] for r in weekly)}</span>
<span id="total-returned">Returned: {total}</span>
<span id="total-overridden">Overridden: {overridden}</span></p>
<p>Generated {generated.isoformat(timespec="seconds")} from the card ledger joined to feedback<span id="source">{
        f" in {html.escape(source)}" if source else ""
    }</span>. No patient
identifiers: the ledger keeps a keyed hash only. Weeks start on Monday (UTC).</p>
{charts}
{sections}
</body></html>
"""


def write_report(engine: Engine, since: date, until: date, out_dir: Path, source: str = "") -> list[Path]:
    """report.html and the CSV files in out_dir (created); returns their paths. source: the database read, as
    the page names it (no password)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build(load_cards(engine, since, until), since, until)
    paths = write_csv(tables, out_dir)
    page = out_dir / "report.html"
    page.write_text(render_html(tables, datetime.now(timezone.utc), source), "utf-8")
    return [page, *paths]
