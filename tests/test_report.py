"""`her2-cds report` on a seeded ledger: the CSV numbers by hand, then the page rendered in headless Chromium
(Debian's chromium driven by playwright-core): charts and tables show the same numbers, nothing is fetched."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service.cli import main
from cds_service.storage.database import make_engine, migrate

BROWSER_DIR = Path(__file__).parent / "browser"
WEEK_A, WEEK_B = "2026-11-02", "2026-11-09"  # Mondays

# (uuid, day, topic, pathways, indicator, client, held_back, feedback outcome, override reason)
LEDGER = [
    ("a1", "2026-11-03", "tdxd-consideration", "DB-06,DB-04", "info", "https://ehr-a", None, "accepted", None),
    (
        "a2",
        "2026-11-04",
        "tdxd-consideration",
        "DB-06,DB-04",
        "info",
        "https://ehr-a",
        None,
        "overridden",
        "patient-declined",
    ),
    ("a3", "2026-11-05", "tdxd-consideration", "DB-06,DB-04", "info", "https://ehr-b", None, None, None),
    ("a4", "2026-11-03", "her2-rescore", None, "warning", "https://ehr-a", None, "overridden", "data-incorrect"),
    ("a5", "2026-11-06", "her2-rescore", None, "warning", "https://ehr-a", None, None, None),
    ("a6", "2026-11-06", "ild-monitoring", None, "warning", "https://ehr-b", None, "accepted", None),
    ("b1", "2026-11-10", "tdxd-consideration", "DB-04", "info", "https://ehr-a", None, None, None),
    ("b2", "2026-11-11", "tdxd-consideration", "DB-04", "info", "https://ehr-a", None, "overridden", None),
    ("b3", "2026-11-11", "tdxd-consideration", "DB-06", "info", "https://ehr-a", "shadow", None, None),
    ("b4", "2026-11-12", "tdxd-consideration", "DB-06", "info", "https://ehr-b", "shadow", None, None),
    ("b5", "2026-11-12", "her2-rescore", None, "info", "https://ehr-a", "repeat", None, None),
    ("b6", "2026-11-13", "tdxd-consideration", "DB-04", "info", "https://ehr-a", "snooze", None, None),
    ("z9", "2026-10-20", "tdxd-consideration", "DB-04", "info", "https://ehr-a", None, "accepted", None),  # before
]


@pytest.fixture
def seeded(tmp_path):
    db = tmp_path / "ledger.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with engine.begin() as conn:
        for uuid_, day, topic, pathways, indicator, client, held, outcome, reason in LEDGER:
            created = datetime.fromisoformat(day + "T10:00:00").replace(tzinfo=timezone.utc)
            conn.execute(
                sa.text(
                    "INSERT INTO cds_card_ledger VALUES (:u, :c, 'her2-order-select', 'order-select', :t, :p, :i, :cl, "
                    "'2026.11.0', :h, :ph, 'digest', 2)"
                ),
                {
                    "u": uuid_,
                    "c": created,
                    "t": topic,
                    "p": pathways,
                    "i": indicator,
                    "cl": client,
                    "h": held,
                    "ph": "f" * 64,
                },
            )
            if outcome:
                if outcome == "accepted" and uuid_ == "a1":  # a first override, then acceptance: the last counts
                    conn.execute(
                        sa.text(
                            "INSERT INTO cds_feedback VALUES ('k-a1-0', 'her2-order-select', 'a1', "
                            "'overridden', NULL, NULL, 'not-a-candidate', NULL, 'x', :r, NULL)"
                        ),
                        {"r": created},
                    )
                conn.execute(
                    sa.text(
                        "INSERT INTO cds_feedback VALUES (:k, 'her2-order-select', :u, :o, NULL, NULL, "
                        ":rc, NULL, 'x', :r, NULL)"
                    ),
                    {"k": f"k-{uuid_}", "u": uuid_, "o": outcome, "rc": reason, "r": created.replace(hour=11)},
                )
    engine.dispose()
    cfg = tmp_path / "her2-cds.yaml"
    cfg.write_text(f"storage: {{database_url: 'sqlite:///{db}'}}\n")
    out = tmp_path / "report"
    assert (
        main(["report", "--config", str(cfg), "--since", "2026-11-01", "--until", "2026-11-15", "--out", str(out)]) == 0
    )
    return out


def _csv(out: Path, name: str) -> list[list[str]]:
    with (out / f"{name}.csv").open() as f:
        return list(csv.reader(f))


def test_the_csv_files_hold_the_numbers(seeded):
    assert _csv(seeded, "cards_per_topic_week") == [
        ["week", "topic", "returned", "shadow", "repeat", "snooze"],
        [WEEK_A, "her2-rescore", "2", "0", "0", "0"],
        [WEEK_A, "tdxd-consideration", "3", "0", "0", "0"],
        [WEEK_A, "ild-monitoring", "1", "0", "0", "0"],
        [WEEK_B, "her2-rescore", "0", "0", "1", "0"],
        [WEEK_B, "tdxd-consideration", "2", "2", "0", "1"],
    ]
    assert _csv(seeded, "outcomes_by_topic_pathway")[1:] == [
        ["her2-rescore", "-", "2", "0", "1", "1", "0%", "50%"],
        ["ild-monitoring", "-", "1", "1", "0", "0", "100%", "0%"],
        ["tdxd-consideration", "DB-04", "5", "1", "2", "2", "20%", "40%"],
        ["tdxd-consideration", "DB-06", "3", "1", "1", "1", "33%", "33%"],
    ]
    assert _csv(seeded, "override_reasons")[1:] == [
        ["her2-rescore", "data-incorrect", "(none fits: this service's own code)", "1"],
        ["tdxd-consideration", "(no reason given)", "(not a reason the cards offer)", "1"],
        ["tdxd-consideration", "patient-declined", "does-not-align-preferences", "1"],
    ]
    # both counted: the reason as sent (ours, or the HL7 code the card offered) and its HL7 category
    assert _csv(seeded, "override_categories")[1:] == [
        ["(none fits: this service's own code)", "1"],
        ["(not a reason the cards offer)", "1"],
        ["does-not-align-preferences", "1"],
    ]
    assert _csv(seeded, "outcomes_by_client")[1:] == [
        ["https://ehr-a", "her2-rescore", "2", "0", "1", "1"],
        ["https://ehr-a", "tdxd-consideration", "4", "1", "2", "1"],
        ["https://ehr-b", "ild-monitoring", "1", "1", "0", "0"],
        ["https://ehr-b", "tdxd-consideration", "1", "0", "0", "1"],
    ]
    assert _csv(seeded, "shadow_mode")[1:] == [[WEEK_B, "tdxd-consideration", "2"]]
    assert _csv(seeded, "held_back")[1:] == [["her2-rescore", "repeat", "1"], ["tdxd-consideration", "snooze", "1"]]
    assert _csv(seeded, "ruleset_versions")[1:] == [["2026.11.0", "12"]]
    page = (seeded / "report.html").read_text()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page.replace(
        "https://ehr-a", ""
    ).replace("https://ehr-b", "")  # nothing to fetch
    assert "ffffffff" not in page  # no patient hash on the page


def _browser_ready() -> bool:
    ready = (
        shutil.which("node")
        and Path("/usr/bin/chromium").exists()
        and (BROWSER_DIR / "node_modules" / "playwright-core").exists()
    )
    if not ready and os.environ.get("CI"):
        pytest.fail("CI needs node, Debian's chromium and tests/browser/node_modules (.ci/run installs them)")
    return bool(ready)


def test_the_page_in_chromium_shows_the_same_numbers(seeded, tmp_path):
    if not _browser_ready():
        pytest.skip("chromium / playwright-core not installed here (runs under CI)")
    shot = tmp_path / "report.png"
    run = subprocess.run(
        ["node", "check_report.mjs", str(seeded / "report.html"), str(shot)],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout)
    assert {u.split("://")[0] for u in seen["requests"]} == {"file"} and len(seen["requests"]) == 1
    weekly = {(b["group"], b["series"]): b for b in seen["bars"] if b["chart"] == "chart-weekly"}
    assert weekly[(WEEK_A, "tdxd-consideration")]["value"] == 3 and weekly[(WEEK_B, "tdxd-consideration")]["value"] == 2
    assert weekly[(WEEK_A, "her2-rescore")]["value"] == 2 and weekly[(WEEK_B, "her2-rescore")]["value"] == 0
    tallest = weekly[(WEEK_A, "tdxd-consideration")]["drawn"]
    assert tallest > 0 and abs(weekly[(WEEK_B, "tdxd-consideration")]["drawn"] - tallest * 2 / 3) < 1.5
    outcomes = {(b["group"], b["series"]): b["value"] for b in seen["bars"] if b["chart"] == "chart-outcomes"}
    assert outcomes[("tdxd-consideration", "accepted")] == 1 and outcomes[("tdxd-consideration", "overridden")] == 2
    assert outcomes[("tdxd-consideration", "no feedback")] == 2 and outcomes[("her2-rescore", "overridden")] == 1
    assert seen["tables"]["override_reasons"] == [r for r in _csv(seeded, "override_reasons")[1:]]
    assert seen["tables"]["outcomes_by_topic_pathway"] == _csv(seeded, "outcomes_by_topic_pathway")[1:]
    assert seen["totals"] == ["Cards recorded: 12", "Returned: 8", "Overridden: 3"]
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, code, words",
    [
        (
            ["--since", "2026-12-01", "--until", "2026-11-01"],
            2,
            "--since (2026-12-01) must be before --until (2026-11-01)",
        ),
        (["--since", "01/12/2026"], 2, "dates are YYYY-MM-DD"),
        (["--out", "/proc/her2-cds-report"], 2, "cannot write to /proc/her2-cds-report"),
    ],
)
def test_a_report_that_cannot_be_made_says_why(tmp_path, capsys, args, code, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  database_url: sqlite:///{tmp_path}/ledger.db\n")
    argv = ["report", "--config", str(cfg), "--out", str(tmp_path / "out"), *args]
    assert main(argv) == code
    assert words in capsys.readouterr().err


def test_a_report_from_a_database_that_is_down_says_so_without_its_url(tmp_path, capsys):
    from tests.own_servers import free_port

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  database_url: postgresql://her2:secret-pw@127.0.0.1:{free_port()}/ledger\n")
    assert main(["report", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "cannot read the card ledger in the configured database (OperationalError)" in err
    assert "secret-pw" not in err


def test_the_page_names_the_database_it_read(seeded, tmp_path):
    page = (seeded / "report.html").read_text()
    assert f'<span id="source"> in {tmp_path / "ledger.db"}</span>' in page


def test_a_report_run_where_there_is_no_database_refuses_and_creates_none(tmp_path, capsys, monkeypatch):
    """Run from another directory with the default relative SQLite URL: no empty database, no 'Cards recorded: 0'."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HER2_CDS_CONFIG", raising=False)
    assert main(["report", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no database at {tmp_path}/her2-cds.db" in err and "--config" in err
    assert not (tmp_path / "her2-cds.db").exists() and not (tmp_path / "out" / "report.html").exists()


def test_a_report_says_which_database_it_read_without_a_password(tmp_path):
    from cds_service.storage.database import database_shown

    assert database_shown("postgresql://her2:secret-pw@db.example:5432/ledger") == (
        "postgresql://her2:***@db.example:5432/ledger"
    )
    assert database_shown("sqlite:///relative.db") == str(Path("relative.db").resolve())
