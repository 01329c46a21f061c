"""The Store contract, run against every backend (SQLite file, real PostgreSQL).

Each test gets an empty database of its backend (``stores.store_url``); a
second ``open_stores()`` call is a second connection, as another process
would have.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

import pytest

from avo_cli.errors import DatabaseError, NotFound, WrongState
from avo_cli.store.base import ClaimedJob, NewJob, Store

if TYPE_CHECKING:
    from stores import StoreFactory

pytest_plugins = ["stores"]


def new_job(*args: str, **kw: str) -> NewJob:
    from stores import new_job

    return new_job(*args, **kw)


LEASE = 30.0


def enqueue(store: Store, n: int = 1, **kw: str) -> list[str]:
    jobs = [new_job(**kw) for _ in range(n)]
    store.enqueue(jobs)
    return [j.event_id for j in jobs]


def claim(store: Store, owner: str = "w1", lease: float = LEASE) -> ClaimedJob:
    job = store.claim(owner, lease)
    assert job is not None
    return job


# --- clients -------------------------------------------------------------------


def test_enqueue_is_all_or_nothing(store: Store) -> None:
    good = new_job()
    dup = new_job(event_id=good.event_id)
    with pytest.raises(DatabaseError):
        store.enqueue([good, new_job(), dup])
    assert store.counts().pending == 0
    assert store.recent() == []
    with pytest.raises(NotFound):
        store.get(good.event_id)


def test_get_returns_what_was_enqueued(store: Store) -> None:
    before = time.time()
    job = new_job("# 보안\n\n- 비밀번호를 반드시 해시하세요.\n", source="docs/보안.md")
    store.enqueue([job])
    row = store.get(job.event_id)
    assert (row.event_id, row.status, row.source) == (job.event_id, "pending", "docs/보안.md")
    assert (row.size, row.sha256, row.attempts) == (job.size, job.sha256, 0)
    assert row.result is None and row.error is None and row.usage is None
    assert row.started_at is None and row.finished_at is None
    assert isinstance(row.created_at, float) and row.created_at == row.updated_at
    assert before - 5 < row.created_at < time.time() + 5
    assert store.content(row.seq) == job.text


def test_resolve_full_prefix_case_and_errors(store: Store) -> None:
    a = new_job(event_id="aaaa1111-0000-4000-8000-000000000001")
    b = new_job(event_id="aaaa2222-0000-4000-8000-000000000002")
    store.enqueue([a, b])
    assert store.resolve(a.event_id) == a.event_id
    assert store.resolve("aaaa1") == a.event_id
    assert store.resolve("AAAA22") == b.event_id
    assert store.resolve(" aaaa2222-0 ") == b.event_id
    assert store.get("aaaa2").event_id == b.event_id
    with pytest.raises(NotFound, match="ambiguous"):
        store.resolve("aaaa")
    with pytest.raises(NotFound, match="ambiguous"):
        store.get("aaaa")
    with pytest.raises(NotFound, match="no job"):
        store.resolve("bbbb")
    with pytest.raises(NotFound, match="no job"):
        store.get("aaaa3333-0000-4000-8000-000000000003")
    for bad in ("", "xyz", "aaaa'; drop table jobs; --", "a" * 37, "aaaa%", "aaaa_"):
        with pytest.raises(NotFound, match="not a job id"):
            store.resolve(bad)
    assert store.counts().pending == 2


def test_recent_counts_and_filters(store: Store) -> None:
    ids = enqueue(store, 3)
    first = claim(store)
    assert first.event_id == ids[0]
    assert store.complete(
        first.seq, "w1", '{"summary": "s", "checklist": []}', None, "local", "m", None
    )
    assert [r.event_id for r in store.recent()] == ids[::-1]
    assert [r.event_id for r in store.recent(limit=2)] == ids[:0:-1]
    assert [r.event_id for r in store.recent("completed")] == [ids[0]]
    assert [r.event_id for r in store.recent("pending")] == ids[:0:-1]
    assert store.recent("failed") == []
    c = store.counts()
    assert (c.pending, c.processing, c.completed, c.failed, c.cancelled) == (2, 0, 1, 0, 0)


# --- workers -------------------------------------------------------------------


def test_claim_is_fifo_by_queue_order(store: Store) -> None:
    batch1 = enqueue(store, 4)
    batch2 = enqueue(store, 3)
    got = [claim(store).event_id for _ in range(7)]
    assert got == batch1 + batch2
    assert store.claim("w1", LEASE) is None
    assert store.counts().processing == 7


def test_claim_sets_lease_and_attempts(store: Store) -> None:
    (eid,) = enqueue(store)
    job = claim(store)
    assert (job.event_id, job.attempts, job.checkpoint, job.cancel_requested) == (
        eid,
        1,
        None,
        False,
    )
    row = store.get(eid)
    assert row.status == "processing" and row.attempts == 1 and row.started_at is not None
    due = store.next_due()
    assert due is not None and LEASE - 5 < due <= LEASE


def test_expired_lease_makes_job_claimable_again(open_stores: StoreFactory) -> None:
    a, b = open_stores(), open_stores()
    (eid,) = enqueue(a)
    first = claim(a, "w1", lease=0.3)
    assert b.claim("w2", LEASE) is None  # lease still valid
    time.sleep(0.5)
    second = claim(b, "w2")
    assert (second.seq, second.attempts) == (first.seq, 2)
    # the first owner lost it: every write it makes is refused
    assert a.heartbeat("w1", LEASE, [first.seq]).alive == set()
    assert not a.complete(first.seq, "w1", "{}", None, "local", "m", None)
    assert store_status(b, eid) == ("processing", 2)
    assert b.complete(second.seq, "w2", '{"ok": 1}', None, "local", "m", None)
    assert store_status(a, eid) == ("completed", 2)


def test_owner_does_not_reclaim_its_own_lapsed_lease(store: Store) -> None:
    """A late heartbeat must not make a worker start its own running job twice."""
    enqueue(store, 2)
    first = claim(store, "w1", lease=0.2)
    time.sleep(0.35)
    nxt = claim(store, "w1")  # the next pending job, not the lapsed one again
    assert nxt.seq != first.seq and nxt.attempts == 1
    assert store.heartbeat("w1", LEASE, [first.seq]).alive == {first.seq}  # still ours
    assert store.get(first.event_id).attempts == 1


def test_claim_only_takes_the_listed_jobs_in_queue_order(store: Store) -> None:
    first, second, third = enqueue(store, 3)
    assert store.claim("w1", LEASE, only=[]) is None
    job = store.claim("w1", LEASE, only=[third, second])
    assert job is not None and job.event_id == second  # queue order, not list order
    job = store.claim("w1", LEASE, only=[third, second])
    assert job is not None and job.event_id == third
    assert store.claim("w1", LEASE, only=[third, second]) is None
    assert store_status(store, first) == ("pending", 0)


def store_status(store: Store, eid: str) -> tuple[str, int]:
    row = store.get(eid)
    return row.status, row.attempts


def test_heartbeat_extends_only_own_leases_and_reports_cancel(store: Store) -> None:
    enqueue(store, 3)
    j1, j2 = claim(store, "w1", lease=0.4), claim(store, "w1", lease=0.4)
    j3 = claim(store, "w2")
    beat = store.heartbeat("w1", LEASE, [j1.seq, j2.seq, j3.seq])
    assert beat.alive == {j1.seq, j2.seq} and beat.cancel == set()
    time.sleep(0.6)
    assert store.claim("w3", LEASE) is None  # renewed: nothing expired
    store.cancel([j2.event_id])
    beat = store.heartbeat("w1", LEASE, [j1.seq, j2.seq])
    assert beat.alive == {j1.seq, j2.seq} and beat.cancel == {j2.seq}
    assert store.heartbeat("w1", LEASE, []).alive == set()


def test_writes_refused_without_the_lease(store: Store) -> None:
    (eid,) = enqueue(store)
    job = claim(store, "w1")
    assert not store.save_checkpoint(job.seq, "intruder", '{"draft": 1}')
    assert not store.complete(job.seq, "intruder", "{}", None, "local", "m", None)
    assert not store.fail(job.seq, "intruder", "boom")
    assert not store.retry_later(job.seq, "intruder", 1.0, "later")
    assert not store.release(job.seq, "intruder")
    assert not store.mark_cancelled(job.seq, "intruder")
    row = store.get(eid)
    assert (row.status, row.attempts, row.error, row.result) == ("processing", 1, None, None)
    # and nothing is accepted for a job that is no longer processing
    assert store.fail(job.seq, "w1", "boom")
    assert not store.complete(job.seq, "w1", "{}", None, "local", "m", None)
    assert not store.fail(job.seq, "w1", "again")
    assert store.get(eid).error == "boom"


def test_complete_keeps_result_bytes(store: Store) -> None:
    (eid,) = enqueue(store)
    job = claim(store)
    result = json.dumps(
        {"summary": {"title": "보안", "z": 1, "a": [2, 1]}, "checklist": [{"b": 1, "a": 0}]},
        ensure_ascii=False,
    )
    usage = '{"summary": {"tokens": 3}, "total": {"tokens": 3}}'
    assert store.complete(job.seq, "w1", result, usage, "local", "rules-1", "key")
    row = store.get(eid)
    assert row.result == result and row.usage == usage
    assert (row.status, row.engine, row.model, row.error) == ("completed", "local", "rules-1", None)
    assert row.finished_at is not None and row.updated_at >= row.created_at
    assert store.find_cached(job.sha256, "key") == result
    assert store.find_cached(job.sha256, "other") is None
    assert store.find_cached("0" * 64, "key") is None
    assert store.usage_rows() == [("rules-1", usage)]


def test_fail_records_reason_and_keeps_usage(store: Store) -> None:
    (eid,) = enqueue(store)
    job = claim(store)
    assert store.fail(job.seq, "w1", "model refused", '{"total": 1}')
    row = store.get(eid)
    assert (row.status, row.error, row.usage, row.result) == (
        "failed",
        "model refused",
        '{"total": 1}',
        None,
    )


def test_retry_later_keeps_checkpoint_and_waits(store: Store) -> None:
    (eid,) = enqueue(store)
    job = claim(store)
    assert store.save_checkpoint(job.seq, "w1", '{"title": "draft"}')
    assert store.retry_later(job.seq, "w1", 0.5, "rate limited")
    row = store.get(eid)
    assert (row.status, row.error, row.attempts) == ("pending", "rate limited", 1)
    assert store.claim("w1", LEASE) is None  # not due yet
    due = store.next_due()
    assert due is not None and 0 < due <= 0.5
    assert store.has_active()
    time.sleep(0.6)
    again = claim(store, "w2")
    assert (again.attempts, again.checkpoint) == (2, '{"title": "draft"}')


def test_release_does_not_count_the_attempt(store: Store) -> None:
    ids = enqueue(store, 2)
    job = claim(store)
    assert store.release(job.seq, "w1")
    again = claim(store, "w2")
    assert (again.event_id, again.attempts) == (ids[0], 1)


def test_mark_cancelled(store: Store) -> None:
    (eid,) = enqueue(store)
    job = claim(store)
    assert store.cancel([eid]) == [(eid, "cancelling")]
    assert store.get(eid).status == "processing"
    assert store.mark_cancelled(job.seq, "w1")
    row = store.get(eid)
    assert (row.status, row.error) == ("cancelled", "cancelled by request")


def test_cancel_requested_before_claim_is_seen_by_claim(open_stores: StoreFactory) -> None:
    a, b = open_stores(), open_stores()
    (eid,) = enqueue(a)
    first = claim(a, "w1", lease=0.3)
    assert b.cancel([eid]) == [(eid, "cancelling")]
    time.sleep(0.5)
    taken = claim(b, "w2")  # the first worker died; the cancel request stays
    assert taken.seq == first.seq and taken.cancel_requested


def test_has_active_and_next_due(store: Store) -> None:
    assert not store.has_active() and store.next_due() is None
    (eid,) = enqueue(store)
    assert store.has_active()
    due = store.next_due()
    assert due is not None and due == 0.0
    job = claim(store)
    assert store.has_active()
    assert store.complete(job.seq, "w1", "{}", None, "local", "m", None)
    assert not store.has_active() and store.next_due() is None
    assert store.get(eid).status == "completed"


# --- operators -------------------------------------------------------------------


def test_retry_failed_and_cancelled_keeps_checkpoint(store: Store) -> None:
    a, b = enqueue(store, 2)
    ja = claim(store)
    assert store.save_checkpoint(ja.seq, "w1", '{"draft": "kept"}')
    assert store.fail(ja.seq, "w1", "boom")
    store.cancel([b])
    assert store.retry([a[:8], b]) == [a, b]
    for eid in (a, b):
        row = store.get(eid)
        assert (row.status, row.attempts, row.error, row.finished_at) == ("pending", 0, None, None)
    again = claim(store)
    assert (again.event_id, again.attempts, again.checkpoint) == (a, 1, '{"draft": "kept"}')
    assert not again.cancel_requested


def test_retry_is_all_or_nothing(store: Store) -> None:
    failed, pending = enqueue(store, 2)
    job = claim(store)
    assert store.fail(job.seq, "w1", "boom")
    with pytest.raises(WrongState, match=f"{pending} is pending"):
        store.retry([failed, pending])
    assert store.get(failed).status == "failed"
    with pytest.raises(NotFound):
        store.retry([failed, "ffffffff"])
    assert store.get(failed).status == "failed"


def test_cancel_semantics_and_all_or_nothing(store: Store) -> None:
    done, running, waiting = enqueue(store, 3)
    j = claim(store)
    assert store.complete(j.seq, "w1", "{}", None, "local", "m", None)
    claim(store)
    with pytest.raises(WrongState, match=f"{done} is completed"):
        store.cancel([waiting, done])
    assert store.get(waiting).status == "pending"
    assert store.cancel([waiting, running]) == [(waiting, "cancelled"), (running, "cancelling")]
    row = store.get(waiting)
    assert (row.status, row.error) == ("cancelled", "cancelled by request")
    assert row.finished_at is not None
    assert store.get(running).status == "processing"
    with pytest.raises(WrongState):
        store.cancel([waiting])
    with pytest.raises(NotFound):
        store.cancel(["not-an-id!"])


def test_purge_deletes_only_old_terminal_jobs(store: Store) -> None:
    done, failed, _pending = enqueue(store, 3)
    j = claim(store)
    assert store.complete(j.seq, "w1", "{}", None, "local", "m", None)
    j2 = claim(store)
    assert store.fail(j2.seq, "w1", "boom")
    assert store.purge(3600, ["completed", "failed", "cancelled"]) == 0
    time.sleep(0.05)
    assert store.purge(0, ["failed"]) == 1
    with pytest.raises(NotFound):
        store.get(failed)
    assert store.purge(0, ["completed", "failed", "cancelled"]) == 1
    with pytest.raises(NotFound):
        store.content(j.seq)
    c = store.counts()
    assert (c.pending, c.completed, c.failed) == (1, 0, 0)
    with pytest.raises(NotFound):
        store.get(done)


# --- concurrency ---------------------------------------------------------------


def test_concurrent_claimers_never_share_a_job(open_stores: StoreFactory) -> None:
    """Six connections claim 120 jobs at once: each job exactly once."""
    producer = open_stores()
    ids = enqueue(producer, 120)
    stores = [open_stores() for _ in range(6)]
    got: list[list[tuple[int, int]]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def drain(i: int) -> None:
        start.wait()
        while (job := stores[i].claim(f"w{i}", LEASE)) is not None:
            got[i].append((job.seq, job.attempts))

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seqs = [seq for claims in got for seq, _ in claims]
    assert len(seqs) == len(set(seqs)) == len(ids), "a job was claimed twice or lost"
    assert all(attempts == 1 for claims in got for _, attempts in claims)
    assert all(producer.get(e).attempts == 1 for e in ids)


# --- backend specifics -----------------------------------------------------------


def test_sqlite_claim_uses_the_partial_queue_index(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    from avo_cli.store.sqlite import CLAIM_SQL, SQLiteStore

    path = Path(str(tmp_path)) / "plan.db"
    SQLiteStore(str(path)).close()
    conn = sqlite3.connect(path)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN " + CLAIM_SQL,
        {"owner": "w", "now": time.time(), "lease": 1.0, "only": None},
    ).fetchall()
    details = " | ".join(str(r[-1]) for r in plan)
    assert "jobs_queue" in details, details
    conn.close()


def test_postgres_claim_walks_the_partial_queue_index(pg_url: str) -> None:
    """With a realistic table (many done, many live) the claim reads jobs_queue in
    id order and stops at the first due job: no sort of every live job."""
    import psycopg

    from avo_cli.store.postgres import CLAIM_SQL, PostgresStore

    store = PostgresStore(pg_url)
    store.enqueue([new_job(f"# Doc {i}\n- item {i}\n") for i in range(400)])
    for _ in range(150):
        job = claim(store)
        assert store.complete(job.seq, "w1", "{}", None, "local", "m", None)
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE jobs")
        plan = conn.execute(
            "EXPLAIN " + CLAIM_SQL.replace("%(owner)s", "'w'").replace("%(lease)s", "1.0")
        ).fetchall()
    text = "\n".join(r[0] for r in plan)
    assert "Index Scan using jobs_queue" in text, text
    assert "Sort" not in text and "Bitmap" not in text, text
