"""PostgreSQL backend specifics on a real server: errors, migrations, claims, wake-ups.

The shared contract is tests/test_store.py; this file covers what only a
server-backed store has: the missing driver and an unreachable server, many
processes migrating one empty database, the claim's row locking shown against
the SQLite statement, LISTEN/NOTIFY, and the same bytes from both backends.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from avo_cli.errors import DatabaseError
from avo_cli.store import pg_migrations
from avo_cli.store.postgres import CLAIM_SQL, PostgresStore
from conftest import RunAvo, avo_cmd

pytest_plugins = ["stores"]

UNREACHABLE = "postgresql://avo:s3cret-pw@127.0.0.1:9/avo"


def _new_job(text: str = "# Guide\n\n- Write tests.\n") -> Any:
    from stores import new_job

    return new_job(text)


# --- errors --------------------------------------------------------------------


def test_missing_driver_is_one_line_exit_9(
    run_avo: RunAvo, tmp_path: Path, doc: Callable[..., Path]
) -> None:
    shim = tmp_path / "shim" / "psycopg"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named psycopg')\n")
    env = {"PYTHONPATH": str(shim.parent), "AVO_DB": "postgresql://postgres@127.0.0.1/test"}
    for args in (("submit", str(doc("# A\n- b\n"))), ("status", "abcd"), ("work",), ("migrate",)):
        proc = run_avo(*args, env=env)
        assert proc.returncode == 9, (args, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("avo: error: ")
        assert "pip install 'avo-cli[postgres]'" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_unreachable_server_is_one_line_exit_9_without_password(
    run_avo: RunAvo, doc: Callable[..., Path]
) -> None:
    path = doc("# A\n- b\n")
    for args in (("submit", str(path)), ("list", "--json"), ("migrate",)):
        proc = run_avo(*args, "--db", UNREACHABLE)
        assert proc.returncode == 9, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "cannot connect to PostgreSQL at postgresql://avo@127.0.0.1:9/avo" in proc.stderr
        assert "s3cret" not in proc.stderr + proc.stdout
    proc = run_avo("work", env={"AVO_DB": UNREACHABLE})
    assert proc.returncode == 9 and "s3cret" not in proc.stderr


def test_postgres_url_selects_postgres_and_paths_select_sqlite(
    pg_url: str, tmp_path: Path, run_avo: RunAvo, doc: Callable[..., Path]
) -> None:
    path = doc("# A\n- You must b\n")
    (pg_id,) = run_avo("submit", str(path), "--db", pg_url, check=True).stdout.split()
    lite = tmp_path / "lite.db"
    (lite_id,) = run_avo(
        "submit", str(path), "--db", f"sqlite:///{lite}", check=True
    ).stdout.split()
    assert lite.exists()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT event_id FROM jobs").fetchall()
    assert rows == [(pg_id,)]
    assert run_avo("status", lite_id, "--db", str(lite)).returncode == 0
    assert run_avo("status", lite_id, "--db", pg_url).returncode == 4


# --- migrations ------------------------------------------------------------------


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_many_processes_migrate_an_empty_database_at_once(fresh_pg_url: str) -> None:
    assert _tables(fresh_pg_url) == set()
    procs = [
        subprocess.Popen(
            avo_cmd("migrate", "--json", "--db", fresh_pg_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out) == {
            "backend": "postgresql",
            "database": re.sub(r"//[^@]*@", "//postgres@", fresh_pg_url),
            "schema_version": pg_migrations.SCHEMA_VERSION,
        }
    assert _tables(fresh_pg_url) == {"jobs", "documents", "avo_schema"}
    with psycopg.connect(fresh_pg_url) as conn:
        assert conn.execute("SELECT id, version FROM avo_schema").fetchall() == [
            (1, pg_migrations.SCHEMA_VERSION)
        ]


def test_first_command_migrates_and_newer_schema_is_refused(
    fresh_pg_url: str, run_avo: RunAvo, doc: Callable[..., Path]
) -> None:
    proc = run_avo("submit", str(doc("# A\n- b\n")), "--db", fresh_pg_url)
    assert proc.returncode == 0, proc.stderr
    assert {"jobs", "documents"} <= _tables(fresh_pg_url)
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute("UPDATE avo_schema SET version = version + 1")
    proc = run_avo("list", "--db", fresh_pg_url)
    assert proc.returncode == 6
    assert "newer avo" in proc.stderr and proc.stderr.count("\n") == 1
    with pytest.raises(DatabaseError, match="upgrade avo"):
        PostgresStore(fresh_pg_url)


# --- claims ----------------------------------------------------------------------

#: store.sqlite.CLAIM_SQL word for word, in PostgreSQL's parameter style
NAIVE_CLAIM = """
UPDATE jobs
SET status = 'processing', lease_owner = %(owner)s,
    lease_expires = extract(epoch FROM now()) + 60, attempts = attempts + 1
