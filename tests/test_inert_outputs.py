"""Record text and client text are inert in the operator's outputs too (issue 21, item 2): `evaluate --explain`
(a terminal: no escape sequence, newline or bidi override from a record) and the ledger report (CSV cells a
spreadsheet would run as formulas are neutralised; the HTML page holds one plain line per cell)."""

from __future__ import annotations

import csv
import json

import pytest

from cds_service.cli import main
from cds_service.web.app import create_app
from cds_service.web.state import app_state

from .fixtures import builders as b
from .fixtures import patients
from .helpers import hook_request, prefetch_from
from .test_inert_text import PAYLOADS, hostile_chart

TERMINAL = ["\x1b[2J\x1b[31mRED", "ok\r\n== Rules\nfake: \x07bell", "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07"]


@pytest.mark.parametrize("payload", PAYLOADS + TERMINAL)
def test_explain_output_holds_no_control_character_or_line_from_a_record(tmp_path, capsys, payload):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(hook_request("patient-view", prefetch=prefetch_from(hostile_chart(payload)))))
    main(["evaluate", str(path), "--explain"])
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "\x1b\x07\r\u202e\u2066\u200b\u200d\ufeff")
    lines = out.splitlines()
    assert not any(line.startswith(("## Fake", "== Rules\nfake", "fake:")) for line in lines)
    assert sum(line == "== Rules" for line in lines) == 1  # only the service's own section heading
    assert all(len(line) < 2100 for line in lines)  # a 100 KB field is capped


FORMULAS = ['=HYPERLINK("https://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


def test_override_reasons_in_the_report_never_run_as_formulas(settings_factory, tmp_path):
    db = tmp_path / "ledger.db"
    app = create_app(settings_factory(storage={"database_url": f"sqlite:///{db}"}))
    client = app.test_client()
    body = hook_request(
        "order-select",
        prefetch=prefetch_from(patients.bell()),
        draft_orders=[b.med_request("capecitabine", "2026-11-25", status="draft", id="draft-cape")],
    )
    for code in FORMULAS:
        [card] = client.post("/cds-services/her2-order-select", json=body).get_json()["cards"]
        entry = {
            "card": card["uuid"],
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-25T11:00:00Z",
            "overrideReason": {"reason": {"code": code, "system": "urn:x"}},
        }
        resp = client.post("/cds-services/her2-order-select/feedback", json={"feedback": [entry]})
        assert resp.status_code == 200, resp.get_json()
    app_state(app).engine.ledger.flush()
    cfg = tmp_path / "her2-cds.yaml"
    cfg.write_text(f"storage: {{database_url: 'sqlite:///{db}'}}\n")
    out = tmp_path / "report"
    assert main(["report", "--config", str(cfg), "--since", "2000-01-01", "--out", str(out)]) == 0
    with (out / "override_reasons.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    reasons = [row[1] for row in rows[1:]]
    assert len(reasons) == len(FORMULAS)
    assert all(r.startswith("'") for r in reasons), reasons
    assert not any(c in "".join(reasons) for c in "\t\r\n")
    page = next(out.glob("*.html")).read_text("utf-8")
    assert "=HYPERLINK(&quot;" in page or '=HYPERLINK("' in page  # shown as the words they are, escaped
