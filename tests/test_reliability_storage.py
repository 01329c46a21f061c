"""Storage faults for real: a full disk, an immutable file, corrupt and newer databases.

Every case must give one ``avo: error:`` line, exit code 6 (``ExitCode.DATABASE``),
no traceback, no half-written job, and a database that is still readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import reliability_report
from avo_cli.errors import ExitCode
from fake_openai import FakeOpenAI, Reply, answer_for
from reliability_report import (
    Figures,
    account,
    db_rows,
    jobs_by_status,
    run,
    submit,
    write_docs,
)

pytestmark = pytest.mark.slow
reliability = reliability_report.reliability  # the fixture that tallies the figures

DB_ERROR = int(ExitCode.DATABASE)


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 6 and exactly one error line, the last (a worker logs finished jobs before it)."""
    assert proc.returncode == DB_ERROR, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("avo: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    if proc.args[3] != "work":
        assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def file_size_limit(limit: int) -> Callable[[], None]:
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG, as on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def seeded(tmp_path: Path, isolated: Path) -> list[str]:
    """Three jobs already queued, the database closed cleanly."""
    return submit(write_docs(tmp_path / "seed", 3, "seed"))


def test_full_disk_on_submit_writes_nothing(
    tmp_path: Path, isolated: Path, seeded: list[str], reliability: Figures
) -> None:
    big = tmp_path / "big.md"
    big.write_text("# Big\n" + "- rule about something important\n" * 30_000)  # ~1 MB
    small = write_docs(tmp_path / "more", 1, "small")[0]
    before = jobs_by_status(isolated)
    proc = run("submit", str(small), str(big), preexec_fn=file_size_limit(256 * 1024))
    reliability.faults += 1
    assert_one_line_error(proc)
    assert "cannot write database" in proc.stderr
    assert proc.stdout == ""  # no event id printed for a job that was not stored
    # All-or-nothing: the small document before the big one was not queued either.
    assert jobs_by_status(isolated) == before
    assert integrity(isolated) == "ok"
    assert run("status", seeded[0], "--json").returncode == 0
    account(isolated, seeded, reliability)


def test_full_disk_under_a_worker_loses_no_job(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    ids = submit(write_docs(tmp_path / "docs", 6))
    # Room for a claim or two in the write-ahead log, not for a day's work.
    proc = run("work", "--engine", "local", "--lease", "1", preexec_fn=file_size_limit(40 * 1024))
    reliability.faults += 1
    assert_one_line_error(proc)
    assert integrity(isolated) == "ok"
    statuses = jobs_by_status(isolated)
    assert sum(statuses.values()) == 6
    assert set(statuses) <= {"pending", "processing", "completed"}, statuses
    # Once there is room again, a worker finishes everything (expired leases included).
    again = run("work", "--engine", "local", "--lease", "1")
    assert again.returncode == 0, again.stderr
    assert jobs_by_status(isolated) == {"completed": 6}
    account(isolated, ids, reliability)


@pytest.fixture
def immutable(isolated: Path, seeded: list[str]) -> Iterator[Path]:
    """The database file made immutable (``chattr +i``): even root cannot write it."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = subprocess.run(["chattr", "+i", str(isolated)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {made.stderr.strip()}")
    try:
        yield isolated
    finally:
        subprocess.run(["chattr", "-i", str(isolated)], check=True)


def test_read_only_database(
    tmp_path: Path, immutable: Path, seeded: list[str], reliability: Figures
) -> None:
    before = digest(immutable)
    doc = write_docs(tmp_path / "more", 1, "ro")[0]
    for args in (["submit", str(doc)], ["work", "--engine", "local"], ["cancel", seeded[0]]):
        proc = run(*args)
        reliability.faults += 1
        assert_one_line_error(proc)
        assert "read-only" in proc.stderr
    # Reading still works on a read-only database.
    shown = run("status", seeded[0], "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"status": "pending"' in shown.stdout
    assert run("list", "--json").returncode == 0
    assert digest(immutable) == before
    account(immutable, seeded, reliability)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_database(
    tmp_path: Path, isolated: Path, seeded: list[str], reliability: Figures, damage: str
) -> None:
    for _ in range(3):  # a database of some size, so half of it cuts into the tables
        submit([tmp_path / "seed" / "seed-0000.md"] * 40)
    if damage == "garbage":
        isolated.write_bytes(os.urandom(64 * 1024))
    else:
        os.truncate(isolated, isolated.stat().st_size // 2)
    before = digest(isolated)
    doc = write_docs(tmp_path / "more", 1, "c")[0]
    for args in (
        ["submit", str(doc)],
        ["status", seeded[0]],
        ["list"],
        ["work", "--engine", "local"],
        ["retry", seeded[0]],
        ["purge", "--older-than", "0s"],
    ):
        proc = run(*args)
        reliability.faults += 1
        assert_one_line_error(proc)
        assert "corrupt" in proc.stderr
    assert digest(isolated) == before  # avo never "repairs" a file by writing over it


def test_database_from_a_newer_avo(
    tmp_path: Path, isolated: Path, seeded: list[str], reliability: Figures
) -> None:
    conn = sqlite3.connect(isolated)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = digest(isolated)
    doc = write_docs(tmp_path / "more", 1, "n")[0]
    for args in (["submit", str(doc)], ["status", seeded[0]], ["work", "--engine", "local"]):
        proc = run(*args)
        reliability.faults += 1
        assert_one_line_error(proc)
        assert "newer avo" in proc.stderr
    assert digest(isolated) == before
    # Still readable by the avo that wrote it (here: plain SQLite), nothing half-written.
    assert jobs_by_status(isolated) == {"pending": 3}
    assert integrity(isolated) == "ok"
    account(isolated, seeded, reliability)


def test_full_disk_at_completion_does_not_fail_the_job(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    """The claim fits, the (large) result does not: the worker stops, the job survives."""
    ids = submit(write_docs(tmp_path / "docs", 1))

    def big_answer(body: dict[str, object]) -> Reply:
        draft = answer_for(body)
        if "title" in draft:
            draft["content"] = "word " * 40_000  # ~200 KB of summary
        return Reply(kind="content", content=json.dumps(draft))

    with FakeOpenAI() as fake:
        fake.default = big_answer
        args = ["work", "--engine", "openai", "--base-url", fake.url, "--lease", "1"]
        env = {"OPENAI_API_KEY": "sk-test-disk"}
        proc = run(*args, env=env, preexec_fn=file_size_limit(100 * 1024))
        reliability.faults += 1
        assert_one_line_error(proc)
        assert "cannot write database" in proc.stderr
        row = db_rows(isolated, "SELECT status, attempts, error FROM jobs")[0]
        assert row[0] in ("pending", "processing"), row  # not "failed": the disk was full
        assert integrity(isolated) == "ok"
        again = run(*args, env=env)
        assert again.returncode == 0, again.stderr
    assert jobs_by_status(isolated) == {"completed": 1}
    account(isolated, ids, reliability)
