"""The population sweep (issue 25): a Bulk Data export judged with the facts and rules of the cards, into a
worklist; bad input survived and counted; interrupted and rerun; the same rows on a two-worker Dask cluster."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from cds_service.rules.decision import REASONS
from cds_service.sweep.export import ExportError, open_export, type_hint
from cds_service.sweep.runner import OnDask
from cds_service.sweep.worklist import COLUMNS, OUTPUTS
from tests.fixtures import builders as b
from tests.realworld_facts import EXAMPLES
from tests.sweep_equality import evaluated_cards, own_records, rows_of, swept, swept_cards, write_ndjson
from tests.sweep_export import SCENARIOS, charts, reidentified, unrelated, write_export

AS_OF = "2026-12-05"


def _example_charts() -> dict[str, tuple[list[dict[str, Any]], str]]:
    out = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        request = json.loads(path.read_text())
        resources = [
            r
            for v in (request.get("prefetch") or {}).values()
            if isinstance(v, dict)
            for r in ([v] if v.get("resourceType") != "Bundle" else [e["resource"] for e in v.get("entry", [])])
        ]
        out[f"examples/{path.name}"] = (resources, request["context"]["patientId"])
    for name, make in SCENARIOS.items():
        out[f"fixtures/{name}"] = (make(), b.PATIENT)
    return out


CHARTS = _example_charts()


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_the_sweep_says_what_evaluate_says_for_patient_view(name, tmp_path):
    """Each example and fixture chart, alone in an export: the sweep's row (or no row) is evaluate's cards."""
    resources, pid = CHARTS[name]
    mine = own_records(resources, pid)  # an example's records of another patient are that patient's in an export
    assert swept_cards(mine, pid, tmp_path) == evaluated_cards(mine, pid, tmp_path)


def test_one_export_of_many_patients_is_each_patient_judged_alone(tmp_path):
    """Every scenario as three patients, unrelated patients between them, in split gzipped files: each patient's
    row is the row of its chart swept alone."""
    made = list(charts(3 * len(SCENARIOS), 40))  # made once: the builders number their ids as they go
    many = [r for chart in made for r in chart]
    others = [r for i in range(5) for r in unrelated(f"other{i}", 6)]
    export = tmp_path / "many"
    write_ndjson(export, many[: len(many) // 2] + others)
    (export / "Observation.ndjson").rename(export / "Observation.000.ndjson")
    write_ndjson(tmp_path / "rest", many[len(many) // 2 :], gz=True)
    for f in (tmp_path / "rest").iterdir():
        f.rename(export / f.name.replace(".ndjson", ".001.ndjson"))
    summary = swept(export, tmp_path / "out", workers=1)
    rows = {r["patient_id"]: r for r in rows_of(tmp_path / "out")}
    assert summary["cohort"] == 3 * len(SCENARIOS) and summary["counts"]["other-patients"] == len(others)
    for i, chart in enumerate(made):
        pid = f"pt{i:06d}"
        swept(write_ndjson(tmp_path / f"one{i}", chart), tmp_path / f"o{i}", workers=1)
        alone = rows_of(tmp_path / f"o{i}")
        assert ([rows[pid]] if pid in rows else []) == alone, pid


def test_reidentified_charts_keep_their_verdicts():
    """The generator's re-identification keeps each chart's meaning (the benchmark's patients are real cases)."""
    chart = SCENARIOS["bell"]()
    again = reidentified(chart, "x9")
    assert {r["resourceType"] for r in again} == {r["resourceType"] for r in chart}
    assert all(r["subject"]["reference"] == "Patient/x9" for r in again if "subject" in r)
    spec = next(r for r in again if r["resourceType"] == "Specimen")
    assert spec["id"] == "x9-liver-2016" and "subject" not in spec  # joined by reference, not by patient


def test_every_card_carries_a_reason_the_worklist_explains(tmp_path):
    swept(write_ndjson(tmp_path / "e", [r for chart in charts(2 * len(SCENARIOS), 0) for r in chart]), tmp_path / "o",
           workers=1)  # fmt: skip
    rows = rows_of(tmp_path / "o")
    reasons = {c["reason"] for r in rows for c in r["cards"]}
    assert reasons and reasons <= set(REASONS)
    assert {"binary-only", "pathway-met"} <= reasons


# --- bad input: survived, counted, placed


def test_bad_input_is_survived_and_counted(tmp_path):
    chart = reidentified(SCENARIOS["builta_binary_only"](), "good")
    export = write_ndjson(tmp_path / "bad", chart)
    with open(export / "Observation.ndjson", "ab") as f:
        f.write(b"{not json\n")  # malformed
        f.write(b"[1, 2]\n")  # not a resource
        f.write(json.dumps({"resourceType": "Observation", "id": "orphan", "status": "final"}).encode() + b"\n")
        f.write(json.dumps({"resourceType": "Observation", "id": "grp", "status": "final",
                            "subject": {"reference": "Group/g1"}}).encode() + b"\n")  # fmt: skip
        invalid = b.her2_ihc("2+", "2024-01-10", site="liver")
        invalid.update(id="invalid-her2", subject={"reference": "Patient/good"}, status="final",
                       effectiveDateTime="not a date")  # fmt: skip
        f.write(json.dumps(invalid).encode() + b"\n")  # not valid FHIR: set aside by the facts
    # a patient whose Patient resource is not in the export, in a gzip file cut short
    lost = [r for r in reidentified(SCENARIOS["her2_positive"](), "lost") if r["resourceType"] != "Patient"]
    whole = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in lost + lost))
    (export / "Condition.001.ndjson.gz").write_bytes(whole[: len(whole) * 2 // 3])
    summary = swept(export, tmp_path / "out", workers=1)
    counts, places = summary["counts"], summary["places"]
    assert counts["malformed"] == 2 and places["malformed"] == [
        "Observation.ndjson byte " + str(_offset(export / "Observation.ndjson", b"{not json")),
        "Observation.ndjson byte " + str(_offset(export / "Observation.ndjson", b"[1, 2]")),
    ]
    assert counts["no-patient"] == 2
    assert counts["damaged-files"] == 1 and places["damaged-files"][0].startswith(
        "Condition.001.ndjson.gz: truncated (no end-of-stream marker); read up to line "
    )
    assert counts["records-set-aside"] >= 1
    assert counts["patients-without-patient-record"] == 1 and summary["cohort"] == 2
    rows = {r["patient_id"]: r for r in rows_of(tmp_path / "out")}
    assert rows["good"]["records_set_aside"] >= 1 and rows["good"]["her2_rescore_reason"]
    assert "lost" not in rows or rows["lost"]["patient_record"] == "not in export"
    page = (tmp_path / "out" / "worklist.html").read_text()
    assert "lines that are not a FHIR resource (not JSON, no resourceType)</td><td>2<" in page


def _offset(path: Path, needle: bytes) -> int:
    return path.read_bytes().index(needle)


def test_an_export_that_cannot_be_read_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ExportError, match="no such file or directory"):
        open_export(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no .ndjson, .ndjson.gz, .jsonl, .jsonl.gz file"):
        open_export(str(tmp_path / "empty"))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"output": [{"type": "Patient", "url": "https://ehr.example/bulk/f1.ndjson"}]}))
    with pytest.raises(ExportError, match=r"1 file\(s\) of the manifest are not on disk \(first: https://ehr"):
        open_export(str(manifest))
    manifest.write_text("{")
    with pytest.raises(ExportError, match="not a Bulk Data manifest"):
        open_export(str(manifest))


