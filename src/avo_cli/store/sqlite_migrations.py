"""SQLite schema as a list of small migrations (sqlite-utils does the DDL).

``PRAGMA user_version`` holds the number of migrations applied, so opening
an up-to-date database costs one pragma read and never imports sqlite-utils.
A migrated database must equal a fresh one (tests/test_migrations.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_jobs(db: Database) -> None:
    db.table("jobs").create(
        {
            "id": int,
            "event_id": str,
            "status": str,
            "source": str,
            "size": int,
            "sha256": str,
            "error": str,
            "result": str,
            "checkpoint": str,
            "usage": str,
            "engine": str,
            "model": str,
            "cache_key": str,
            "attempts": int,
            "run_after": float,
            "lease_owner": str,
            "lease_expires": float,
            "cancel_requested": int,
            "created_at": float,
            "updated_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={
            "event_id",
            "status",
            "source",
            "size",
            "sha256",
            "attempts",
            "run_after",
            "cancel_requested",
            "created_at",
            "updated_at",
        },
        defaults={"status": "pending", "attempts": 0, "run_after": 0, "cancel_requested": 0},
    )
    # AUTOINCREMENT-free INTEGER PRIMARY KEY is the queue order; ids are never
    # reused while rows exist, which is all FIFO needs.
    db.table("jobs").create_index(["event_id"], unique=True, index_name="jobs_event_id")
    db.table("jobs").create_index(["status", "id"], index_name="jobs_status")
    # The claim scans only live jobs, in queue order (partial index).
    db.execute("CREATE INDEX jobs_queue ON jobs(id) WHERE status IN ('pending', 'processing')")
    db.execute("CREATE INDEX jobs_cache ON jobs(sha256, cache_key) WHERE status = 'completed'")
    # Document text lives apart so listing and claiming never read it.
    db.table("documents").create(
        {"job_id": int, "content": str},
        pk="job_id",
        not_null={"content"},
        foreign_keys=[("job_id", "jobs", "id")],
    )


def apply(conn: sqlite3.Connection, current: int) -> None:
    """Run migrations ``current..`` inside the caller's write transaction."""
    db = Database(conn)
    for fn in MIGRATIONS[current:]:
        fn(db)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
