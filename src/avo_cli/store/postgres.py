"""The PostgreSQL backend: many workers on many machines, one database.

PostgreSQL is the coordinator; there is no other. The differences from the
SQLite backend are where concurrency lives:

* **claim** locks the oldest claimable row with ``FOR UPDATE SKIP LOCKED``
  inside the ``UPDATE ... RETURNING``, so concurrent claimers each get a
  different job and never wait on each other. (SQLite's claim run verbatim
  here double-claims: the sub-select is evaluated once, and a claimer that
  waited on the row lock re-checks only ``id = <that id>``;
  tests/test_postgres.py shows it.)
* **time** is the server's (``clock_timestamp()`` for leases and due times,
  the transaction's ``now()`` for ``created_at``), so the clocks of the
  worker machines do not matter. Times are float epoch seconds, as SQLite's.
* **wake-up**: enqueue, retry and release ``NOTIFY avo_jobs``; an idle
  worker blocks in ``wait_for_work`` on a dedicated ``LISTEN`` connection and
  claims at once. Poolers in transaction mode drop ``LISTEN``: then the
  worker's own polling is the fallback, and nothing else changes.
* **commits**: what a client is told is durable (enqueue, retry, cancel
  wait for the disk). A worker's own writes (claim, heartbeat, checkpoint,
  complete...) commit asynchronously (``synchronous_commit = off``, like
  SQLite's ``synchronous = NORMAL``): a server crash may forget its last
  fraction of a second, and the lease design already covers that: a lost
  claim or completion leaves the job claimable again (at-least-once), and a
  worker's write after a lost claim is refused by the lease check.
* **schema** is created and migrated on first use under an advisory lock
  (``pg_migrations``), safe when many processes start on an empty database.

Connection URLs are never printed with their password.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from avo_cli.errors import BackendUnavailable, ConfigError, DatabaseError, NotFound, WrongState
from avo_cli.store import pg_migrations
from avo_cli.store.base import (
    TERMINAL,
    ClaimedJob,
    Counts,
    Heartbeat,
    JobRow,
    NewJob,
)
from avo_cli.store.sqlite import _prefix_range, normalise_ref

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = pg_migrations.SCHEMA_VERSION
CHANNEL = "avo_jobs"
CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
_LISTEN_RETRY = 30.0  # after LISTEN failed (pooler, lost connection), poll this long

#: the server clock, as float epoch seconds
NOW = "extract(epoch FROM clock_timestamp())::float8"

_JOB_COLUMNS = (
    "id, event_id, status, source, size, sha256, error, result, usage, attempts, "
    "created_at, updated_at, started_at, finished_at, engine, model"
)

CLAIM_SQL = f"""
WITH t AS (SELECT {NOW} AS now),
next AS (
    SELECT jobs.id FROM jobs, t
    WHERE jobs.status IN ('pending', 'processing')
      -- CASE, not OR: an OR of status tests steers the planner to a bitmap scan
      -- of every live job plus a sort; this way it walks jobs_queue in id order
      AND CASE WHEN jobs.status = 'pending' THEN jobs.run_after <= t.now
               ELSE (jobs.lease_expires < t.now OR jobs.lease_expires IS NULL)
                    AND jobs.lease_owner <> %(owner)s END
      /*only*/
    ORDER BY jobs.id
    LIMIT 1
    FOR UPDATE OF jobs SKIP LOCKED
)
UPDATE jobs
SET status = 'processing', lease_owner = %(owner)s, lease_expires = t.now + %(lease)s,
    attempts = jobs.attempts + 1, updated_at = t.now,
    started_at = coalesce(jobs.started_at, t.now)
FROM next, t
WHERE jobs.id = next.id
RETURNING jobs.id, jobs.event_id, jobs.source, jobs.sha256, jobs.attempts,
          jobs.checkpoint, jobs.cancel_requested