def test_a_manifest_names_its_files_and_its_errors(tmp_path):
    chart = reidentified(SCENARIOS["builta_binary_only"](), "m1")
    write_ndjson(tmp_path, chart)
    (tmp_path / "Observation.ndjson").rename(tmp_path / "0f3a.ndjson")  # a server's own file name: no type in it
    (tmp_path / "err.ndjson").write_text('{"resourceType":"OperationOutcome","issue":[]}\n')
    outputs = [{"type": p.stem.split(".")[0], "url": f"https://ehr.example/bulk/{p.name}"}
               for p in tmp_path.glob("*.ndjson") if p.name != "err.ndjson"]  # fmt: skip
    outputs = [dict(o, type="Observation") if o["url"].endswith("0f3a.ndjson") else o for o in outputs]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"output": outputs, "error": [{"type": "OperationOutcome", "url": "err.ndjson"}]}))
    export = open_export(str(manifest))
    assert {f.rtype for f in export.files} >= {"Observation", "Patient"} and export.reported_errors == 1
    summary = swept(manifest, tmp_path / "out", workers=1)
    assert summary["rows"] == 1 and summary["export_reported_errors"] == 1


@pytest.mark.parametrize(
    "name, hint",
    [("Observation.ndjson", "Observation"), ("Observation_2.ndjson.gz", "Observation"),
     ("1.MedicationRequest.ndjson", "MedicationRequest"), ("0f3a9c.ndjson", None), ("Export.ndjson", None)],
)  # fmt: skip
def test_a_file_name_gives_its_type_only_when_it_is_a_fhir_type(name, hint):
    assert type_hint(name) == hint


