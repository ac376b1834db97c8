"""SQLite recovers from a read-only start (issue 21, item 7). Black box: the service starts on a database file it
cannot write (immutable, `chattr +i`: no file mode stops root, which the test runs as); feedback is refused with a
503; the file is then made writable, and the next feedback is stored, without a restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service.storage.database import make_engine, migrate

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
from cds_service.config import load
from cds_service.web.app import create_app
app = create_app(load(None, overrides={"auth": {"required": False},
    "storage": {"database_url": sys.argv[1], "cache_url": "memory://"}}))
client = app.test_client()
def post(card):
    body = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-25T11:00:00Z"}]}
    return client.post("/cds-services/her2-order-select/feedback", json=body).status_code
print("before", post("c-before"), flush=True)
sys.stdin.readline()  # the test makes the file writable
print("after", post("c-after"), flush=True)
"""


def test_a_read_only_database_at_start_is_written_once_it_is_writable():
    work = Path(tempfile.mkdtemp(prefix="her2-ro-"))
    db = work / "cds.db"
    try:
        engine = make_engine(f"sqlite:///{db}")
        migrate(engine)
        engine.dispose()
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(db)], check=False).returncode != 0:
            if os.environ.get("CI"):
                pytest.fail("chattr +i is needed to make the database read-only for root")
            pytest.skip("chattr +i not possible here (runs under CI)")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, f"sqlite:///{db}"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().split() == ["before", "503"]
        subprocess.run(["chattr", "-i", str(db)], check=True)  # the volume is now writable
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["after", "200"]
        child.wait(timeout=20)
        with sa.create_engine(f"sqlite:///{db}").connect() as conn:
            assert conn.execute(sa.text("SELECT card_uuid FROM cds_feedback")).scalars().all() == ["c-after"]
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
