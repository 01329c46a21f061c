"""Memory: peak RSS of ``avo work`` draining 1,000 and 10,000 jobs (offline engine).

Each process is started by a small wrapper that reads its peak RSS with
``resource.getrusage(RUSAGE_CHILDREN)`` after it exits. Baselines from the
same run: the interpreter alone (``python -c pass``) and ``avo work`` on an
empty queue (avo's start-up footprint). The peak must stay flat as the queue
grows: jobs are claimed one at a time, never loaded all at once.

Run: ``.venv/bin/python bench/memory.py [--jobs 10000] [--quick]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import AVO, PYTHON, bench_env, header, seed_jobs, verdict, workdir

WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)\n"
)


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one run of ``cmd``."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [PYTHON, "-c", WRAPPER, *cmd], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    wall = time.perf_counter() - t0
    if out[1] != "0":
        raise SystemExit(f"{' '.join(cmd)} exited {out[1]}")
    return int(out[0]) / 1024, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="200 and 2,000 jobs")
    args = ap.parse_args()
    big = 2000 if args.quick else args.jobs
    small = big // 10
    header(f"memory: peak RSS of avo work draining {small:,} and {big:,} jobs")
    ok = True
    with workdir() as tmp:
        rows = []
        env = bench_env(tmp)
        rows.append(("python -c pass", *peak_rss_mb([PYTHON, "-c", "pass"], env)))
        work = [AVO, "-q", "work", "--engine", "local"]
        empty_env = bench_env(tmp, AVO_DB=str(tmp / "empty.db"))
        seed_jobs(tmp / "empty.db", 0)  # created and migrated, no jobs
        rows.append(("avo work, empty queue", *peak_rss_mb(work, empty_env)))
        for n in (small, big):
            db = tmp / f"q{n}.db"
            seed_jobs(db, n)
            rows.append(
                (f"avo work, {n:,} jobs", *peak_rss_mb(work, bench_env(tmp, AVO_DB=str(db))))
            )
        base = rows[1][1]
        print(f"  {'process':<26}{'peak RSS':>11}{'vs empty queue':>16}{'wall':>9}")
        for name, mb, wall in rows:
            print(f"  {name:<26}{mb:>8.1f} MB{mb - base:>+13.1f} MB{wall:>8.2f}s")
        peak_small, peak_big = rows[2][1], rows[3][1]
        growth = peak_big - peak_small
        ok &= verdict(
            f"peak RSS with {big:,} jobs <= 100 MB", peak_big <= 100, f"{peak_big:.1f} MB"
        )
        ok &= verdict(
            f"flat from {small:,} to {big:,} jobs (< 10 MB growth)",
            growth < 10,
            f"{growth:+.1f} MB",
        )
        print(
            f"  split: interpreter {rows[0][1]:.0f} MB; avo's imports and engine "
            f"{base - rows[0][1]:.0f} MB; the queue itself {peak_big - base:+.1f} MB "
            "(SQLite page cache, one job in flight)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