# --- the worklist's files


@pytest.fixture(scope="module")
def worklist(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("worklist")
    chart = reidentified(SCENARIOS["builta_binary_only"](), "inj")
    note = '=HYPERLINK("http://evil.example","x") <script>alert(1)</script> **bold** [link](http://evil.example)'
    for r in chart:
        if r["resourceType"] == "Patient":
            r["name"] = [{"text": note}]
            r["identifier"] = [{"type": {"coding": [{"code": "MR"}]}, "value": "+MRN-001"}]
    export = write_ndjson(tmp / "export", [r for c in charts(2 * len(SCENARIOS), 0) for r in c] + chart)
    summary = swept(export, tmp / "out", workers=1)
    return tmp / "out", summary


def test_the_worklist_files_are_phi_readable_by_their_owner_only(worklist):
    out, _ = worklist
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for name in OUTPUTS:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert not (out / ".sweep-work").exists()  # the grouped records (PHI) are gone at the end


def test_record_text_is_inert_in_every_file(worklist):
    out, _ = worklist
    rows = list(csv.reader(io.StringIO((out / "worklist.csv").read_text())))
    assert rows[0] == list(COLUMNS)
    inj = next(r for r in rows if r[0] == "inj")
    assert inj[COLUMNS_INDEX["name"]].startswith("'=HYPERLINK") and inj[COLUMNS_INDEX["mrn"]] == "'+MRN-001"
    page = (out / "worklist.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


COLUMNS_INDEX = {c: i for i, c in enumerate(COLUMNS)}


def test_the_fhir_worklist_is_a_valid_transaction_an_ehr_can_import(worklist):
    out, summary = worklist
    bundle = json.loads((out / "worklist-fhir.json").read_text())
    Bundle.model_validate(bundle)
    rows = rows_of(out)
    lists = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "List"]
    tasks = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]
    assert [i["item"]["reference"] for i in lists[0]["entry"]] == [f"Patient/{r['patient_id']}" for r in rows]
    rescore = [r for r in rows if r["her2_rescore_reason"]]
    assert [t["for"]["reference"] for t in tasks] == [f"Patient/{r['patient_id']}" for r in rescore]
    assert {t["status"] for t in tasks} == {"requested"} and {t["intent"] for t in tasks} == {"proposal"}
    assert all(e["request"]["method"] == "POST" for e in bundle["entry"])
    assert summary["rows"] == len(rows)


