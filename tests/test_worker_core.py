"""Several real worker processes on one database; schema migrations."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from avo_cli.store import sqlite as sqlite_store
from avo_cli.store import sqlite_migrations
from conftest import RunAvo, avo_cmd, submit_ids


@pytest.mark.slow
def test_four_workers_drain_500_jobs_exactly_once(run_avo: RunAvo, tmp_path: Path, db_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    paths = []
    for n in range(500):
        path = docs / f"g{n:03}.md"
        # Enough text that the engine's work outlasts the workers' start-up, so all four
        # really compete for jobs.
        filler = f"This paragraph explains the background of guide {n} at length. " * 120
        path.write_text(
            f"# Guide {n}\n\n{filler}\n\n- You must run check {n}.\n- Prefer option {n}.\n",
            encoding="utf-8",
        )
        paths.append(str(path))
    ids = submit_ids(run_avo("submit", *paths))
    assert len(set(ids)) == 500

    workers = [
        subprocess.Popen(
            avo_cmd("work", "--engine", "local"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [w.communicate(timeout=240) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err

    # Every job was completed by exactly one worker: one "completed" line each, overall.
    done_lines = [
        line.split()[1]
        for _, err in outputs
        for line in err.splitlines()
        if line.startswith("completed")
    ]
    assert len(done_lines) == 500
    assert len(set(done_lines)) == 500
    assert sum(1 for _, err in outputs if "completed" in err) >= 2  # the work was shared

    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT status, attempts, result FROM jobs").fetchall()
    assert len(rows) == 500
    assert {r[0] for r in rows} == {"completed"}
    assert {r[1] for r in rows} == {1}
    for _, _, result in rows:
        checklist = json.loads(result)["checklist"]
        assert checklist["total_items"] == 2 and checklist["required_items"] >= 1


def _schema(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name"
        ).fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return [*rows, ("user_version", str(version), "")]


def test_schema_version_matches_migrations():
    assert len(sqlite_migrations.MIGRATIONS) == sqlite_store.SCHEMA_VERSION


def test_migrated_database_equals_fresh(tmp_path: Path):
    fresh = tmp_path / "fresh.db"
    sqlite_store.SQLiteStore(str(fresh)).close()

    # Step through history: each migration applied on its own, in order, as an older
    # avo would have left the database between upgrades.
    stepped = tmp_path / "stepped.db"
    conn = sqlite3.connect(stepped, isolation_level=None)
    for n in range(1, len(sqlite_migrations.MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        from sqlite_utils import Database

        sqlite_migrations.MIGRATIONS[n - 1](Database(conn))
        conn.execute(f"PRAGMA user_version = {n}")
        conn.execute("COMMIT")
    conn.close()
    sqlite_store.SQLiteStore(str(stepped)).close()
    assert _schema(stepped) == _schema(fresh)


def test_old_database_is_upgraded_on_open(tmp_path: Path):
    db = tmp_path / "old.db"
    sqlite3.connect(db).close()  # an empty file: schema version 0
    store = sqlite_store.SQLiteStore(str(db))
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_store.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_first_use_migrates_once(tmp_path: Path):
    db = tmp_path / "race.db"
    doc = tmp_path / "d.md"
    doc.write_text("# T\n\n- You must test.\n", encoding="utf-8")
    procs = [
        subprocess.Popen(
            avo_cmd("submit", "--db", str(db), str(doc)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 6
