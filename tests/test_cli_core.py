"""The core command line, end to end: submit, work, status, list, run.

Through real subprocesses where the process boundary matters (exit codes,
stdout/stderr split), through typer's runner elsewhere.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

from conftest import EXAMPLES, RunAvo, status_json, submit_ids

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

GUIDE = """# Team guide

## Reviews

- Every change must be reviewed by one other engineer.
- You should keep pull requests small.

## Testing

Tests must pass before merge. Flaky tests should be fixed within a day.
"""


def job_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


def test_submit_prints_one_uuid4_per_line_and_nothing_else(run_avo: RunAvo, doc, db_path):
    a, b = doc(GUIDE, "a.md"), doc(GUIDE + "\nMore.\n", "b.md")
    proc = run_avo("submit", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(UUID4.match(line) for line in lines)
    assert proc.stderr == ""
    assert job_count(db_path) == 2


def test_submit_json_lists_event_id_and_source(run_avo: RunAvo, doc):
    path = doc(GUIDE)
    proc = run_avo("submit", "--json", str(path))
    data = json.loads(proc.stdout)
    assert data == [{"event_id": data[0]["event_id"], "source": str(path)}]
    assert UUID4.match(data[0]["event_id"])


def test_submit_reads_stdin(run_avo: RunAvo, db_path):
    proc = run_avo("submit", "-", input=GUIDE)
    (event_id,) = submit_ids(proc)
    with sqlite3.connect(db_path) as conn:
        source, size, sha = conn.execute(
            "SELECT source, size, sha256 FROM jobs WHERE event_id = ?", (event_id,)
        ).fetchone()
    import hashlib

    assert source == "<stdin>"
    assert size == len(GUIDE.encode())
    assert sha == hashlib.sha256(GUIDE.encode()).hexdigest()


def test_database_created_private(run_avo: RunAvo, doc, tmp_path: Path):
    db = tmp_path / "fresh" / "q.db"
    run_avo("submit", "--db", str(db), str(doc(GUIDE)), check=True)
    assert db.stat().st_mode & 0o777 == 0o600
    assert not db.parent.stat().st_mode & 0o002
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_database_lives_in_user_data_dir(run_avo: RunAvo, doc, tmp_path: Path):
    proc = run_avo("submit", str(doc(GUIDE)), env={"AVO_DB": None})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "home" / ".local" / "share" / "avo" / "avo.db").exists()


def test_submit_work_status_end_to_end_offline(run_avo: RunAvo, doc):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    assert status_json(run_avo, event_id)["status"] == "pending"
    work = run_avo("work")
    assert work.returncode == 0, work.stderr
    assert work.stdout == ""  # people-facing lines go to stderr
    job = status_json(run_avo, event_id)
    assert job["status"] == "completed"
    assert job["message"] == "Job completed."
    checklist = job["result"]["checklist"]
    texts = [i["text"] for c in checklist["categories"] for i in c["items"]]
    assert any("reviewed by one other engineer" in t for t in texts)
    assert checklist["_source"] == job["result"]["summary"]["_source"] == "local_extractive"


def test_status_json_contract_exact_keys_and_types(run_avo: RunAvo, doc):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    pending = status_json(run_avo, event_id)
    assert list(pending) == ["event_id", "status", "message", "result", "created_at", "updated_at"]
    assert pending["result"] is None
    run_avo("work", check=True)
    job = status_json(run_avo, event_id)
    assert list(job) == ["event_id", "status", "message", "result", "created_at", "updated_at"]
    assert job["event_id"] == event_id and UUID4.match(event_id)
    assert ISO_Z.match(job["created_at"]) and ISO_Z.match(job["updated_at"])
    assert job["created_at"] <= job["updated_at"]
    result = job["result"]
    assert list(result) == ["summary", "checklist"]
    summary = result["summary"]
    assert list(summary) == ["_source", "_model", "title", "content", "key_points", "word_count"]
    assert isinstance(summary["title"], str) and summary["title"] == "Team guide"
    assert isinstance(summary["content"], str) and summary["content"]
    assert 1 <= len(summary["key_points"]) <= 7
    assert all(isinstance(p, str) for p in summary["key_points"])
    assert summary["word_count"] == len(summary["content"].split())
    checklist = result["checklist"]
    assert list(checklist) == ["_source", "_model", "categories", "total_items", "required_items"]
    items = []
    for cat in checklist["categories"]:
        assert list(cat) == ["name", "items"]
        assert isinstance(cat["name"], str)
        for item in cat["items"]:
            assert list(item) == ["id", "text", "required"]
            assert isinstance(item["id"], int) and isinstance(item["text"], str)
            assert isinstance(item["required"], bool)
            items.append(item)
    assert [i["id"] for i in items] == list(range(1, len(items) + 1))
    assert checklist["total_items"] == len(items)
    assert checklist["required_items"] == sum(i["required"] for i in items)


def test_failed_job_contract_has_null_result(run_avo: RunAvo, doc, db_path: Path):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE jobs SET status = 'failed', error = 'boom' WHERE event_id = ?", (event_id,)
        )
    job = status_json(run_avo, event_id)
    assert list(job) == ["event_id", "status", "message", "result", "created_at", "updated_at"]
    assert job["status"] == "failed" and job["result"] is None
    assert job["message"] == "Job failed: boom"


def test_korean_messages(run_avo: RunAvo, doc):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    run_avo("work", check=True)
    proc = run_avo("status", event_id, env={"AVO_LANG": "ko"})
    assert json.loads(proc.stdout)["message"] == "작업이 완료되었습니다."


def test_status_accepts_unique_prefix_in_any_case(run_avo: RunAvo, doc):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    assert status_json(run_avo, event_id[:6].upper())["event_id"] == event_id


def test_fifo_max_jobs_one_takes_the_oldest(run_avo: RunAvo, doc):
    ids = []
    for n in range(3):
        ids += submit_ids(run_avo("submit", str(doc(GUIDE + f"\nDoc {n}.\n", f"d{n}.md"))))
    run_avo("work", "--max-jobs", "1", check=True)
    statuses = [status_json(run_avo, i)["status"] for i in ids]
    assert statuses == ["completed", "pending", "pending"]
    run_avo("work", "--max-jobs", "1", check=True)
    assert [status_json(run_avo, i)["status"] for i in ids] == ["completed", "completed", "pending"]


def test_work_on_empty_queue_exits_zero(run_avo: RunAvo):
    proc = run_avo("work")
    assert proc.returncode == 0, proc.stderr


def test_wait_returns_when_done_and_times_out_otherwise(run_avo: RunAvo, doc):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    timed_out = run_avo("status", event_id, "--wait", "--timeout", "0.3")
    assert timed_out.returncode == 7
    assert "still pending" in timed_out.stderr
    run_avo("work", check=True)
    done = run_avo("status", event_id, "--wait", "--timeout", "5")
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "completed"


def test_wait_exits_one_for_failed_job(run_avo: RunAvo, doc, db_path: Path):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE jobs SET status = 'failed', error = 'x'")
    proc = run_avo("status", event_id, "--wait")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "failed"


def test_list_json_shape_and_filters(run_avo: RunAvo, doc):
    a = submit_ids(run_avo("submit", str(doc(GUIDE, "a.md"))))[0]
    run_avo("work", check=True)
    b = submit_ids(run_avo("submit", str(doc(GUIDE, "b.md"))))[0]
    rows = json.loads(run_avo("list", "--json").stdout)
    assert [r["event_id"] for r in rows] == [b, a]  # newest first
    assert all(
        list(r) == ["event_id", "status", "source", "created_at", "updated_at"] for r in rows
    )
    pending = json.loads(run_avo("list", "--status", "pending").stdout)
    assert [r["event_id"] for r in pending] == [b]
    assert len(json.loads(run_avo("list", "--limit", "1").stdout)) == 1


def test_list_on_missing_database_is_empty_not_an_error(run_avo: RunAvo, db_path: Path):
    proc = run_avo("list", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert not db_path.exists()


def test_run_prints_json_lines_equal_to_status(run_avo: RunAvo, doc):
    proc = run_avo("run", str(doc(GUIDE, "a.md")), str(doc(GUIDE + "\nX.\n", "b.md")))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        job = json.loads(line)
        assert job == status_json(run_avo, job["event_id"])
        assert job["status"] == "completed"


def test_module_entry_point_and_version(run_avo: RunAvo):
    proc = run_avo("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("avo ")


def test_help_lists_exit_codes(run_avo: RunAvo):
    out = run_avo("--help").stdout
    for code in ("0", "3", "4", "6", "130", "143"):
        assert re.search(rf"\b{code}\b", out)
    assert "Exit codes" in out


def test_bundled_examples_give_real_checklists(run_avo: RunAvo):
    docs = sorted((EXAMPLES / "guidelines").glob("*.md"))
    assert len(docs) >= 2
    proc = run_avo("run", *map(str, docs))
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.splitlines():
        checklist = json.loads(line)["result"]["checklist"]
        assert checklist["total_items"] >= 3 and checklist["required_items"] >= 1


# --- bad input: one test per row, each a one-line error, its code, nothing written ----------


def _assert_rejected(proc, code: int, needle: str, db: Path) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avo: error: "), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert job_count(db) == 0


def test_bad_input_missing_file(run_avo: RunAvo, db_path, tmp_path):
    proc = run_avo("submit", str(tmp_path / "nope.md"))
    _assert_rejected(proc, 3, "no such file", db_path)


def test_bad_input_directory(run_avo: RunAvo, db_path, tmp_path):
    proc = run_avo("submit", str(tmp_path))
    _assert_rejected(proc, 3, "is a directory", db_path)


@pytest.mark.parametrize("text", ["", "   \n\t \n"])
def test_bad_input_empty_or_whitespace(run_avo: RunAvo, db_path, doc, text):
    proc = run_avo("submit", str(doc(text)))
    _assert_rejected(proc, 3, "empty", db_path)


def test_bad_input_binary(run_avo: RunAvo, db_path, tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _assert_rejected(run_avo("submit", str(path)), 3, "binary", db_path)


def test_bad_input_invalid_utf8(run_avo: RunAvo, db_path, tmp_path):
    path = tmp_path / "latin1.md"
    path.write_bytes("# Règles\n\nVous devez tester.\n".encode("latin-1"))
    _assert_rejected(run_avo("submit", str(path)), 3, "not valid UTF-8", db_path)


def test_bad_input_over_size_cap(run_avo: RunAvo, db_path, doc):
    path = doc("# Big\n\n" + "You must test. " * 200)
    proc = run_avo("submit", str(path), env={"AVO_MAX_BYTES": "1000"})
    _assert_rejected(proc, 3, "over the", db_path)


def test_bad_input_default_cap_is_two_mib(run_avo: RunAvo, db_path, tmp_path):
    path = tmp_path / "huge.md"
    path.write_text("# Big\n\n" + "x" * (2 * 1024 * 1024), encoding="utf-8")
    _assert_rejected(run_avo("submit", str(path)), 3, "2.0 MiB limit", db_path)


def test_one_bad_input_rejects_the_whole_call(run_avo: RunAvo, db_path, doc, tmp_path):
    good = doc(GUIDE, "good.md")
    proc = run_avo("submit", str(good), str(tmp_path / "missing.md"), str(good))
    _assert_rejected(proc, 3, "missing.md", db_path)


def test_control_characters_are_stored_verbatim(run_avo: RunAvo, doc, db_path):
    text = "# Rules\n\n- You must not print \x1b[31mred\x1b[0m or \x07 bells.\n"
    (event_id,) = submit_ids(run_avo("submit", str(doc(text))))
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute("SELECT content FROM documents").fetchone()[0]
    assert stored == text
    assert event_id


def test_bad_input_unknown_id(run_avo: RunAvo, doc):
    run_avo("submit", str(doc(GUIDE)), check=True)
    proc = run_avo("status", str(uuid.uuid4()))
    assert proc.returncode == 4 and proc.stderr.startswith("avo: error: no job")


def test_bad_input_malformed_id(run_avo: RunAvo, doc):
    run_avo("submit", str(doc(GUIDE)), check=True)
    proc = run_avo("status", "not-an-id!")
    assert proc.returncode == 4 and "not a job id" in proc.stderr


def test_bad_input_ambiguous_id(run_avo: RunAvo, doc):
    # 17 ids over 16 possible first characters: two must share one.
    paths = [str(doc(GUIDE + f"\n{n}\n", f"d{n}.md")) for n in range(17)]
    ids = submit_ids(run_avo("submit", *paths))
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    proc = run_avo("status", shared)
    assert proc.returncode == 4 and "ambiguous" in proc.stderr


def test_bad_input_corrupt_database(run_avo: RunAvo, doc, db_path: Path):
    db_path.write_bytes(b"this is not a database, just some text " * 100)
    proc = run_avo("submit", str(doc(GUIDE)))
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.count("\n") == 1 and "corrupt" in proc.stderr
    proc = run_avo("status", "abcd")
    assert proc.returncode == 6 and "Traceback" not in proc.stderr


def test_bad_input_unwritable_database_location(run_avo: RunAvo, doc, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_avo("submit", "--db", str(blocker / "sub" / "avo.db"), str(doc(GUIDE)))
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.startswith("avo: error: cannot create database")
    assert "Traceback" not in proc.stderr


def test_bad_input_newer_database(run_avo: RunAvo, doc, db_path: Path):
    run_avo("submit", str(doc(GUIDE)), check=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    proc = run_avo("status", "abc")
    assert proc.returncode == 6 and "newer avo" in proc.stderr


def test_bad_engine_name(run_avo: RunAvo, doc):
    run_avo("submit", str(doc(GUIDE)), check=True)
    proc = run_avo("work", "--engine", "gpt5000")
    assert proc.returncode == 8 and "unknown engine" in proc.stderr


def test_in_process_runner_takes_the_same_error_path(cli, tmp_path):
    result = cli("submit", str(tmp_path / "missing.md"))
    assert result.exit_code == 3
    assert "no such file" in result.output


# --- found in review: each of these once misbehaved -------------------------------------


def test_run_claims_only_its_own_jobs(run_avo: RunAvo, doc):
    backlog = submit_ids(run_avo("submit", str(doc(GUIDE, "old1.md")), str(doc(GUIDE, "old2.md"))))
    proc = run_avo("run", str(doc(GUIDE + "\nMine.\n", "mine.md")))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    assert [status_json(run_avo, i)["status"] for i in backlog] == ["pending", "pending"]


def test_closed_stdin_is_bad_input(run_avo: RunAvo, db_path: Path):
    import subprocess

    from conftest import avo_cmd

    proc = subprocess.run(
        [*avo_cmd("submit", "-")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        close_fds=True,
        preexec_fn=lambda: __import__("os").close(0),
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("avo: error: stdin (-) is closed")
    assert job_count(db_path) == 0


def test_closed_stdout_queues_nothing(doc, db_path: Path):
    import os
    import subprocess

    from conftest import avo_cmd

    proc = subprocess.run(
        avo_cmd("submit", str(doc(GUIDE))),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 11, proc.stderr
    assert "stdout is closed" in proc.stderr and "Traceback" not in proc.stderr
    assert job_count(db_path) == 0


def test_full_stdout_says_the_jobs_were_queued(doc, db_path: Path):
    import subprocess

    from conftest import avo_cmd

    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            avo_cmd("submit", str(doc(GUIDE))), stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert proc.returncode == 11
    assert proc.stderr.count("\n") == 1 and "1 job(s) queued" in proc.stderr
    assert job_count(db_path) == 1


def test_sigint_while_reading_stdin_is_one_line_130(db_path: Path):
    import signal
    import subprocess
    import time

    from conftest import avo_cmd

    proc = subprocess.Popen(
        avo_cmd("submit", "-"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # let it start and block on stdin
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == "avo: error: interrupted\n"
    assert job_count(db_path) == 0


def test_broken_pipe_is_quiet(run_avo: RunAvo, doc):
    import os
    import subprocess

    from conftest import avo_cmd

    run_avo("submit", str(doc(GUIDE)), check=True)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before avo writes: EPIPE on the first write
    try:
        proc = subprocess.run(
            avo_cmd("list", "--json"), stdout=write_end, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_lease_is_refused(run_avo: RunAvo, value):
    proc = run_avo("work", env={"AVO_LEASE": value})
    assert proc.returncode == 10 and "finite" in proc.stderr


def test_oversize_message_gives_the_real_size(run_avo: RunAvo, tmp_path: Path, db_path):
    path = tmp_path / "big.md"
    path.write_bytes(b"# Big\n\n" + b"x" * 5000)
    proc = run_avo("submit", str(path), env={"AVO_MAX_BYTES": "1024"})
    _assert_rejected(proc, 3, "document is 4.9 KiB, over the 1.0 KiB limit", db_path)


def test_repeated_ids_are_cancelled_once(run_avo: RunAvo, doc):
    (event_id,) = submit_ids(run_avo("submit", str(doc(GUIDE))))
    proc = run_avo("cancel", "--json", event_id, event_id[:8])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"event_id": event_id, "status": "cancelled"}]


def test_log_line_stays_one_line_for_odd_file_names(run_avo: RunAvo, doc):
    run_avo("submit", str(doc(GUIDE, "two\nlines \x1b[31mred.md")), check=True)
    proc = run_avo("work")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("completed")]
    assert len(lines) == 1 and "two lines" in lines[0] and "\x1b" not in proc.stderr


def test_stats_on_a_fresh_machine_creates_nothing(run_avo: RunAvo, db_path: Path):
    proc = run_avo("stats")
    assert proc.returncode == 0 and json.loads(proc.stdout)["jobs"]["total"] == 0
    assert not db_path.exists()


@pytest.mark.parametrize("target", ["/dev/null", "dir"])
def test_database_that_is_not_a_regular_file(run_avo: RunAvo, doc, tmp_path: Path, target):
    path = "/dev/null" if target == "/dev/null" else str(tmp_path)
    proc = run_avo("submit", "--db", path, str(doc(GUIDE)))
    assert proc.returncode == 6 and "not a regular file" in proc.stderr
    assert not Path("/dev/null-journal").exists()