def test_the_page_in_chromium_shows_the_counts_of_the_worklist(worklist, tmp_path):
    from tests.test_report import BROWSER_DIR, _browser_ready

    if not _browser_ready():
        pytest.skip("chromium / playwright-core not installed here (runs under CI)")
    out, _ = worklist
    shot = tmp_path / "worklist.png"
    run = subprocess.run(
        ["node", "check_report.mjs", str(out / "worklist.html"), str(shot)],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout)
    assert {u.split("://")[0] for u in seen["requests"]} == {"file"} and len(seen["requests"]) == 1
    rows = rows_of(out)
    expected: dict[tuple[str, str], int] = {}
    for r in rows:
        for c in r["cards"]:
            expected[(c["reason"], c["topic"])] = expected.get((c["reason"], c["topic"]), 0) + 1
    drawn = {(bar["group"], bar["series"]): bar["value"] for bar in seen["bars"] if bar["value"]}
    assert drawn == expected
    assert all(bar["drawn"] > 0 for bar in seen["bars"] if bar["value"])
    assert [row[0] for row in seen["tables"]["worklist"]] == [r["patient_id"] for r in rows]
    assert seen["totals"][:2] == [f"Patients judged: {2 * len(SCENARIOS) + 1}", f"On the worklist: {len(rows)}"]
    assert shot.stat().st_size > 10_000


# --- one machine or a cluster; interrupted and rerun


