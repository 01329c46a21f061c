"""Throughput of many ``avo work`` processes on PostgreSQL, next to SQLite, same run.

For each backend and each worker-process count, the same N jobs are seeded
(straight through the store: set-up, not measured), then W real ``avo work``
processes start at once and drain the queue; the wall time until the last
exits gives jobs/s. Every run is checked: all N jobs completed, each with
exactly one attempt (a double claim would show as attempts 2).

Two workloads:

* ``--engine local`` (default): the offline engine, so the queue itself is
  the bottleneck: claim/complete round trips and write contention;
* ``--engine openai --latency S``: the fake OpenAI server
  (tests/fake_openai.py, own process) answering after S seconds: I/O-bound,
  the case scaling out is for.

PostgreSQL comes from ``--pg`` / ``AVO_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``); the bench creates and drops
its own ``avo_bench_<random>`` database.

Run: ``.venv/bin/python bench/pg_throughput.py [--jobs 2000] [--workers 1,2,4,8]
[--engine local|openai] [--latency 0.2] [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import AVO, GUIDE, ROOT, bench_env, fake_server, header, verdict, workdir

sys.path.insert(0, str(ROOT / "src"))

import psycopg

from avo_cli.store import open_store
from avo_cli.store.base import NewJob

DEFAULT_PG = os.environ.get("AVO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_database(admin: str) -> Iterator[str]:
    name = f"avo_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    p = urlsplit(admin)
    try:
        yield urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset(url: str) -> None:
    if url.startswith("postgresql://"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS documents, jobs, avo_schema")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(url + suffix).unlink(missing_ok=True)


def seed(url: str, n: int) -> None:
    store = open_store(url)
    jobs = []
    for i in range(n):
        body = f"{GUIDE}\n- Document number {i} must be unique.\n"
        data = body.encode()
        jobs.append(
            NewJob(
                str(uuid.uuid4()), f"doc{i}.md", len(data), hashlib.sha256(data).hexdigest(), body
            )
        )
    for start in range(0, n, 1000):
        store.enqueue(jobs[start : start + 1000])
    store.close()


def check(url: str, n: int) -> tuple[int, int]:
    """(completed with one attempt, all jobs)."""
    store = open_store(url)
    rows = store.recent(limit=n + 10)
    store.close()
    once = sum(1 for r in rows if r.status == "completed" and r.attempts == 1)
    return once, len(rows)


def drain(url: str, workers: int, env: dict[str, str], args: list[str]) -> float:
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [AVO, "work", "--db", url, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    failed = []
    for p in procs:
        _, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            failed.append(err[-500:])
    dt = time.perf_counter() - t0
    if failed:
        raise SystemExit("a worker failed:\n" + "\n".join(failed))
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", default="1,2,4,8", help="comma-separated process counts")
    ap.add_argument("--engine", choices=("local", "openai"), default="local")
    ap.add_argument("--latency", type=float, default=0.2, help="fake server latency (openai)")
    ap.add_argument("--concurrency", type=int, default=4, help="jobs at once per process")
    ap.add_argument("--pg", default=DEFAULT_PG, help="admin URL to create the bench database")
    ap.add_argument("--quick", action="store_true", help="300 jobs, 1 and 4 workers")
    opts = ap.parse_args()
    if opts.quick:
        opts.jobs, opts.workers = 300, "1,4"
    counts = [int(w) for w in opts.workers.split(",")]

    header(
        f"avo work throughput: {opts.jobs} jobs, engine {opts.engine}"
        + (f" (fake server latency {opts.latency}s)" if opts.engine == "openai" else "")
        + f", --concurrency {opts.concurrency}"
    )
    ok = True
    results: dict[tuple[str, int], float] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(workdir())
        pg_url = stack.enter_context(pg_database(opts.pg))
        env = bench_env(tmp)
        args = ["--engine", opts.engine, "--concurrency", str(opts.concurrency), "--no-cache"]
        if opts.engine == "openai":
            args += ["--base-url", stack.enter_context(fake_server(opts.latency))]
        urls = {"sqlite": str(tmp / "bench.db"), "postgres": pg_url}
        print(f"{'backend':<10} {'workers':>7} {'seconds':>8} {'jobs/s':>8}  check")
        # interleave backends per worker count so a busy moment hits both alike
        for w in counts:
            for name, url in urls.items():
                reset(url)
                seed(url, opts.jobs)
                dt = drain(url, w, env, args)
                once, total = check(url, opts.jobs)
                good = once == total == opts.jobs
                ok &= good
                results[(name, w)] = opts.jobs / dt
                print(
                    f"{name:<10} {w:>7} {dt:>8.2f} {opts.jobs / dt:>8.1f}  "
                    f"{once}/{total} completed once{'' if good else '  <-- WRONG'}"
                )
    print("\nPostgreSQL / SQLite throughput at the same number of worker processes:")
    for w in counts:
        pg, lite = results[("postgres", w)], results[("sqlite", w)]
        print(f"  {w} worker(s): {pg:8.1f} vs {lite:8.1f} jobs/s  ratio {pg / lite:5.2f}x")
    base = results[("postgres", counts[0])]
    for w in counts[1:]:
        print(
            f"  PostgreSQL scaling {counts[0]} -> {w} workers: "
            f"{results[('postgres', w)] / base:5.2f}x"
        )
    ok &= verdict("exactly once", ok, "every job completed with one attempt on both backends")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
