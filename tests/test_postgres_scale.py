"""Scale-out correctness on a real PostgreSQL: many ``avo work`` processes, one database.

* 8 worker processes (each its own connection) and 4 concurrent submitters,
  2,000 jobs with the offline engine: every job completed exactly once.
  A double claim cannot hide: each claim adds one to ``attempts`` (so it
  would end at 2), and each worker logs one line per job it finished (so the
  job would be logged twice); tests/test_postgres.py shows the SQLite claim
  statement double-claiming on PostgreSQL and this claim not. (Checked: with
  ``FOR UPDATE ... SKIP LOCKED`` removed from the claim, this test fails with
  dozens of jobs at attempts 2.)
* A worker SIGKILLed mid-job: its jobs come back by lease expiry and another
  worker finishes them (attempts 2), the rest untouched (attempts 1).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from conftest import avo_cmd
from fake_openai import FakeOpenAI

pytest_plugins = ["stores"]

WORKERS = 8
SUBMITTERS = 4
BATCHES = 10  # avo submit calls per submitter
PER_BATCH = 50  # documents per call: 4 * 10 * 50 = 2,000 jobs
TOTAL = SUBMITTERS * BATCHES * PER_BATCH


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in rows}


def _wait_until(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(pred) and pred():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@pytest.mark.slow
def test_eight_workers_and_concurrent_submitters_complete_each_job_once(
    pg_url: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    paths = []
    for i in range(TOTAL):
        p = docs / f"guide-{i:04d}.md"
        p.write_text(
            f"# Guide {i}\n\n## Rules\n\n- You must run check {i} before merging.\n"
            f"- Keep change {i} small.\n",
            encoding="utf-8",
        )
        paths.append(str(p))

    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    workers = []
    for log in logs:
        with log.open("w") as err:
            workers.append(
                subprocess.Popen(
                    avo_cmd("work", "--forever", "--engine", "local", "--db", pg_url),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            )

    submitted: list[list[str]] = [[] for _ in range(SUBMITTERS)]
    errors: list[str] = []

    def submitter(k: int) -> None:
        mine = paths[k * BATCHES * PER_BATCH : (k + 1) * BATCHES * PER_BATCH]
        for b in range(BATCHES):
            batch = mine[b * PER_BATCH : (b + 1) * PER_BATCH]
            proc = subprocess.run(
                avo_cmd("submit", "--db", pg_url, *batch),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0:
                errors.append(proc.stderr)
                return
            submitted[k].extend(proc.stdout.split())

    try:
        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(SUBMITTERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert sum(map(len, submitted)) == TOTAL
        _wait_until(lambda: _counts(pg_url).get("completed", 0) == TOTAL, 400, "all jobs completed")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(60) for w in workers]
    assert codes == [143] * WORKERS, codes

    ids = [e for sub in submitted for e in sub]
    assert len(set(ids)) == TOTAL
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT event_id, status, attempts, result IS NOT NULL, id FROM jobs ORDER BY id"
        ).fetchall()
        docs_n = conn.execute("SELECT count(*) FROM documents").fetchone()
    assert docs_n == (TOTAL,)
    assert len(rows) == TOTAL and {r[0] for r in rows} == set(ids)
    not_once = [
        (e, s, a) for e, s, a, has_result, _ in rows if (s, a, has_result) != ("completed", 1, True)
    ]
    assert not not_once, f"{len(not_once)} jobs not completed exactly once: {not_once[:5]}"
    # each submit call's jobs keep their order in the queue
    seq = {r[0]: r[4] for r in rows}
    for sub in submitted:
        for b in range(BATCHES):
            chunk = sub[b * PER_BATCH : (b + 1) * PER_BATCH]
            assert [seq[e] for e in chunk] == sorted(seq[e] for e in chunk)

    # one "completed" line per job across all worker logs: nobody processed a job twice
    finished: collections.Counter[str] = collections.Counter()
    busy = 0
    for log in logs:
        lines = [
            ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("completed ")
        ]
        finished.update(lines)
        busy += bool(lines)
    assert finished == collections.Counter(e[:8] for e in ids)
    assert busy >= 2, "the work was not shared between processes"

    # the database is drained: a plain `avo work` finds nothing and exits 0 at once
    proc = subprocess.run(
        avo_cmd("work", "--engine", "local", "--db", pg_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert _counts(pg_url) == {"completed": TOTAL}


@pytest.mark.slow
def test_sigkilled_worker_is_recovered_by_lease_expiry(pg_url: str, tmp_path: Path) -> None:
    docs = []
    for i in range(4):
        p = tmp_path / f"doc{i}.md"
        p.write_text(f"# Doc {i}\n\n- You must do thing {i}.\n", encoding="utf-8")
        docs.append(str(p))
    with FakeOpenAI(latency=1.5) as server:
        proc = subprocess.run(
            avo_cmd("submit", "--db", pg_url, *docs), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        ids = proc.stdout.split()
        args = (
            "work", "--engine", "openai", "--base-url", server.url, "--lease", "1",
            "--concurrency", "2", "--no-cache", "--db", pg_url,
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        victim = subprocess.Popen(
            avo_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        owner = f":{victim.pid}:"

        def held() -> list[str]:
            with psycopg.connect(pg_url) as conn:
                rows = conn.execute(
                    "SELECT event_id FROM jobs WHERE status = 'processing' "
                    "AND strpos(lease_owner, %s) > 0",
                    (owner,),
                ).fetchall()
            return [r[0] for r in rows]

        _wait_until(lambda: len(held()) == 2 and len(server.chat_requests) >= 1, 60, "2 claims")
        killed = held()
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        assert victim.returncode == -signal.SIGKILL
        assert set(killed) == set(ids[:2])  # FIFO: the first two
        counts = _counts(pg_url)
        assert counts == {"processing": 2, "pending": 2}  # killed mid-job, not finished

        rescuer = subprocess.run(
            avo_cmd(*args), capture_output=True, text=True, timeout=180, env=env
        )
        assert rescuer.returncode == 0, rescuer.stderr
    with psycopg.connect(pg_url) as conn:
        rows = dict(conn.execute("SELECT event_id, status || ':' || attempts FROM jobs").fetchall())
    assert rows == {
        ids[0]: "completed:2",
        ids[1]: "completed:2",
        ids[2]: "completed:1",
        ids[3]: "completed:1",
    }
    assert "4 completed" in rescuer.stderr
