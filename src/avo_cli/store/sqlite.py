"""The SQLite backend: one file, WAL, a busy timeout, leases in one statement.

Write transactions start with ``BEGIN IMMEDIATE`` so concurrent writers
queue on the busy handler instead of failing with "database is locked"; a
write that still finds the database locked after the timeout is retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from avo_cli.errors import DatabaseError, NotFound, WrongState
from avo_cli.store.base import (
    TERMINAL,
    ClaimedJob,
    Counts,
    Heartbeat,
    JobRow,
    NewJob,
)

SCHEMA_VERSION = 1  # == len(sqlite_migrations.MIGRATIONS); checked by a test
BUSY_TIMEOUT_MS = 30_000
_LOCK_RETRIES = 20

_JOB_COLUMNS = (
    "id, event_id, status, source, size, sha256, error, result, usage, attempts, "
    "created_at, updated_at, started_at, finished_at, engine, model"
)

CLAIM_SQL = """
UPDATE jobs
SET status = 'processing', lease_owner = :owner, lease_expires = :now + :lease,
    attempts = attempts + 1, updated_at = :now, started_at = coalesce(started_at, :now)
WHERE id = (
    SELECT id FROM jobs INDEXED BY jobs_queue  -- live jobs in queue order, no sort
    WHERE status IN ('pending', 'processing')
      AND ((status = 'pending' AND run_after <= :now)
           -- another worker's lapsed lease; our own lapsed jobs are still running here
           OR (status = 'processing' AND lease_owner <> :owner
               AND (lease_expires < :now OR lease_expires IS NULL)))
      /*only*/
    ORDER BY id
    LIMIT 1
)
RETURNING id, event_id, source, sha256, attempts, checkpoint, cancel_requested
"""
#: ``avo run``: the same claim restricted to its own jobs (a JSON array of event ids),
#: so it never drains someone else's backlog; the everyday claim stays as it was.
CLAIM_ONLY_SQL = CLAIM_SQL.replace(
    "/*only*/", "AND event_id IN (SELECT value FROM json_each(:only))"
)
CLAIM_SQL = CLAIM_SQL.replace("/*only*/", "")


def _describe(exc: sqlite3.Error, path: str) -> str:
    text = str(exc)
    low = text.lower()
    if "file is not a database" in low or "malformed" in low:
        return f"database {path} is corrupt or not an avo database ({text})"
    if "readonly" in low or "read-only" in low:
        return f"database {path} is read-only"
    if "unable to open" in low:
        return f"cannot open database {path}: check the directory exists and is writable"
    if "disk is full" in low or "disk i/o" in low:
        return f"cannot write database {path}: {text}"
    return f"database error on {path}: {text}"


def _prefix_range(ref: str) -> tuple[str, str]:
    """Index-friendly bounds for ``event_id LIKE ref || '%'``."""
    return ref, ref[:-1] + chr(ord(ref[-1]) + 1)


_HEX = frozenset("0123456789abcdef-")


def normalise_ref(ref: str) -> str:
    ref = ref.strip().lower()
    if not ref or not set(ref) <= _HEX or len(ref) > 36:
        raise NotFound(f"not a job id: {ref!r}")
    return ref


class SQLiteStore:
    def __init__(self, path: str, *, create: bool = True) -> None:
        self.path = path
        self.url = path
        self._conn = self._connect(path, create)

    # --- connection -------------------------------------------------------

    def _connect(self, path: str, create: bool) -> sqlite3.Connection:
        p = Path(path)
        if path != ":memory:" and not p.exists():
            if not create:
                raise NotFound(f"no database at {path}: submit a document first")
            _create_private_file(p)
        elif path != ":memory:" and not p.is_file():
            # A device or directory: SQLite would write a journal next to it (/dev/null-journal).
            raise DatabaseError(f"database {path} is not a regular file")
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DatabaseError(
                    f"database {path} was written by a newer avo (schema {version}, "
                    f"this avo knows {SCHEMA_VERSION}): upgrade avo"
                )
            if version < SCHEMA_VERSION:
                self._migrate(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise DatabaseError(_describe(exc, path)) from None
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and self.path != ":memory:":
            raise DatabaseError(f"database {self.path}: cannot enable WAL (journal_mode={mode})")
        from avo_cli.store import sqlite_migrations

        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current < SCHEMA_VERSION:
                sqlite_migrations.apply(conn, current)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction that waits for other writers instead of failing.

        ``durable`` commits with ``synchronous=FULL``: what a client was told is
        saved (a printed event id, a retry, a cancel) survives a power cut too. A
        worker's bookkeeping keeps WAL's ``NORMAL``: after an OS crash its last
        claims may be forgotten, and those jobs simply run again.
        """
        conn = self._conn
        if durable:
            try:
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise DatabaseError(_describe(exc, self.path)) from None
        for attempt in range(_LOCK_RETRIES):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise DatabaseError(_describe(exc, self.path)) from None
                time.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            raise DatabaseError(f"database {self.path} stayed locked; is a process stuck?")
        try:
            yield conn
        except sqlite3.Error as exc:
            _rollback(conn)  # SQLite may already have rolled back (disk full, I/O error)
            raise DatabaseError(_describe(exc, self.path)) from None
        except BaseException:
            _rollback(conn)
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise DatabaseError(_describe(exc, self.path)) from None
        finally:
            if durable:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous = NORMAL")

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise DatabaseError(_describe(exc, self.path)) from None

    def close(self) -> None:
        self._conn.close()

    # --- WAL checkpoints (avo serve moves them off its write path) ---------

    def disable_autocheckpoint(self) -> None:
        """Commits on this connection never checkpoint; call ``checkpoint`` elsewhere."""
        self._read("PRAGMA wal_autocheckpoint = 0")

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database without blocking anyone (PASSIVE)."""
        self._read("PRAGMA wal_checkpoint(PASSIVE)")

    # --- clients ------------------------------------------------------------

    def enqueue(self, jobs: list[NewJob]) -> None:
        with self._write(durable=True) as conn:
            now = time.time()  # under the write lock, so timestamps follow commit order
            for job in jobs:
                cur = conn.execute(
                    "INSERT INTO jobs (event_id, status, source, size, sha256, attempts, "
                    "run_after, cancel_requested, created_at, updated_at) "
                    "VALUES (?, 'pending', ?, ?, ?, 0, 0, 0, ?, ?)",
                    (job.event_id, job.source, job.size, job.sha256, now, now),
                )
                conn.execute(
                    "INSERT INTO documents (job_id, content) VALUES (?, ?)",
                    (cur.lastrowid, job.text),
                )

    def resolve(self, ref: str) -> str:
        ref = normalise_ref(ref)
        low, high = _prefix_range(ref)
        rows = self._read(
            "SELECT event_id FROM jobs WHERE event_id >= ? AND event_id < ? LIMIT 2", (low, high)
        )
        if not rows:
            raise NotFound(f"no job with id {ref!r}")
        if len(rows) > 1:
            raise NotFound(f"job id prefix {ref!r} is ambiguous: give more characters")
        return str(rows[0][0])

    def get(self, ref: str) -> JobRow:
        ref = normalise_ref(ref)
        if len(ref) == 36:
            rows = self._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE event_id = ?", (ref,))
            if not rows:
                raise NotFound(f"no job with id {ref!r}")
            return _row(rows[0])
        event_id = self.resolve(ref)
        rows = self._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE event_id = ?", (event_id,))
        return _row(rows[0])

    def recent(self, status: str | None = None, limit: int = 20) -> list[JobRow]:
        if status:
            rows = self._read(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = ? ORDER BY id DESC LIMIT ?",
                (status, limit),
            )
        else:
            rows = self._read(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [_row(r) for r in rows]

    def counts(self) -> Counts:
        counts = Counts()
        for status, n in self._read("SELECT status, count(*) FROM jobs GROUP BY status"):
            setattr(counts, status, n)
        return counts

    def usage_rows(self) -> list[tuple[str | None, str | None]]:
        rows = self._read("SELECT model, usage FROM jobs WHERE usage IS NOT NULL ORDER BY id")
        return [(r[0], r[1]) for r in rows]

    # --- workers ------------------------------------------------------------

    def claim(
        self, owner: str, lease: float, only: Sequence[str] | None = None
    ) -> ClaimedJob | None:
        params: dict[str, Any] = {"owner": owner, "lease": lease}
        sql = CLAIM_SQL
        if only is not None:
            params["only"] = json.dumps(list(only))
            sql = CLAIM_ONLY_SQL
        with self._write() as conn:
            params["now"] = time.time()  # under the write lock: started_at follows claim order
            row = conn.execute(sql, params).fetchone()
        if row is None:
            return None
        return ClaimedJob(
            seq=row[0],
            event_id=row[1],
            source=row[2],
            sha256=row[3],
            attempts=row[4],
            checkpoint=row[5],
            cancel_requested=bool(row[6]),
        )

    def content(self, seq: int) -> str:
        rows = self._read("SELECT content FROM documents WHERE job_id = ?", (seq,))
        if not rows:
            raise NotFound(f"job {seq} has no document")
        return str(rows[0][0])

    def heartbeat(self, owner: str, lease: float, seqs: list[int]) -> Heartbeat:
        if not seqs:
            return Heartbeat(set(), set())
        marks = ",".join("?" * len(seqs))
        with self._write() as conn:
            now = time.time()  # under the write lock, so timestamps follow commit order
            rows = conn.execute(
                f"UPDATE jobs SET lease_expires = ? WHERE status = 'processing' "
                f"AND lease_owner = ? AND id IN ({marks}) RETURNING id, cancel_requested",
                (now + lease, owner, *seqs),
            ).fetchall()
        return Heartbeat(alive={r[0] for r in rows}, cancel={r[0] for r in rows if r[1]})

    def _owned_update(self, seq: int, owner: str, assignments: str, params: dict[str, Any]) -> bool:
        params = {**params, "seq": seq, "owner": owner}
        with self._write() as conn:
            params["now"] = time.time()
            cur = conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = :now "
                "WHERE id = :seq AND status = 'processing' AND lease_owner = :owner",
                params,
            )
            return cur.rowcount == 1

    def save_checkpoint(self, seq: int, owner: str, checkpoint: str) -> bool:
        return self._owned_update(seq, owner, "checkpoint = :cp", {"cp": checkpoint})

    def complete(
        self,
        seq: int,
        owner: str,
        result: str,
        usage: str | None,
        engine: str,
        model: str,
        cache_key: str | None,
    ) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'completed', result = :result, usage = :usage, engine = :engine, "
            "model = :model, cache_key = :ck, error = NULL, lease_owner = NULL, "
            "lease_expires = NULL, finished_at = :now",
            {"result": result, "usage": usage, "engine": engine, "model": model, "ck": cache_key},
        )

    def fail(
        self,
        seq: int,
        owner: str,
        message: str,
        usage: str | None = None,
        model: str | None = None,
    ) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'failed', error = :msg, usage = coalesce(:usage, usage), "
            "model = coalesce(:model, model), "
            "lease_owner = NULL, lease_expires = NULL, finished_at = :now",
            {"msg": message, "usage": usage, "model": model},
        )

    def retry_later(self, seq: int, owner: str, delay: float, message: str) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'pending', error = :msg, run_after = :now + :delay, "
            "lease_owner = NULL, lease_expires = NULL",
            {"msg": message, "delay": delay},
        )

    def release(self, seq: int, owner: str) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'pending', run_after = 0, attempts = max(attempts - 1, 0), "
            "lease_owner = NULL, lease_expires = NULL",
            {},
        )

    def mark_cancelled(self, seq: int, owner: str) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'cancelled', error = 'cancelled by request', lease_owner = NULL, "
            "lease_expires = NULL, finished_at = :now",
            {},
        )

    def find_cached(self, sha256: str, cache_key: str) -> str | None:
        rows = self._read(
            "SELECT result FROM jobs WHERE sha256 = ? AND cache_key = ? AND status = 'completed' "
            "ORDER BY id DESC LIMIT 1",
            (sha256, cache_key),
        )
        return str(rows[0][0]) if rows else None

    def has_active(self) -> bool:
        rows = self._read("SELECT 1 FROM jobs WHERE status IN ('pending', 'processing') LIMIT 1")
        return bool(rows)

    def next_due(self) -> float | None:
        rows = self._read(
            "SELECT min(CASE WHEN status = 'pending' THEN run_after ELSE lease_expires END) "
            "FROM jobs WHERE status IN ('pending', 'processing')"
        )
        if not rows or rows[0][0] is None:
            return None
        return max(0.0, float(rows[0][0]) - time.time())

    # --- operators ----------------------------------------------------------

    def _resolve_all(self, refs: list[str]) -> list[tuple[int, str, str]]:
        """(seq, event_id, status) per distinct job; call inside the write transaction
        so the states checked are the states changed."""
        seen: dict[str, tuple[int, str, str]] = {}
        for ref in refs:
            event_id = self.resolve(ref)
            if event_id not in seen:
                row = self._read(
                    "SELECT id, event_id, status FROM jobs WHERE event_id = ?", (event_id,)
                )[0]
                seen[event_id] = (row[0], row[1], row[2])
        return list(seen.values())

    def retry(self, refs: list[str]) -> list[str]:
        with self._write(durable=True) as conn:
            now = time.time()  # under the write lock, so timestamps follow commit order
            jobs = self._resolve_all(refs)
            bad = [f"{e} is {s}" for _, e, s in jobs if s not in ("failed", "cancelled")]
            if bad:
                raise WrongState("cannot retry: " + "; ".join(bad) + " (only failed or cancelled)")
            for seq, _, _ in jobs:
                conn.execute(
                    "UPDATE jobs SET status = 'pending', attempts = 0, run_after = 0, "
                    "error = NULL, cancel_requested = 0, finished_at = NULL, updated_at = ? "
                    "WHERE id = ?",
                    (now, seq),
                )
        return [e for _, e, _ in jobs]

    def cancel(self, refs: list[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        with self._write(durable=True) as conn:
            now = time.time()  # under the write lock, so timestamps follow commit order
            jobs = self._resolve_all(refs)
            bad = [f"{e} is {s}" for _, e, s in jobs if s in TERMINAL]
            if bad:
                raise WrongState("cannot cancel: " + "; ".join(bad))
            for seq, event_id, status in jobs:
                if status == "pending":
                    conn.execute(
                        "UPDATE jobs SET status = 'cancelled', error = 'cancelled by request', "
                        "finished_at = ?, updated_at = ? WHERE id = ?",
                        (now, now, seq),
                    )
                    out.append((event_id, "cancelled"))
                else:  # processing: the worker stops it at its next heartbeat
                    conn.execute(
                        "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                        (now, seq),
                    )
                    out.append((event_id, "cancelling"))
        return out

    def purge(self, older_than: float, statuses: list[str]) -> int:
        cutoff = time.time() - older_than
        marks = ",".join("?" * len(statuses))
        with self._write() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM jobs WHERE status IN ({marks}) AND updated_at < ?",
                    (*statuses, cutoff),
                )
            ]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                qs = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM documents WHERE job_id IN ({qs})", chunk)
                conn.execute(f"DELETE FROM jobs WHERE id IN ({qs})", chunk)
        return len(ids)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _row(r: Sequence[Any]) -> JobRow:
    return JobRow(
        seq=r[0],
        event_id=r[1],
        status=r[2],
        source=r[3],
        size=r[4],
        sha256=r[5],
        error=r[6],
        result=r[7],
        usage=r[8],
        attempts=r[9],
        created_at=r[10],
        updated_at=r[11],
        started_at=r[12],
        finished_at=r[13],
        engine=r[14],
        model=r[15],
    )


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 in a directory only its owner can write."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DatabaseError(f"cannot create database {path}: {exc.strerror or exc}") from None
