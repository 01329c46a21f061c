"""PostgreSQL schema as a list of migrations, applied under an advisory lock.

The layout mirrors SQLite's (``sqlite_migrations``): ``jobs`` (identity id =
queue order, times as float epoch seconds from the server clock, result /
usage / checkpoint as ``text`` so their bytes and key order survive) and
``documents`` (the text, apart so listing and claiming never read it).

``avo_schema`` holds the number of migrations applied. ``apply`` takes
``pg_advisory_xact_lock`` first, so any number of processes starting at once
on an empty database migrate it exactly once; the others wait for the lock,
see the new version and do nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avo_cli.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg

#: pg_advisory_xact_lock key: "avo-schema" (any constant; only avo uses it)
LOCK_KEY = 0x61766F2D736368

MIGRATIONS: list[str] = [
    # 1: jobs + documents
    """
    CREATE TABLE jobs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text COLLATE "C" NOT NULL,
        status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
        source text NOT NULL,
        size bigint NOT NULL,
        sha256 text NOT NULL,
        error text,
        result text,
        checkpoint text,
        usage text,
        engine text,
        model text,
        cache_key text,
        attempts integer NOT NULL DEFAULT 0,
        run_after double precision NOT NULL DEFAULT 0,
        lease_owner text,
        lease_expires double precision,
        cancel_requested boolean NOT NULL DEFAULT false,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        started_at double precision,
        finished_at double precision
    );
    -- "C" collation: byte order, so an id prefix is an index range scan
    CREATE UNIQUE INDEX jobs_event_id ON jobs (event_id);
    CREATE INDEX jobs_status ON jobs (status, id);
    -- the claim scans only live jobs, in queue order (partial index)
    CREATE INDEX jobs_queue ON jobs (id) WHERE status IN ('pending', 'processing');
    CREATE INDEX jobs_cache ON jobs (sha256, cache_key) WHERE status = 'completed';
    CREATE TABLE documents (
        job_id bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        content text NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """Migrations applied so far (0 on an empty database). Autocommit connection."""
    row = conn.execute("SELECT to_regclass('avo_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT version FROM avo_schema WHERE id = 1").fetchone()
    return int(str(row[0])) if row else 0


def apply(conn: psycopg.Connection[tuple[object, ...]], where: str) -> int:
    """Bring the schema up to date in one transaction; return the version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS avo_schema ("
            "id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)"
        )
        row = conn.execute("SELECT version FROM avo_schema WHERE id = 1").fetchone()
        current = int(str(row[0])) if row else 0
        if current > SCHEMA_VERSION:
            raise DatabaseError(newer_message(where, current))
        for sql in MIGRATIONS[current:]:
            conn.execute(sql)
        conn.execute(
            "INSERT INTO avo_schema (id, version) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )
    return SCHEMA_VERSION


def newer_message(where: str, version: int) -> str:
    return (
        f"database {where} was written by a newer avo (schema {version}, "
        f"this avo knows {SCHEMA_VERSION}): upgrade avo"
    )