def test_a_local_dask_cluster_of_two_workers_gives_the_single_process_rows(tmp_path):
    export = tmp_path / "export"
    write_export(export, 4 * len(SCENARIOS), 60, unrelated_patients=6, gzipped=True, per_file=500)
    with open(export / "Observation.000.ndjson.gz", "ab") as f:
        f.write(gzip.compress(b"{torn\n"))  # a second gzip member holding a malformed line
    single = swept(export, tmp_path / "one", workers=1, patients_per_partition=5)
    cluster = OnDask(2)
    try:
        assert len(cluster.client.scheduler_info(n_workers=-1)["workers"]) == 2
        pids = cluster.client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # two processes, not this one
    finally:
        cluster.close()
    double = swept(export, tmp_path / "two", workers=2, patients_per_partition=5)
    assert double["workers"] == 2 and single["workers"] == 1
    for name in ("worklist.csv", "worklist.json", "worklist-fhir.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert single["counts"] == double["counts"] and single["counts"]["malformed"] == 1
    assert single["rows"] == len(rows_of(tmp_path / "one")) > 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cds_service.cli", "sweep", *args, "--as-of", AS_OF]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_sweep_leaves_no_worklist_and_a_rerun_finishes_it(tmp_path, how):
    export = tmp_path / "export"
    write_export(export, 3 * len(SCENARIOS), 30)
    whole = swept(export, tmp_path / "whole", workers=1)
    out = tmp_path / "out"
    args = _cli(str(export), "--out", str(out), "--workers", "1", "--patients-per-partition", "1")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = out / ".sweep-work" / "rows"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(rows.glob("*.json")) if rows.is_dir() else []) < 3:
        time.sleep(0.005)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    done = len(list(rows.glob("*.json")))
    assert 3 <= done < 3 * len(SCENARIOS), done  # stopped in pass 3, part-way
    assert not any((out / name).exists() for name in OUTPUTS)  # no partial worklist presented as whole
    if how == signal.SIGINT:
        assert proc.returncode == 130
        assert "stopped by an interrupt during pass 3 of 3, judging patients" in err and "Run the same command" in err
    again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "resuming the interrupted sweep" in again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"]["pass 3"] >= 3 and summary["resumed"]["pass 1"] == 1
    for name in ("worklist.csv", "worklist.json", "worklist-fhir.json"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert summary["counts"] == whole["counts"]


def test_a_changed_export_starts_the_sweep_afresh(tmp_path):
    export = write_ndjson(tmp_path / "export", reidentified(SCENARIOS["bell"](), "a1"))
    swept(export, tmp_path / "out", workers=1, keep_work=True)
    write_ndjson(export, reidentified(SCENARIOS["builta_binary_only"](), "a2"))  # rewritten: a new export
    summary = swept(export, tmp_path / "out", workers=1)
    assert summary["resumed"] == {} and [r["patient_id"] for r in rows_of(tmp_path / "out")] == ["a2"]


def test_the_command_says_what_it_read_and_where_the_worklist_is(tmp_path):
    export = write_ndjson(tmp_path / "export", reidentified(SCENARIOS["builta_binary_only"](), "c1"))
    run = subprocess.run(_cli(str(export), "--out", str(tmp_path / "out"), "--workers", "1"), capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "patients with breast cancer or T-DXd on record: 1; judged: 1; on the worklist: 1" in run.stdout
    assert "worklist (PHI, readable by you only)" in run.stdout
    bad = subprocess.run(_cli(str(tmp_path / "nope"), "--out", str(tmp_path / "o2")), capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file or directory" in bad.stderr


def test_the_guide_lists_every_column_and_reason_as_the_code_says():
    guide = (Path(__file__).parent.parent / "docs" / "sweep.md").read_text()

    def table(marker: str) -> dict[str, str]:
        block = guide.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
        rows = [line.split(" | ") for line in block.strip().splitlines()[2:]]
        return {r[0].strip("| `"): r[1].rstrip(" |") for r in rows}

    assert table("sweep-columns") == COLUMNS
    assert table("sweep-reasons") == REASONS


def test_an_export_without_a_patient_to_judge_gives_an_empty_worklist_that_says_so(tmp_path):
    export = write_ndjson(tmp_path / "export", [r for i in range(3) for r in unrelated(f"u{i}", 4)])
    summary = swept(export, tmp_path / "out")
    assert summary["cohort"] == 0 and summary["rows"] == 0 and summary["counts"]["other-patients"] == 3 * 6
    assert rows_of(tmp_path / "out") == []
    assert "no patient needs anything" in (tmp_path / "out" / "worklist.html").read_text()
    bundle = json.loads((tmp_path / "out" / "worklist-fhir.json").read_text())
    Bundle.model_validate(bundle)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["List"]


def test_the_same_sweep_on_a_running_scheduler_with_workers_of_its_own(tmp_path):
    """`--scheduler tcp://...`: a `dask scheduler` and two `dask worker` processes started as a cluster operator
    would (here on loopback), the command run against them: the rows of the single-process run."""
    from tests.own_servers import free_port

    export = tmp_path / "export"
    write_export(export, 2 * len(SCENARIOS), 30, unrelated_patients=3)
    single = swept(export, tmp_path / "one", patients_per_partition=4)
    dask = Path(sys.executable).parent / "dask"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], **quiet)]  # fmt: skip
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-dashboard"],
                                          **quiet))  # fmt: skip
        from dask.distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        run = subprocess.run(
            _cli(str(export), "--out", str(tmp_path / "two"), "--scheduler", address, "--patients-per-partition", "4"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert "on 2 worker(s)" in run.stdout
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    for name in ("worklist.csv", "worklist.json", "worklist-fhir.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["counts"] == single["counts"]


def test_a_failing_task_stops_the_sweep_saying_where_without_the_words_of_its_error(tmp_path, monkeypatch):
    """A bug met in a task (here injected): the sweep stops, says the stage, the error's class and place, keeps
    what was done, and never repeats the error's words (they can quote a record)."""
    from cds_service.sweep import cohort
    from cds_service.sweep.run import SweepStopped

    def broken(ts, cond):
        raise ValueError("Jane Doe, MRN 12345")

    monkeypatch.setattr(cohort, "condition_sets", broken)
    export = write_ndjson(tmp_path / "export", reidentified(SCENARIOS["bell"](), "f1"))
    with pytest.raises(SweepStopped) as stopped:
        swept(export, tmp_path / "out")
    said = str(stopped.value)
    assert "stopped during pass 1 of 3, finding patients" in said and "ValueError at test_sweep.py:" in said
    assert "Jane" not in said and "12345" not in said
    assert not any((tmp_path / "out" / name).exists() for name in OUTPUTS)
