"""Workers killed, paused and signalled for real, mid-job, against the fake model server."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import reliability_report
from conftest import StubEngine
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


def status_verbose(event_id: str) -> dict[str, object]:
    proc = run("status", event_id, "--verbose", "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def result_tags(event_id: str) -> tuple[str, list[str]]:
    """(summary title, checklist category names) of a completed job, via the CLI."""
    data = status_verbose(event_id)
    result = data["result"]
    assert isinstance(result, dict), data
    names = [c["name"] for c in result["checklist"]["categories"]]
    return result["summary"]["title"], names


def test_kill_9_mid_job_is_finished_by_another_worker(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    (doc,) = write_docs(tmp_path / "docs", 1)
    (event_id,) = submit([doc])
    with TaggedServer(latency=30) as fake:  # the first call never answers in time
        a = spawn(*worker_args(fake.url, "--lease", "1"), env=openai_env())
        with reaped(a):
            wait_until(lambda: fake.calls >= 1, what="worker A's first model call")
            assert job(isolated, event_id)["status"] == "processing"
            os.kill(a.pid, signal.SIGKILL)
            a.wait(timeout=10)
            reliability.faults += 1
        assert a.returncode == -signal.SIGKILL
        fake.server.latency = 0.05
        started = time.monotonic()
        b = run(*worker_args(fake.url, "--lease", "1"), env=openai_env(), timeout=60)
        assert b.returncode == 0, b.stderr
        assert "Traceback" not in b.stderr
    row = job(isolated, event_id)
    assert row["status"] == "completed"
    # B waited for A's lease (1 s from A's last heartbeat) rather than stealing it.
    assert time.monotonic() - started < 30
    details = status_verbose(event_id)["details"]
    assert isinstance(details, dict)
    assert details["attempts"] == 2
    title, names = result_tags(event_id)
    assert title == "req-2"  # B's own stage-1 call, not A's
    assert "req-3" in names
    assert jobs_by_status(isolated) == {"completed": 1}
    account(isolated, [event_id], reliability)


def test_paused_worker_cannot_overwrite_the_takeover(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    (doc,) = write_docs(tmp_path / "docs", 1)
    (event_id,) = submit([doc])
    with TaggedServer(latency=1.0) as fake:
        a = spawn(*worker_args(fake.url, "--lease", "1"), env=openai_env())
        b = None
        with reaped(a):
            wait_until(lambda: fake.calls >= 1, what="worker A's first model call")
            os.kill(a.pid, signal.SIGSTOP)
            reliability.faults += 1
            # Past A's lease: B takes the job over.
            b = spawn(*worker_args(fake.url, "--lease", "1"), env=openai_env())
            with reaped(b):
                wait_until(lambda: fake.calls >= 2, what="worker B's first model call")
                assert job(isolated, event_id)["attempts"] == 2
                # A wakes while B is mid-job: A's answer (req-1) is already in its socket.
                os.kill(a.pid, signal.SIGCONT)
                _, a_err = a.communicate(timeout=30)
                _, b_err = b.communicate(timeout=30)
    assert a.returncode == 0, a_err
    assert b.returncode == 0, b_err
    assert "lost" in a_err, a_err  # A's writes were refused and it said so
    assert "completed" in b_err, b_err
    row = job(isolated, event_id)
    assert row["status"] == "completed"
    title, names = result_tags(event_id)
    # B's summary and B's checklist; nothing of A's req-1 answer.
    assert title == "req-2", title
    assert not any(n == "req-1" for n in names)
    assert row["attempts"] == 2
    # A's refused checkpoint ended its chain: no stage-2 call on a job it no longer holds.
    assert fake.numbers == [
        (1, "guideline_summary"),
        (2, "guideline_summary"),
        (3, "guideline_checklist"),
    ], fake.numbers
    account(isolated, [event_id], reliability)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_finishes_in_flight_job_within_grace(
    tmp_path: Path, isolated: Path, reliability: Figures, sig: signal.Signals
) -> None:
    docs = write_docs(tmp_path / "docs", 3)
    ids = submit(docs)
    with TaggedServer(latency=0.6) as fake:
        w = spawn(*worker_args(fake.url, "--concurrency", "1", "--grace", "20"), env=openai_env())
        with reaped(w):
            wait_until(lambda: fake.calls >= 1, what="the first model call")
            os.kill(w.pid, sig)
            reliability.faults += 1
            _, err = w.communicate(timeout=30)
        assert w.returncode == 128 + sig, err
        assert "Traceback" not in err
    # The in-flight job finished; nothing else was claimed; nothing left processing.
    assert job(isolated, ids[0])["status"] == "completed"
    for event_id in ids[1:]:
        row = job(isolated, event_id)
        assert row["status"] == "pending" and row["attempts"] == 0
    assert jobs_by_status(isolated) == {"completed": 1, "pending": 2}
    assert fake.calls == 2
    account(isolated, ids, reliability)


def test_signal_hands_back_jobs_still_waiting_for_a_request_slot(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    """--concurrency 4 holds a fifth job for a request slot; on SIGINT that job, which
    has cost nothing yet, goes straight back to the queue instead of taking a slot the
    four running jobs need for their second calls within the grace period."""
    ids = submit(write_docs(tmp_path / "docs", 5))
    with TaggedServer(latency=2.5) as fake:
        w = spawn(*worker_args(fake.url, "--concurrency", "4", "--grace", "20"), env=openai_env())
        with reaped(w):
            wait_until(lambda: fake.calls >= 4, what="four model calls in flight")
            wait_until(
                lambda: jobs_by_status(isolated) == {"processing": 5}, what="the fifth job held"
            )
            os.kill(w.pid, signal.SIGINT)
            reliability.faults += 1
            _, err = w.communicate(timeout=60)
        assert w.returncode == 130, err
        assert "Traceback" not in err
    assert jobs_by_status(isolated) == {"completed": 4, "pending": 1}
    held = [event_id for event_id in ids if job(isolated, event_id)["status"] == "pending"]
    assert job(isolated, held[0])["attempts"] == 0  # handed back, not counted as a try
    assert fake.calls == 8  # the held job never sent a request
    account(isolated, ids, reliability)


def test_signal_hands_back_a_job_queued_behind_chunk_calls(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    """--concurrency 2 (no jobs held ahead): a long document's chunk calls fill both
    request slots; a short job claimed meanwhile waits for a slot. On SIGINT it goes back
    to the queue at once, while the long one keeps its grace period."""
    sections = [
        f"## Part {i}\n\n" + " ".join(f"w{i}x{j}" for j in range(90)) + f"\n\n- You must do {i}.\n"
        for i in range(8)
    ]
    long_doc = tmp_path / "long.md"
    long_doc.write_text("# Long\n\n" + "\n".join(sections), encoding="utf-8")
    (long_id,) = submit([long_doc])
    env = {**openai_env(), "AVO_CONTEXT_TOKENS": "700"}  # many chunk calls
    with TaggedServer(latency=2.5) as fake:
        w = spawn(*worker_args(fake.url, "--concurrency", "2", "--grace", "60"), env=env)
        with reaped(w):
            wait_until(lambda: fake.calls >= 2, what="both request slots taken")
            (short_id,) = submit(write_docs(tmp_path / "docs", 1))
            wait_until(
                lambda: job(isolated, short_id)["status"] == "processing",
                what="the short job claimed",
            )
            os.kill(w.pid, signal.SIGINT)
            reliability.faults += 1
            wait_until(
                lambda: job(isolated, short_id)["status"] == "pending",
                timeout=2.0,  # well before any slot frees (2.5 s per call)
                what="the waiting job handed back",
            )
            assert job(isolated, short_id)["attempts"] == 0
            assert job(isolated, long_id)["status"] == "processing"  # still in its grace
            os.kill(w.pid, signal.SIGINT)  # a second signal: stop waiting
            _, err = w.communicate(timeout=30)
        assert w.returncode == 130, err
        assert "Traceback" not in err
    assert jobs_by_status(isolated) == {"pending": 2}
    account(isolated, [long_id, short_id], reliability)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_grace_shorter_than_the_job_hands_it_back(
    tmp_path: Path, isolated: Path, reliability: Figures, sig: signal.Signals
) -> None:
    docs = write_docs(tmp_path / "docs", 2)
    ids = submit(docs)
    with TaggedServer(latency=20) as fake:
        w = spawn(*worker_args(fake.url, "--concurrency", "2", "--grace", "0.3"), env=openai_env())
        with reaped(w):
            wait_until(lambda: fake.calls >= 2, what="two model calls in flight")
            assert jobs_by_status(isolated) == {"processing": 2}
            t0 = time.monotonic()
            os.kill(w.pid, sig)
            reliability.faults += 1
            _, err = w.communicate(timeout=30)
            waited = time.monotonic() - t0
        assert w.returncode == 128 + sig, err
        assert "Traceback" not in err
    assert waited < 10, f"worker took {waited:.1f}s to honour a 0.3s grace (jobs take 20s)"
    assert jobs_by_status(isolated) == {"pending": 2}
    for event_id in ids:
        row = job(isolated, event_id)
        assert row["attempts"] == 0, row  # the interrupted try does not count
        assert row["lease_owner"] is None
    # A later worker finishes them.
    with TaggedServer(latency=0) as fake:
        done = run(*worker_args(fake.url), env=openai_env())
        assert done.returncode == 0, done.stderr
    assert jobs_by_status(isolated) == {"completed": 2}
    account(isolated, ids, reliability)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_an_idle_forever_worker_at_once(
    tmp_path: Path, isolated: Path, reliability: Figures, sig: signal.Signals
) -> None:
    ids = submit(write_docs(tmp_path / "docs", 1))
    w = spawn("work", "--engine", "local", "--forever", stderr_path=tmp_path / "w.log")
    with reaped(w):
        wait_until(lambda: jobs_by_status(isolated) == {"completed": 1}, what="the job")
        time.sleep(0.3)  # now polling an empty queue
        t0 = time.monotonic()
        os.kill(w.pid, sig)
        reliability.faults += 1
        w.wait(timeout=15)
        waited = time.monotonic() - t0
    assert w.returncode == 128 + sig
    assert waited < 5, f"an idle worker took {waited:.1f}s to stop"
    assert "Traceback" not in (tmp_path / "w.log").read_text()
    account(isolated, ids, reliability)


def test_kill_9_during_submit_queues_all_or_nothing(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    """A submitter killed mid-write leaves either every document of its call or none."""
    import sqlite3

    folder = tmp_path / "batch"
    folder.mkdir()
    paths = []
    for i in range(300):
        p = folder / f"d{i:03d}.md"
        p.write_text(f"# Doc {i}\n" + f"- rule {i} must hold\n" * 1500)  # ~30 KB each
        paths.append(str(p))
    submit(write_docs(tmp_path / "first", 1))  # the database exists and is migrated
    expected = 1
    killed = 0
    # Kill later and later, until a submit finishes first: the kills sweep its whole run.
    for step in range(1, 16):
        delay = 0.1 * step
        proc = spawn("submit", *paths)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
            reliability.faults += 1
        proc.communicate(timeout=60)
        n = sum(jobs_by_status(isolated).values())
        assert n in (expected, expected + len(paths)), (delay, n, expected)
        if proc.returncode == 0:
            assert n == expected + len(paths)
            reliability.submitted += len(paths)  # accepted: its ids were printed
        expected = n
        conn = sqlite3.connect(isolated)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        finally:
            conn.close()
        assert docs == n  # no job without its document, no orphan document
        if proc.returncode == 0:
            break
    assert killed, "every submit finished before the kill; make the batch bigger"


def test_lease_lost_at_the_checkpoint_ends_the_chain(isolated: Path, reliability: Figures) -> None:
    """Deterministic version of the SIGSTOP race: the takeover lands during stage 1."""
    import sqlite3

    from avo_cli.documents import validate
    from avo_cli.engines.base import Document, StageResult
    from avo_cli.store.sqlite import SQLiteStore
    from avo_cli.worker import Worker, WorkerOptions

    store = SQLiteStore(str(isolated))
    store.enqueue([validate(b"# Guide\n- You must test.\n", "g.md", 1000)])

    class TakenOver(StubEngine):
        async def summarize(self, doc: Document) -> StageResult:
            conn = sqlite3.connect(isolated)  # another worker claims the job meanwhile
            with conn:
                conn.execute("UPDATE jobs SET lease_owner = 'other-worker', attempts = 2")
            conn.close()
            return await super().summarize(doc)

    engine = TakenOver()
    worker = Worker(store, engine, WorkerOptions(lease=60, max_jobs=1))
    assert worker.run() == 0
    assert engine.calls == ["summary"]  # no stage-2 call for a job this worker no longer holds
    assert worker.by_status == {"lost": 1}
    row = store.get(store.recent()[0].event_id)
    assert row.status == "processing" and row.result is None  # left to its new owner
    store.close()
    reliability.faults += 1
    reliability.submitted += 1


def test_a_stalled_heartbeat_never_runs_a_job_twice_in_one_worker(
    isolated: Path, reliability: Figures
) -> None:
    """Heartbeats failing (a busy database) let the lease lapse while the job runs: the
    worker's own next claim must not start the same job a second time beside it."""
    import asyncio

    from avo_cli.documents import validate
    from avo_cli.engines.base import Document, StageResult
    from avo_cli.store.base import Heartbeat
    from avo_cli.store.sqlite import SQLiteStore
    from avo_cli.worker import Worker, WorkerOptions

    class BusyHeartbeat(SQLiteStore):
        def heartbeat(self, owner: str, lease: float, seqs: list[int]) -> Heartbeat:
            raise RuntimeError("database is locked")

    store = BusyHeartbeat(str(isolated))
    new = validate(b"# Guide\n- You must test.\n", "g.md", 1000)
    store.enqueue([new])
    store_id = new.event_id

    class Slow(StubEngine):
        checkpoints = False
        max_concurrency: int | None = 4

        async def summarize(self, doc: Document) -> StageResult:
            await asyncio.sleep(1.0)  # several leases long
            return await super().summarize(doc)

    engine = Slow()
    opts = WorkerOptions(lease=0.2, concurrency=4)
    worker = Worker(store, engine, opts)
    assert worker.run() == 0
    assert engine.calls == ["summary", "checklist"], engine.calls
    assert worker.by_status == {"completed": 1}
    assert store.recent()[0].status == "completed"
    store.close()
    reliability.faults += 1
    account(isolated, [store_id], reliability)
