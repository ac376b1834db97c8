"""Record text is inert on every card (DESIGN §3), tested the way an EHR shows cards: a chart whose every text field
the service reads is filled with hostile payloads goes through the Flask app, and each card's detail is rendered
with a CommonMark/GFM renderer with raw HTML and autolinks on. Nothing may become a link, an image, an HTML element,
a heading or emphasis; no control, bidi or zero-width character and no over-long line survives."""

from __future__ import annotations

import re
from typing import Any

import pytest
from markdown_it import MarkdownIt

from .fixtures import builders as b
from .helpers import assert_cds_response, hook_request, prefetch_from

PAYLOADS = [
    "[click](javascript:alert(1))",
    "![beacon](https://tracker.example/pixel.png?chart=open)",
    '<img src=x onerror="alert(1)">',
    "<script>alert(1)</script>",
    "ok\n## Fake heading\n**Evidence used**\n- fake evidence",
    "*emphasis* _underline_ ~~strike~~ `code`",
    "visit https://evil.example/ or www.evil.example or mail x@evil.example",
    "right\u202eto\u2066left\u200bzero\u200dwidth\ufeff",
    "- a list\n1. ordered",
    "A" * 100_000,
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from cds_service.config import load
    from cds_service.web.app import create_app

    db = tmp_path_factory.mktemp("db") / "f.db"
    return create_app(
        load(None, overrides={"auth": {"required": False}, "storage": {"database_url": f"sqlite:///{db}"}})
    )


RENDER = MarkdownIt("gfm-like", {"html": True, "linkify": True})
OWN_STRONG = {"Evidence used", "Not known / could not be determined", "DESTINY-Breast06", "DESTINY-Breast04"}


def hostile_chart(payload: str) -> list[dict[str, Any]]:
    """Every text the service copies to a card, filled with the payload."""
    ild = b.ild("2024-02-01", text=f"Pneumonitis {payload}")
    ild["note"] = [{"text": payload}]
    rt = b.procedure(b.cc(b.SCT, "108290001", "Radiotherapy", text=f"Radiotherapy {payload}"), "2013-01-15")
    rt["bodySite"] = [{"text": f"chest wall {payload}"}]
    her2 = b.her2_ihc({"valueString": "0"}, "2025-02-01", site=f"liver {payload}")
    spec = {
        "resourceType": "Specimen",
        "id": "spec-hostile",
        "subject": b.subject(),
        "type": {"text": f"core {payload}"},
        "collection": {"bodySite": {"text": f"liver {payload}"}},
    }
    her2["specimen"] = {"reference": "Specimen/spec-hostile"}
    breast = b.breast_cancer("2018-01-01")
    breast["code"]["text"] = f"Breast cancer {payload}"
    meta = b.condition({"text": f"metastatic breast cancer {payload}"}, "2023-01-10")
    er = b.receptor("ER", "positive")
    return [b.patient(), breast, meta, b.metastasis("liver", "2023-01-10"), er, her2, spec, ild, rt]


def _draft() -> dict[str, Any]:
    return b.med_request("fam-trastuzumab deruxtecan", "2026-11-25", status="draft", dose=(5.4, "mg/kg"), id="d-t")


def _cards(app, payload: str, hook: str) -> list[dict[str, Any]]:
    service = {"patient-view": "her2-patient-view", "order-sign": "her2-order-sign"}[hook]
    drafts = [_draft(), b.med_request("capecitabine", "2026-11-25", status="draft", id="d-c")]
    body = hook_request(
        hook, prefetch=prefetch_from(hostile_chart(payload)), draft_orders=drafts if hook != "patient-view" else None
    )
    resp = app.test_client().post(f"/cds-services/{service}", json=body)
    assert resp.status_code == 200
    return assert_cds_response(resp.get_json())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
def test_hostile_record_text_is_inert_in_every_card_field(app, payload, hook):
    cards = _cards(app, payload, hook)
    assert cards, "the hostile chart must give cards, or nothing is tested"
    assert any("Pneumonitis" in c["detail"] or "liver" in c["detail"] for c in cards)  # record text did land
    for card in cards:
        html = RENDER.render(card["detail"])
        assert not re.search(r"<(?:a|img|script|iframe|h[1-6]|em|del|s|code|ol|blockquote)\b", html), html[:2000]
        assert "onerror=" not in html.replace("onerror=&quot;", "") or "&lt;img" in html
        assert set(re.findall(r"<strong>(.*?)</strong>", html)) <= OWN_STRONG
        assert html.count("<ul>") == html.count("</ul>") and "<ul>\n<li><ul>" not in html  # no nested lists
        for text in _strings(card):
            assert not re.search("[\u0000-\u0009\u000b-\u001f\u202a-\u202e\u2066-\u2069\u200b-\u200d\ufeff]", text)
        for line in card["detail"].split("\n"):
            assert len(line) <= 4100
        summary = RENDER.render(card["summary"])
        assert not re.search(r"<(?:a|img|script|h[1-6]|em)\b", summary)
        for s in card.get("suggestions", []):
            for action in s["actions"]:
                for note in (action.get("resource") or {}).get("note", []):
                    rendered = RENDER.render(note["text"])
                    assert not re.search(r"<(?:a|img|script|h[1-6]|em)\b", rendered)


# ---- the way an EHR shows cards: rendered with raw HTML on, in Debian's chromium

SCRIPTED = [  # payloads that would tell: a canary set by script, a dialog, a request
    "<img src=x onerror=\"window.__ran=1;fetch('https://tracker.example/onerror')\">",
    '<svg onload="window.__ran=2"></svg>',
    "<script>window.__ran=3</script>",
    '<a href="javascript:window.__ran=4">click</a>',
    "[link](javascript:window.__ran=5) ![pixel](https://tracker.example/md.png)",
    '<iframe src="https://tracker.example/frame"></iframe>',
    '<style>@import url("https://tracker.example/css");</style>',
    "https://tracker.example/autolink www.tracker.example",
    '<details open ontoggle="window.__ran=6">x</details>',
    "`code` <em>em</em> ## heading\n# heading\n> quote",
]


def test_every_card_of_the_hostile_corpus_runs_and_fetches_nothing_in_chromium(app, tmp_path):
    import html as html_lib
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path

    browser_dir = Path(__file__).resolve().parent / "browser"
    ready = (
        shutil.which("node")
        and Path("/usr/bin/chromium").exists()
        and (browser_dir / "node_modules" / "playwright-core").exists()
    )
    if not ready:
        if os.environ.get("CI"):
            pytest.fail("CI needs node, Debian's chromium and tests/browser/node_modules (.ci/run installs them)")
        pytest.skip("chromium / playwright-core not installed here (runs under CI)")
    parts = []
    for payload in PAYLOADS + SCRIPTED:
        for hook in ("patient-view", "order-sign"):
            for card in _cards(app, payload, hook):
                pieces = [RENDER.render(card["summary"]), RENDER.render(card["detail"])]
                for s in card.get("suggestions", []):
                    pieces.append(RENDER.render(s["label"]))
                    for action in s["actions"]:
                        pieces.append(RENDER.render(action.get("description", "")))
                        pieces += [RENDER.render(n["text"]) for n in (action.get("resource") or {}).get("note", [])]
                pieces += [RENDER.render(link["label"]) for link in card.get("links", [])]
                parts.append('<div class="card">' + "".join(pieces) + "</div>")
    page = tmp_path / "cards.html"
    page.write_text(
        "<!doctype html><meta charset=utf-8><title>cards</title>"
        f'<div id="cards">{"".join(parts)}</div><p hidden>{html_lib.escape("end")}</p>',
        "utf-8",
    )
    run = subprocess.run(
        ["node", "check_cards.mjs", str(page)], cwd=browser_dir, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout)
    assert seen["cards"] >= 2 * len(PAYLOADS + SCRIPTED)
    assert seen["requests"] == ["file://" + str(page)], seen["requests"]  # nothing fetched
    assert seen["dialogs"] == [] and seen["ran"] is None  # nothing ran
    assert seen["forbidden"] == [] and seen["handlers"] == []  # no link, image, heading or emphasis from data
    assert set(seen["strong"]) <= OWN_STRONG


def test_a_control_character_between_words_is_a_space_not_nothing():
    """Pathology text copied with tabs ("ER<tab>positive") reads as words on the card; a control character that
    separates nothing (NUL, ESC) still vanishes."""
    from cds_service.fhir.inert import inert, one_line

    assert one_line("ER\tpositive\x0b(90%)\x0cPR\x85negative\x1fend") == "ER positive (90%) PR negative end"
    assert one_line("a\x00b\x1b[31mc") == "ab[31mc"
    assert inert("ER\tpositive") == "ER positive"
