"""Model-bound drain: ``avo work --engine openai`` against a slow fake server.

Extends bench/drain_openai.py (same documents, same bare AsyncOpenAI loop,
imported from it) with what that bench leaves out: the fake server runs in
its own process (tests/fake_openai.py, so its threads never compete with
the client for one GIL), several worker processes share one queue, and each
figure is printed with its ratio to the two baselines of the same run:

* the latency ideal: jobs x 2 calls x latency / concurrency;
* a bare AsyncOpenAI loop making the same calls at the same concurrency, both
  in this process (no start-up) and as a whole process of its own (python
  start-up and ``import openai`` included, like ``avo work``); for 4 x 16 also
  four such processes of 16, started at once, as the four workers are.

Two floors explain what is left. The *job-slot floor*, ceil(jobs / N) x 2 x
latency, is what any worker reaches that runs N jobs at once, each job's two
calls in turn, when every call takes the same time (jobs finish in waves: 200
jobs at 32 is 7 waves, 3.50 s, against an ideal of 3.125 s). avo holds a
quarter more jobs than request slots, so its floor is the *request floor*
ceil(2 x jobs / N) x latency (13 rounds, 3.25 s). And ``avo work`` starts by
importing openai, whatever it drains.

avo's wall time is the whole process (start-up, imports, SQLite, engine);
the "drain" column is from its first claim to its last result (read from
the database), i.e. without interpreter start-up and imports.

Run: ``.venv/bin/python bench/model_drain.py [--jobs 200] [--latency 0.25] [--quick] [--pg]``
(``--pg`` also drains on PostgreSQL, by default the local server's ``test`` database
as admin connection, and compares with SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import AVO, PYTHON, bench_env, fake_server, header, run, verdict, workdir
from drain_openai import KEY, bare_loop, make_doc

# drain_openai's own bare_loop, run as a script of its own (its source, so the process
# imports what a real client imports: openai, httpx2; not the bench's fake server).
BARE_PROCESS = "\n".join(
    [
        "import asyncio, sys, time",
        f"KEY = {KEY!r}",
        inspect.getsource(make_doc),
        inspect.getsource(bare_loop),
        "asyncio.run(bare_loop(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))",
    ]
)


def bare_process(url: str, jobs: int, conc: int, env: dict[str, str], procs: int = 1) -> float:
    """Wall time of ``procs`` bare-loop processes started at once, ``jobs / procs`` each."""
    cmd = [PYTHON, "-c", BARE_PROCESS, url, str(jobs // procs), str(conc)]
    t0 = time.perf_counter()
    running = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for _ in range(procs)]
    for proc in running:
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"the bare loop exited {proc.returncode}")
    return time.perf_counter() - t0


IMPORT_TIME = "import time; t = time.perf_counter(); import openai; print(time.perf_counter() - t)"


def start_up_floor(env: dict[str, str]) -> tuple[float, float]:
    """An interpreter's start and exit (``python -c pass``), and ``import openai`` inside one.

    No process that calls the model through the openai client starts faster than
    their sum; the interpreter's teardown is left out, as ``avo work`` skips it.
    """
    t0 = time.perf_counter()
    run([PYTHON, "-c", "pass"], env)
    interpreter = time.perf_counter() - t0
    out = subprocess.run(
        [PYTHON, "-c", IMPORT_TIME], env=env, capture_output=True, text=True, check=True
    )
    return interpreter, float(out.stdout)


def avo_drain(
    url: str, tmp: Path, jobs: int, procs: int, conc: int, pg: str | None = None
) -> dict[str, float]:
    """One drain; on a fresh PostgreSQL database when ``pg`` (an admin URL) is given."""
    if pg is None:
        db = tmp / f"drain-{procs}x{conc}.db"
        return _drain(url, tmp, jobs, procs, conc, str(db))
    from pg_throughput import pg_database

    with pg_database(pg) as db_url:
        return _drain(url, tmp, jobs, procs, conc, db_url)


def _drain(url: str, tmp: Path, jobs: int, procs: int, conc: int, db: str) -> dict[str, float]:
    env = bench_env(tmp, AVO_DB=db, OPENAI_API_KEY=KEY)
    folder = tmp / f"docs-{procs}x{conc}"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(jobs):
        p = folder / f"doc{i:04d}.md"
        p.write_text(make_doc(i), encoding="utf-8")
        paths.append(str(p))
    run([AVO, "submit", *paths], env)
    cmd = [AVO, "-q", "work", "--engine", "openai", "--base-url", url]
    cmd += ["--concurrency", str(conc), "--no-cache"]
    t0 = time.perf_counter()
    workers = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(procs)
    ]
    for w in workers:
        _, err = w.communicate(timeout=600)
        if w.returncode != 0:
            raise SystemExit(f"avo work exited {w.returncode}: {err[-2000:]}")
    wall = time.perf_counter() - t0
    done_jobs = "FROM jobs WHERE status = 'completed'"
    times = f"SELECT count(*), min(started_at), max(finished_at) {done_jobs}"
    usages = f"SELECT usage {done_jobs}"
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as pg_conn:
            done, first, last = pg_conn.execute(times).fetchone() or (0, 0.0, 0.0)
            rows = pg_conn.execute(usages).fetchall()
    else:
        conn = sqlite3.connect(db)
        done, first, last = conn.execute(times).fetchone()
        rows = conn.execute(usages).fetchall()
        conn.close()
    calls = sum(json.loads(u)["total"]["calls"] for (u,) in rows)
    return {"wall": wall, "drain": last - first, "done": done, "calls": calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--quick", action="store_true", help="64 jobs")
    ap.add_argument(
        "--pg",
        nargs="?",
        const="postgresql://postgres@127.0.0.1:5432/test",
        metavar="ADMIN_URL",
        help="also drain on PostgreSQL (a fresh database per setup) and compare with SQLite",
    )
    args = ap.parse_args()
    jobs, lat = (64 if args.quick else args.jobs), args.latency
    header(f"model-bound drain: {jobs} jobs x 2 calls, fake server latency {lat}s")
    ok = True
    # (processes, concurrency per process)
    setups = [(1, 8), (1, 32), (1, 64), (4, 16)]
    with workdir() as tmp, fake_server(lat) as url:
        print(f"  fake server {url} in its own process")
        env = bench_env(tmp)
        runs = sorted(start_up_floor(env) for _ in range(5))
        interpreter, imports = runs[2][0], sorted(r[1] for r in runs)[2]
        print(
            f"  start-up floor of any openai client process: interpreter {interpreter:.2f}s"
            f" + import openai {imports:.2f}s (medians of 5)"
        )
        print(
            f"  {'setup':<7}{'ideal':>7}{'floor':>7}{'bare':>7}{'bare+':>7}{'avo':>7}{'drain':>7}"
            f"{'avo/ideal':>10}{'drain/ideal':>12}{'avo/bare+':>10}"
        )
        splits: list[tuple[str, float, float, float, float]] = []
        on_sqlite: dict[tuple[int, int], dict[str, float]] = {}
        for procs, conc in setups:
            total = procs * conc
            ideal = jobs * 2 * lat / total
            floor = math.ceil(2 * jobs / total) * lat  # request floor, see the docstring
            bare = asyncio.run(bare_loop(url, jobs, total))
            bare_p = bare_process(url, jobs, total, env)
            bare_4 = bare_process(url, jobs, conc, env, procs) if procs > 1 else bare_p
            r = on_sqlite[procs, conc] = avo_drain(url, tmp, jobs, procs, conc)
            eff, drain_eff = ideal / r["wall"], ideal / r["drain"]
            name = f"{procs}x{conc}" if procs > 1 else f"{conc}"
            splits.append((name, r["wall"], r["drain"], bare, bare_p))
            print(
                f"  {name:<7}{ideal:>6.2f}s{floor:>6.2f}s{bare:>6.2f}s{bare_p:>6.2f}s"
                f"{r['wall']:>6.2f}s{r['drain']:>6.2f}s{eff:>9.0%}{drain_eff:>11.0%}"
                f"{r['wall'] / bare_p:>9.2f}x"
            )
            ok &= verdict(
                f"{name}: all {jobs} jobs completed, 2 calls each",
                r["done"] == jobs and r["calls"] == 2 * jobs,
                f"{r['done']} jobs, {int(r['calls'])} calls",
            )
            if total <= 32:
                ok &= verdict(
                    f"{name}: the drain >= 85 % of the latency ideal", drain_eff >= 0.85,
                    f"{drain_eff:.0%} (floor {ideal / floor:.0%})",
                )  # fmt: skip
                best = ideal / (floor + interpreter + imports)
                ok &= verdict(
                    f"{name}: the whole process >= 85 % of the latency ideal",
                    eff >= 0.85,
                    f"{eff:.0%}; request floor + interpreter + import openai: at most {best:.0%}",
                )
            elif procs == 1:
                ok &= verdict(
                    f"{name}: within 1.15x of the bare loop (both whole processes)",
                    r["wall"] / bare_p <= 1.15,
                    f"{r['wall'] / bare_p:.2f}x",
                )
            else:
                ok &= verdict(
                    f"{name}: within 1.15x of {procs} bare processes x {conc}",
                    r["wall"] / bare_4 <= 1.15,
                    f"{r['wall'] / bare_4:.2f}x ({bare_4:.2f}s; one bare process x {total}: "
                    f"{r['wall'] / bare_p:.2f}x)",
                )
        print(
            "  floor = ceil(2 x jobs / N) x latency; bare = the loop inside this process;\n"
            "  bare+ = the same loop as a process of its own (start-up and import openai);\n"
            "  drain = avo's first claim to its last result, from the database"
        )
        print("  where avo's wall time goes, per setup:")
        for name, wall, drain, bare, bare_p in splits:
            print(
                f"    {name:<6} start-up (interpreter, imports, SQLite set-up) and exit "
                f"{wall - drain:5.2f}s (the bare process: {bare_p - bare:5.2f}s); draining "
                f"{drain:5.2f}s against the bare loop's {bare:5.2f}s ({drain - bare:+5.2f}s: "
                "SQLite, validation, the chain, and the jobs queued for a slot)"
            )
        if args.pg:
            print("  the same drains on PostgreSQL (each on a fresh database), against SQLite:")
            for procs, conc in setups:
                name = f"{procs}x{conc}" if procs > 1 else f"{conc}"
                pg, sq = avo_drain(url, tmp, jobs, procs, conc, args.pg), on_sqlite[procs, conc]
                print(
                    f"    {name:<6} avo {pg['wall']:5.2f}s, drain {pg['drain']:5.2f}s "
                    f"(SQLite {sq['wall']:5.2f}s / {sq['drain']:5.2f}s): drain "
                    f"{pg['drain'] / sq['drain']:.2f}x SQLite's"
                )
                ok &= verdict(
                    f"{name} on PostgreSQL: all {jobs} jobs completed, 2 calls each",
                    pg["done"] == jobs and pg["calls"] == 2 * jobs,
                    f"{pg['done']} jobs, {int(pg['calls'])} calls",
                )
        print(
            "  at 32 and 64 the latency ideal is out of reach for any worker: the request\n"
            "  floor and the start-up floor alone exceed it (see the verdict lines)."
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
