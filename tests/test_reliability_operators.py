"""Operator commands end to end: retry, cancel (pending and running), purge, wrong ids."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import reliability_report
from avo_cli.errors import ExitCode
from fake_openai import error, schema_name
from reliability_report import (
    Figures,
    TaggedServer,
    account,
    job,
    jobs_by_status,
    openai_env,
    reaped,
    run,
    spawn,
    submit,
    wait_until,
    worker_args,
    write_docs,
)

pytestmark = pytest.mark.slow
reliability = reliability_report.reliability  # the fixture that tallies the figures


def assert_error(proc: object, code: ExitCode, *words: str) -> None:
    assert isinstance(proc, __import__("subprocess").CompletedProcess)
    assert proc.returncode == int(code), (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("avo: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert proc.stdout == ""


def test_retry_after_stage_2_failure_reuses_the_stage_1_checkpoint(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    (event_id,) = submit(write_docs(tmp_path / "docs", 1))
    with TaggedServer() as fake:
        # Stage 1 answers; stage 2 gets a permanent error -> the job fails in stage 2.
        fake.server.push(fake._answer, error(400, "checklist refused by the test"))
        first = run(*worker_args(fake.url), env=openai_env())
        assert first.returncode == 0, first.stderr
        reliability.faults += 1
        assert job(isolated, event_id)["status"] == "failed"
        assert job(isolated, event_id)["checkpoint"]
        calls_before = len(fake.server.chat_requests)
        assert calls_before == 2

        proc = run("retry", event_id[:8], "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [{"event_id": event_id, "status": "pending"}]
        assert job(isolated, event_id)["attempts"] == 0

        second = run(*worker_args(fake.url), env=openai_env())
        assert second.returncode == 0, second.stderr
        new = fake.server.chat_requests[calls_before:]
        assert [schema_name(r.body) for r in new] == ["guideline_checklist"]
    row = job(isolated, event_id)
    assert row["status"] == "completed"
    result = json.loads(row["result"])
    assert result["summary"]["title"] == "req-1"  # the summary of the first run, reused
    account(isolated, [event_id], reliability)


def test_cancel_pending_and_running_jobs(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    running, waiting = submit(write_docs(tmp_path / "docs", 2))
    proc = run("cancel", waiting, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"event_id": waiting, "status": "cancelled"}]
    assert job(isolated, waiting)["status"] == "cancelled"

    with TaggedServer(latency=20) as fake:
        w = spawn(*worker_args(fake.url, "--lease", "0.6"), env=openai_env())
        with reaped(w):
            wait_until(lambda: fake.calls >= 1, what="the running job's model call")
            t0 = time.monotonic()
            proc = run("cancel", running)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.split() == [running, "cancelling"]
            reliability.faults += 1
            _, err = w.communicate(timeout=15)
            took = time.monotonic() - t0
    assert w.returncode == 0, err
    assert took < 10, f"cancel took {took:.1f}s; the heartbeat is every 0.2s"
    row = job(isolated, running)
    assert row["status"] == "cancelled", row
    assert row["result"] is None and row["lease_owner"] is None
    assert "cancelled" in err
    # A cancelled job is not run again by a later worker.
    assert jobs_by_status(isolated) == {"cancelled": 2}
    # ... unless retried.
    assert run("retry", running, waiting).returncode == 0
    with TaggedServer() as fake:
        assert run(*worker_args(fake.url), env=openai_env()).returncode == 0
    account(isolated, [running, waiting], reliability)
    assert jobs_by_status(isolated) == {"completed": 2}


def test_purge_deletes_old_finished_jobs_and_their_documents(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    ids = submit(write_docs(tmp_path / "docs", 5))
    assert run("work", "--engine", "local").returncode == 0
    assert run("cancel", *submit(write_docs(tmp_path / "more", 1, "c"))).returncode == 0
    pending = submit(write_docs(tmp_path / "later", 1, "p"))
    # Age three completed jobs by two days; leave the rest fresh.
    conn = sqlite3.connect(isolated)
    with conn:
        conn.executemany(
            "UPDATE jobs SET updated_at = updated_at - 172800 WHERE event_id = ?",
            [(e,) for e in ids[:3]],
        )
    conn.close()
    proc = run("purge", "--older-than", "1d", "--status", "completed", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"purged": 3}
    for event_id in ids[:3]:
        assert_error(run("status", event_id), ExitCode.NOT_FOUND, "no job")
    left = reliability_report.db_rows(isolated, "SELECT count(*) FROM documents")[0][0]
    assert left == 4  # 2 completed + 1 cancelled + 1 pending: documents went with their jobs
    assert jobs_by_status(isolated) == {"completed": 2, "cancelled": 1, "pending": 1}
    # Pending jobs are never purged, whatever their age.
    assert_error(run("purge", "--older-than", "0s", "--status", "pending"), ExitCode.USAGE)
    assert run("purge", "--older-than", "0s").stdout.strip() == "3"
    assert jobs_by_status(isolated) == {"pending": 1}
    assert job(isolated, pending[0])["status"] == "pending"
    assert_error(run("purge", "--older-than", "soon"), ExitCode.USAGE, "invalid duration")


def test_wrong_state_and_unknown_ids_change_nothing(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    a, b, c = submit(write_docs(tmp_path / "docs", 3))
    assert run("cancel", c).returncode == 0  # c: cancelled; a, b: pending
    unknown = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    snapshot = reliability_report.db_rows(isolated, "SELECT * FROM jobs ORDER BY id")

    cases = [
        (["retry", a], ExitCode.WRONG_STATE, ["pending"]),
        (["retry", c, a], ExitCode.WRONG_STATE, [a]),  # c alone would be fine: all or nothing
        (["retry", c, unknown], ExitCode.NOT_FOUND, ["no job"]),
        (["cancel", c], ExitCode.WRONG_STATE, ["cancelled"]),
        (["cancel", a, c], ExitCode.WRONG_STATE, [c]),
        (["cancel", a, unknown], ExitCode.NOT_FOUND, ["no job"]),
        (["cancel", "zz-not-hex"], ExitCode.NOT_FOUND, ["not a job id"]),
        (["status", unknown], ExitCode.NOT_FOUND, ["no job"]),
        (["cancel", ""], ExitCode.NOT_FOUND, []),
    ]
    for args, code, words in cases:
        for extra in ([], ["--json"]):
            proc = run(*args, *extra)
            reliability.bad_inputs += 1
            assert_error(proc, code, *words)
    # An ambiguous prefix is "not found" too, never a guess.
    prefixes = {e[:1] for e in (a, b, c)}
    if len(prefixes) < 3:
        shared = next(p for p in prefixes if sum(e.startswith(p) for e in (a, b, c)) > 1)
        assert_error(run("cancel", shared), ExitCode.NOT_FOUND, "ambiguous")
    assert reliability_report.db_rows(isolated, "SELECT * FROM jobs ORDER BY id") == snapshot
    assert os.path.exists(isolated)