WHERE id = (
    SELECT id FROM jobs
    WHERE status IN ('pending', 'processing')
      AND ((status = 'pending' AND run_after <= extract(epoch FROM now()))
           OR (status = 'processing' AND lease_expires < extract(epoch FROM now())))
    ORDER BY id
    LIMIT 1
)
RETURNING id
"""


def _race(url: str, sql: str) -> tuple[list[Any], list[Any]]:
    """Claimer A claims inside an open transaction; B claims meanwhile; A commits."""
    a = psycopg.connect(url)
    b = psycopg.connect(url, autocommit=True)
    try:
        got_a = a.execute(sql, {"owner": "a", "lease": 60.0}).fetchall()
        got_b: list[Any] = []
        t = threading.Thread(
            target=lambda: got_b.extend(b.execute(sql, {"owner": "b", "lease": 60.0}).fetchall())
        )
        t.start()
        t.join(0.5)  # B is blocked on A's row lock (naive) or already done (SKIP LOCKED)
        a.commit()
        t.join(10)
        assert not t.is_alive()
        return got_a, got_b
    finally:
        a.close()
        b.close()


def test_sqlite_claim_verbatim_double_claims_and_skip_locked_does_not(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.enqueue([_new_job(), _new_job()])
    got_a, got_b = _race(pg_url, NAIVE_CLAIM)
    assert got_a == got_b == [(1,)], "the naive claim should hand job 1 to both"
    assert store.get(store.recent()[-1].event_id).attempts == 2  # the tell-tale
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'pending', attempts = 0, lease_owner = NULL")
    got_a, got_b = _race(pg_url, CLAIM_SQL)
    assert [r[0] for r in got_a] == [1] and [r[0] for r in got_b] == [2]
    assert [r.attempts for r in store.recent()] == [1, 1]
    store.close()


def test_lease_times_come_from_the_server_clock(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.enqueue([_new_job()])
    job = store.claim("w", 120.0)
    assert job is not None
    with psycopg.connect(pg_url) as conn:
        server_now, expires, created = conn.execute(
            "SELECT extract(epoch FROM clock_timestamp())::float8, lease_expires, created_at "
            "FROM jobs"
        ).fetchone() or (0.0, 0.0, 0.0)
    assert 110 < expires - server_now <= 120
    assert 0 <= server_now - created < 60
    store.close()


# --- LISTEN/NOTIFY -----------------------------------------------------------------


def _waits(store: PostgresStore, timeout: float) -> tuple[list[bool], threading.Thread]:
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(store.wait_for_work(timeout)))
    t.start()
    return out, t


def test_wait_for_work_wakes_on_enqueue_retry_and_release(pg_url: str) -> None:
    idle, client = PostgresStore(pg_url), PostgresStore(pg_url)
    assert idle.wait_for_work(0.1) is False  # starts listening; nothing came
    out, t = _waits(idle, 30)
    time.sleep(0.2)
    (job,) = [_new_job()]
    client.enqueue([job])
    t.join(30)
    assert out == [True]
    claimed = client.claim("w", 60)
    assert claimed is not None
    out, t = _waits(idle, 30)
    assert client.release(claimed.seq, "w")
    t.join(30)
    assert out == [True]
    claimed = client.claim("w", 60)
    assert claimed is not None and client.fail(claimed.seq, "w", "boom")
    assert idle.wait_for_work(0.1) is False  # a failure wakes nobody
    out, t = _waits(idle, 30)
    client.retry([job.event_id])
    t.join(30)
    assert out == [True]
    idle.close()
    client.close()


def test_wait_for_work_falls_back_to_sleep_when_listen_fails(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.url = UNREACHABLE  # the LISTEN connection cannot be made (as behind a pooler)
    started = time.monotonic()
    assert store.wait_for_work(0.3) is False
    assert time.monotonic() - started >= 0.25
    assert store.wait_for_work(0.05) is False  # no reconnect storm: plain sleep
    store.close()


@pytest.mark.slow
def test_idle_worker_is_woken_by_notify(
    pg_url: str, run_avo: RunAvo, doc: Callable[..., Path]
) -> None:
    """A ``--forever`` worker idles; a submit wakes it through LISTEN/NOTIFY."""
    log = Path(str(doc("", "worker.log")))
    with log.open("w") as err:
        worker = subprocess.Popen(
            avo_cmd("work", "--forever", "--engine", "local", "--db", pg_url),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until the worker LISTENs
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN avo_jobs%%'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the idle worker never issued LISTEN")
        (eid,) = run_avo(
            "submit", str(doc("# A\n- You must b\n")), "--db", pg_url, check=True
        ).stdout.split()
        proc = run_avo("status", eid, "--wait", "--timeout", "60", "--json", "--db", pg_url)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["status"] == "completed"
    finally:
        worker.terminate()
        assert worker.wait(30) == 143


# --- the same bytes from both backends ---------------------------------------------


def _normalise(text: str, ids: list[str]) -> str:
    for i, eid in enumerate(ids):
        text = text.replace(eid, f"<id{i}>")
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<ts>", text)


@pytest.mark.slow
def test_same_documents_give_the_same_json_on_both_backends(
    pg_url: str, tmp_path: Path, run_avo: RunAvo
) -> None:
    docs = [
        tmp_path / "contributing.md",
        tmp_path / "보안.md",
    ]
    docs[0].write_text(
        "# Contributing\n\n## Tests\n\n- You must add tests for every change.\n"
        "- Keep pull requests small.\n\n## Style\n\n- Run the formatter before committing.\n"
    )
    docs[1].write_text(
        "# 보안 가이드\n\n- 비밀번호는 반드시 해시하여 저장하세요.\n"
        "- 로그에 토큰을 남기지 마세요.\n"
    )
    outputs: dict[str, list[str]] = {}
    for name, url in (("sqlite", str(tmp_path / "same.db")), ("postgres", pg_url)):
        ids = run_avo("submit", *map(str, docs), "--db", url, check=True).stdout.split()
        run_avo("submit", str(docs[0]), "--db", url, check=True)  # a pending one too
        run_avo("work", "--engine", "local", "--max-jobs", "2", "--db", url, check=True)
        got = [run_avo("status", eid, "--json", "--db", url, check=True).stdout for eid in ids]
        got.append(run_avo("list", "--json", "--db", url, check=True).stdout)
        got.append(run_avo("status", ids[1], "--json", "-v", "--db", url, check=True).stdout)
        every = [*ids, json.loads(got[-2])[0]["event_id"]]
        outputs[name] = [_normalise(text, every) for text in got]
        assert json.loads(got[0])["status"] == "completed"
    for lite, pg in zip(outputs["sqlite"], outputs["postgres"], strict=True):
        assert lite == pg
    assert "보안" in outputs["postgres"][1]


def test_malformed_url_is_a_config_error_without_password(run_avo: RunAvo) -> None:
    for url in ("postgresql://u:s3cret-pw@[bad", "postgresql://u:s3cret-pw@127.0.0.1/db?bogus=1"):
        proc = run_avo("list", "--db", url)
        assert proc.returncode == 10, proc.stderr
        assert proc.stderr.startswith("avo: error: invalid PostgreSQL URL")
        assert proc.stderr.count("\n") == 1 and "s3cret" not in proc.stderr


def test_concurrent_apply_under_the_advisory_lock_migrates_once(fresh_pg_url: str) -> None:
    """Eight connections run the migration at the same instant; one does the work."""
    conns = [psycopg.connect(fresh_pg_url, autocommit=True) for _ in range(8)]
    start = threading.Barrier(len(conns))
    results: list[object] = []

    def go(conn: psycopg.Connection[Any]) -> None:
        start.wait()
        try:
            results.append(pg_migrations.apply(conn, "test"))
        except Exception as exc:  # collected: the assertion below shows it
            results.append(exc)

    threads = [threading.Thread(target=go, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in conns:
        c.close()
    assert results == [pg_migrations.SCHEMA_VERSION] * len(conns)
    assert _tables(fresh_pg_url) == {"jobs", "documents", "avo_schema"}
