"""Long document: a 1 MB guideline through the OpenAI engine's map-reduce path.

``avo submit`` + ``avo work --engine openai`` as real processes against the
fake server (tests/fake_openai.py, its own process, fixed latency per call).
The number of model calls is read from the job's usage; the baseline of the
same run is the latency bound ``calls / concurrency x latency`` (``avo work
--concurrency N`` keeps at most N model requests in flight, chunk calls
included), and ``avo work`` on a one-paragraph document measures the process
start-up. The CPU time of the ``avo work`` process is printed beside its wall
time: what the client spends building 100 KB prompts, parsing and validating
long answers and merging the checklist.

Two context sizes: the default (128k tokens, a few large chunks) and 16k (a
local model's window: many small chunks).

Run: ``.venv/bin/python bench/long_document.py [--mb 1] [--latency 0.25] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import AVO, bench_env, fake_server, header, run, verdict, workdir

KEY = "sk-bench-not-a-real-key"


def big_guideline(size: int) -> str:
    parts = ["# Engineering handbook\n"]
    n = 0
    total = len(parts[0])
    while total < size:
        n += 1
        section = (
            f"\n## Section {n}: reviews and releases\n\n"
            f"Changes in area {n} follow the usual review process. Reviewers read the whole "
            f"diff, run it locally when it touches behaviour, and ask questions early.\n\n"
            f"- You must get one approval before merging change set {n}.\n"
            f"- Keep pull requests in area {n} under 400 lines.\n"
            f"- Tests for area {n} must pass on CI before a release.\n"
        )
        parts.append(section)
        total += len(section.encode())
    return "".join(parts)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(url: str, tmp: Path, name: str, text: str, context: int, conc: int) -> dict[str, float]:
    db = tmp / f"{name}.db"
    env = bench_env(
        tmp, AVO_DB=str(db), OPENAI_API_KEY=KEY, AVO_CONTEXT_TOKENS=str(context), AVO_TIMEOUT="120"
    )
    doc = tmp / f"{name}.md"
    doc.write_text(text, encoding="utf-8")
    run([AVO, "submit", str(doc)], env)
    cmd = [AVO, "-q", "work", "--engine", "openai", "--base-url", url, "--no-cache"]
    cpu0, t0 = children_cpu(), time.perf_counter()
    run([*cmd, "--concurrency", str(conc)], env)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    conn = sqlite3.connect(str(db))
    status, usage, started, finished = conn.execute(
        "SELECT status, usage, started_at, finished_at FROM jobs"
    ).fetchone()
    conn.close()
    if status != "completed":
        raise SystemExit(f"{name}: job {status}")
    calls = json.loads(usage)["total"]["calls"]
    return {"wall": wall, "job": finished - started, "calls": calls, "cpu": cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=4, help="model requests in flight")
    ap.add_argument("--quick", action="store_true", help="a 256 KB document")
    args = ap.parse_args()
    size = int((0.25 if args.quick else args.mb) * 1024 * 1024)
    lat, conc = args.latency, args.concurrency
    text = big_guideline(size)
    header(
        f"long document: {len(text.encode()) / 1e6:.2f} MB, latency {lat}s, {conc} calls at once"
    )
    ok = True
    with workdir() as tmp, fake_server(lat) as url:
        small = one_run(url, tmp, "small", "# Tiny\n- You must test.\n", 128_000, conc)
        start_up = small["wall"] - small["job"]
        print(
            f"  baseline: avo work on a tiny document {small['wall']:.2f}s "
            f"({small['calls']} calls; start-up and exit {start_up:.2f}s)"
        )
        print(
            f"  {'context':>9}{'calls':>7}{'bound':>9}{'job':>8}{'avo work':>10}"
            f"{'(its CPU)':>10}{'job/bound':>11}"
        )
        for context in (128_000, 16_000):
            r = one_run(url, tmp, f"long{context}", text, context, conc)
            bound = r["calls"] / conc * lat
            ratio = r["job"] / bound
            print(
                f"  {context:>9,}{r['calls']:>7}{bound:>8.2f}s{r['job']:>7.2f}s"
                f"{r['wall']:>9.2f}s{r['cpu']:>9.2f}s{ratio:>10.2f}x"
            )
            ok &= verdict(f"context {context:,}: job within 1.5x of the bound", ratio <= 1.5,
                          f"{ratio:.2f}x")  # fmt: skip
        print(
            "  'job' is claim to result (from the database); 'avo work' adds the process\n"
            "  start-up (interpreter, imports of openai/httpx2/pydantic) measured above.\n"
            "  The checklist chunks run alongside the summary's map and reduce calls; what\n"
            "  is left above the bound is the reduce call's wait for the map round and CPU\n"
            "  (the client's share is the CPU column; the fake server parses in its own process)."
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