"""
#: ``avo run``: the same claim restricted to its own jobs (a separate statement, so the
#: plan of the everyday claim never depends on a parameter that is almost always NULL).
CLAIM_ONLY_SQL = CLAIM_SQL.replace("/*only*/", "AND jobs.event_id = ANY(%(only)s::text[])")
CLAIM_SQL = CLAIM_SQL.replace("/*only*/", "")


MISSING_DRIVER = (
    "a postgresql:// database needs the psycopg driver: pip install 'avo-cli[postgres]'"
)


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise BackendUnavailable(MISSING_DRIVER) from None
    return psycopg


def display_url(url: str) -> str:
    """``postgresql://user@host:port/db``: the URL without password or options."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
    except Exception:
        return "postgresql://(unparsable URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    host = str(info.get("host") or "localhost")
    port = f":{info['port']}" if info.get("port") else ""
    db = str(info.get("dbname") or "")
    return f"postgresql://{user}{host}{port}/{db}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class PostgresStore:
    def __init__(self, url: str) -> None:
        self._psycopg = _import_psycopg()
        self.url = url
        self.where = display_url(url)
        self._listen: psycopg.Connection[tuple[Any, ...]] | None = None
        self._listen_failed = 0.0
        self._async_commit = False  # set once this connection claims (a worker's)
        self._conn = self._connect()
        self._ensure_schema()

    # --- connection -------------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        pg = self._psycopg
        try:
            info = pg.conninfo.conninfo_to_dict(self.url)
        except pg.ProgrammingError as exc:
            # libpq may quote the URL back, password and all: never show it
            reason = re.sub(r'"[^"]*://[^"]*"', "(the URL)", _one_line(exc))
            raise ConfigError(f"invalid PostgreSQL URL: {reason}") from None
        extra: dict[str, Any] = {"application_name": "avo"}
        if "connect_timeout" not in info:
            extra["connect_timeout"] = CONNECT_TIMEOUT
        try:
            conn: psycopg.Connection[tuple[Any, ...]] = pg.connect(
                self.url, autocommit=True, **extra
            )
        except pg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: {_one_line(exc)}"
            ) from None
        return conn

    def _ensure_schema(self) -> None:
        with self._errors():
            version = pg_migrations.current_version(self._conn)
            if version > SCHEMA_VERSION:
                raise DatabaseError(pg_migrations.newer_message(self.where, version))
            if version < SCHEMA_VERSION:
                pg_migrations.apply(self._conn, self.where)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        pg = self._psycopg
        try:
            yield
        except pg.OperationalError as exc:
            raise BackendUnavailable(
                f"PostgreSQL at {self.where} failed: {_one_line(exc)}"
            ) from None
        except pg.Error as exc:
            raise DatabaseError(f"database error on {self.where}: {_one_line(exc)}") from None

    def _live(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The connection, reopened once if the server dropped it."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
            self._async_commit = False  # a new session: claim sets it again
        return self._conn

    def _read(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._errors():
            return self._live().execute(sql, params).fetchall()

    def _exec(self, sql: str, params: Any = None) -> psycopg.Cursor[tuple[Any, ...]]:
        """One statement, its own transaction (autocommit): one round trip."""
        with self._errors():
            return self._live().execute(sql, params)

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """Several statements in one transaction; rolled back on any error."""
        with self._errors():
            conn = self._live()
            with conn.transaction():
                yield conn

    def _durable(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Make this transaction's commit wait for the disk, even on a worker's connection."""
        if self._async_commit:
            conn.execute("SET LOCAL synchronous_commit = on")

    def close(self) -> None:
        self._conn.close()
        if self._listen is not None:
            self._listen.close()

    def schema_version(self) -> int:
        return pg_migrations.current_version(self._live())

    # --- clients ------------------------------------------------------------

    def enqueue(self, jobs: list[NewJob]) -> None:
        if not jobs:
            return
        with self._write() as conn, conn.cursor() as cur:
            self._durable(conn)
            # executemany runs in order: queue order is submission order
            cur.executemany(
                "INSERT INTO jobs (event_id, status, source, size, sha256, created_at, "
                "updated_at) VALUES (%s, 'pending', %s, %s, %s, "
                "extract(epoch FROM now())::float8, extract(epoch FROM now())::float8) "
                "RETURNING id",
                [(j.event_id, j.source, j.size, j.sha256) for j in jobs],
                returning=True,
            )
            ids: list[int] = []
            while True:
                row = cur.fetchone()
                assert row is not None
                ids.append(int(row[0]))
                if not cur.nextset():
                    break
            cur.executemany(
                "INSERT INTO documents (job_id, content) VALUES (%s, %s)",
                [(i, j.text) for i, j in zip(ids, jobs, strict=True)],
            )
            cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))

    def resolve(self, ref: str) -> str:
        ref = normalise_ref(ref)
        low, high = _prefix_range(ref)
        rows = self._read(
            "SELECT event_id FROM jobs WHERE event_id >= %s AND event_id < %s LIMIT 2",
            (low, high),
        )
        if not rows:
            raise NotFound(f"no job with id {ref!r}")
        if len(rows) > 1:
            raise NotFound(f"job id prefix {ref!r} is ambiguous: give more characters")
        return str(rows[0][0])

    def get(self, ref: str) -> JobRow:
        ref = normalise_ref(ref)
        event_id = ref if len(ref) == 36 else self.resolve(ref)
        rows = self._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE event_id = %s", (event_id,))
        if not rows:
            raise NotFound(f"no job with id {ref!r}")
        return _row(rows[0])

    def recent(self, status: str | None = None, limit: int = 20) -> list[JobRow]:
        if status:
            rows = self._read(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = %s ORDER BY id DESC LIMIT %s",
                (status, limit),
            )
        else:
            rows = self._read(
                f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT %s", (limit,)
            )
        return [_row(r) for r in rows]

    def counts(self) -> Counts:
        counts = Counts()
        for status, n in self._read("SELECT status, count(*) FROM jobs GROUP BY status"):
            setattr(counts, status, int(n))
        return counts

    def usage_rows(self) -> list[tuple[str | None, str | None]]:
        rows = self._read("SELECT model, usage FROM jobs WHERE usage IS NOT NULL ORDER BY id")
        return [(r[0], r[1]) for r in rows]

    # --- workers ------------------------------------------------------------

    def claim(
        self, owner: str, lease: float, only: Sequence[str] | None = None
    ) -> ClaimedJob | None:
        if not self._async_commit:  # this connection is a worker's from now on
            self._exec("SET synchronous_commit = off")
            self._async_commit = True
        if only is None:
            row = self._exec(CLAIM_SQL, {"owner": owner, "lease": lease}).fetchone()
        else:
            params = {"owner": owner, "lease": lease, "only": list(only)}
            row = self._exec(CLAIM_ONLY_SQL, params).fetchone()
        if row is None:
            return None
        return ClaimedJob(
            seq=int(row[0]),
            event_id=row[1],
            source=row[2],
            sha256=row[3],
            attempts=int(row[4]),
            checkpoint=row[5],
            cancel_requested=bool(row[6]),
        )

    def content(self, seq: int) -> str:
        rows = self._read("SELECT content FROM documents WHERE job_id = %s", (seq,))
        if not rows:
            raise NotFound(f"job {seq} has no document")
        return str(rows[0][0])

    def heartbeat(self, owner: str, lease: float, seqs: list[int]) -> Heartbeat:
        if not seqs:
            return Heartbeat(set(), set())
        rows = self._exec(
            f"UPDATE jobs SET lease_expires = {NOW} + %s WHERE status = 'processing' "
            "AND lease_owner = %s AND id = ANY(%s) RETURNING id, cancel_requested",
            (lease, owner, list(seqs)),
        ).fetchall()
        return Heartbeat(alive={int(r[0]) for r in rows}, cancel={int(r[0]) for r in rows if r[1]})

    def _owned_update(
        self, seq: int, owner: str, assignments: str, params: dict[str, Any], notify: bool = False
    ) -> bool:
        params = {**params, "seq": seq, "owner": owner, "channel": CHANNEL}
        update = (
            f"WITH t AS (SELECT {NOW} AS now), "
            f"u AS (UPDATE jobs SET {assignments}, updated_at = t.now FROM t "
            "WHERE id = %(seq)s AND status = 'processing' AND lease_owner = %(owner)s "
            "RETURNING jobs.id) "
        )
        if notify:  # in the same statement: only when the update happened
            sql = update + "SELECT u.id, pg_notify(%(channel)s, '') FROM u"
        else:
            sql = update + "SELECT u.id FROM u"
        return len(self._exec(sql, params).fetchall()) == 1

    def save_checkpoint(self, seq: int, owner: str, checkpoint: str) -> bool:
        return self._owned_update(seq, owner, "checkpoint = %(cp)s", {"cp": checkpoint})

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
            "status = 'completed', result = %(result)s, usage = %(usage)s, engine = %(engine)s, "
            "model = %(model)s, cache_key = %(ck)s, error = NULL, lease_owner = NULL, "
            "lease_expires = NULL, finished_at = t.now",
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
            "status = 'failed', error = %(msg)s, usage = coalesce(%(usage)s, usage), "
            "model = coalesce(%(model)s, model), "
            "lease_owner = NULL, lease_expires = NULL, finished_at = t.now",
            {"msg": message, "usage": usage, "model": model},
        )

    def retry_later(self, seq: int, owner: str, delay: float, message: str) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'pending', error = %(msg)s, run_after = t.now + %(delay)s, "
            "lease_owner = NULL, lease_expires = NULL",
            {"msg": message, "delay": delay},
        )

    def release(self, seq: int, owner: str) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'pending', run_after = 0, attempts = greatest(attempts - 1, 0), "
            "lease_owner = NULL, lease_expires = NULL",
            {},
            notify=True,
        )

    def mark_cancelled(self, seq: int, owner: str) -> bool:
        return self._owned_update(
            seq,
            owner,
            "status = 'cancelled', error = 'cancelled by request', lease_owner = NULL, "
            "lease_expires = NULL, finished_at = t.now",
            {},
        )

    def find_cached(self, sha256: str, cache_key: str) -> str | None:
        rows = self._read(
            "SELECT result FROM jobs WHERE sha256 = %s AND cache_key = %s "
            "AND status = 'completed' ORDER BY id DESC LIMIT 1",
            (sha256, cache_key),
        )
        return str(rows[0][0]) if rows else None

    def has_active(self) -> bool:
        rows = self._read("SELECT 1 FROM jobs WHERE status IN ('pending', 'processing') LIMIT 1")
        return bool(rows)

    def next_due(self) -> float | None:
        rows = self._read(
            "SELECT min(CASE WHEN status = 'pending' THEN run_after ELSE lease_expires END) "
            f"- {NOW} FROM jobs WHERE status IN ('pending', 'processing')"
        )
        if not rows or rows[0][0] is None:
            return None
        return max(0.0, float(rows[0][0]))

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a NOTIFY; True if one came.

        Runs in a thread (the worker calls it through ``asyncio.to_thread``)
        on its own connection. If LISTEN is impossible (a transaction-mode
        pooler, a lost connection) it sleeps instead: polling is the fallback.
        """
        pg = self._psycopg
        if self._listen is None or self._listen.closed or self._listen.broken:
            self._listen = None
            if time.monotonic() - self._listen_failed < _LISTEN_RETRY:
                time.sleep(timeout)
                return False
            try:
                conn = pg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
                conn.execute(f"LISTEN {CHANNEL}")
            except pg.Error:
                self._listen_failed = time.monotonic()
                time.sleep(timeout)
                return False
            self._listen = conn
        try:
            for _ in self._listen.notifies(timeout=max(0.0, timeout), stop_after=1):
                return True
        except pg.Error:
            self._listen.close()
            self._listen = None
            self._listen_failed = time.monotonic()
        return False

    # --- operators ----------------------------------------------------------

    def _lock_all(
        self, conn: psycopg.Connection[tuple[Any, ...]], refs: list[str]
    ) -> list[tuple[int, str, str]]:
        """Resolve refs and lock their rows (in id order) for this transaction."""
        event_ids = [self.resolve(ref) for ref in refs]
        rows = conn.execute(
            "SELECT id, event_id, status FROM jobs WHERE event_id = ANY(%s) ORDER BY id FOR UPDATE",
            (event_ids,),
        ).fetchall()
        by_id = {r[1]: (int(r[0]), str(r[1]), str(r[2])) for r in rows}
        missing = [e for e in event_ids if e not in by_id]
        if missing:
            raise NotFound(f"no job with id {missing[0]!r}")
        return [by_id[e] for e in dict.fromkeys(event_ids)]

    def retry(self, refs: list[str]) -> list[str]:
        with self._write() as conn:
            self._durable(conn)
            jobs = self._lock_all(conn, refs)
            bad = [f"{e} is {s}" for _, e, s in jobs if s not in ("failed", "cancelled")]
            if bad:
                raise WrongState("cannot retry: " + "; ".join(bad) + " (only failed or cancelled)")
            conn.execute(
                "UPDATE jobs SET status = 'pending', attempts = 0, run_after = 0, "
                f"error = NULL, cancel_requested = false, finished_at = NULL, updated_at = {NOW} "
                "WHERE id = ANY(%s)",
                ([seq for seq, _, _ in jobs],),
            )
            conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
        return [e for _, e, _ in jobs]

    def cancel(self, refs: list[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        with self._write() as conn:
            self._durable(conn)
            jobs = self._lock_all(conn, refs)
            bad = [f"{e} is {s}" for _, e, s in jobs if s in TERMINAL]
            if bad:
                raise WrongState("cannot cancel: " + "; ".join(bad))
            for seq, event_id, state in jobs:
                if state == "pending":
                    conn.execute(
                        "UPDATE jobs SET status = 'cancelled', error = 'cancelled by request', "
                        f"finished_at = {NOW}, updated_at = {NOW} WHERE id = %s",
                        (seq,),
                    )
                    out.append((event_id, "cancelled"))
                else:
                    conn.execute(
                        f"UPDATE jobs SET cancel_requested = true, updated_at = {NOW} "
                        "WHERE id = %s",
                        (seq,),
                    )
                    out.append((event_id, "cancelling"))
        return out

    def purge(self, older_than: float, statuses: list[str]) -> int:
        with self._write() as conn:
            cur = conn.execute(
                f"DELETE FROM jobs WHERE status = ANY(%s) AND updated_at < {NOW} - %s",
                (list(statuses), older_than),
            )
            return cur.rowcount


def _row(r: tuple[Any, ...]) -> JobRow:
    return JobRow(
        seq=int(r[0]),
        event_id=r[1],
        status=r[2],
        source=r[3],
        size=int(r[4]),
        sha256=r[5],
        error=r[6],
        result=r[7],
        usage=r[8],
        attempts=int(r[9]),
        created_at=float(r[10]),
        updated_at=float(r[11]),
        started_at=None if r[12] is None else float(r[12]),
        finished_at=None if r[13] is None else float(r[13]),
        engine=r[14],
        model=r[15],
    )
