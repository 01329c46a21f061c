"""Batch submit: 1,000 files in one ``avo submit`` call, written in one transaction.

Baseline measured in the same run: a bare Python script that reads, hashes
and inserts the same 1,000 documents with the standard library's sqlite3 in
one transaction. The transaction count is checked by running the real CLI
with a trace callback on every sqlite3 connection it opens.

Run: ``.venv/bin/python bench/batch_submit.py [--files 1000] [--runs 5] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    AVO,
    PYTHON,
    bench_env,
    header,
    median,
    ms,
    run,
    time_interleaved,
    verdict,
    workdir,
    write_docs,
)

BARE = r"""
import hashlib, sqlite3, sys, time, uuid
db, paths = sys.argv[1], sys.argv[2:]
rows = []
for path in paths:
    data = open(path, "rb").read()
    rows.append((str(uuid.uuid4()), path, data, data.decode("utf-8")))
now = time.time()
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
for eid, path, data, text in rows:
    cur = conn.execute(
        "INSERT INTO jobs (event_id, status, source, size, sha256, attempts, run_after, "
        "cancel_requested, created_at, updated_at) VALUES (?, 'pending', ?, ?, ?, 0, 0, 0, ?, ?)",
        (eid, path, len(data), hashlib.sha256(data).hexdigest(), now, now))
    conn.execute("INSERT INTO documents (job_id, content) VALUES (?, ?)", (cur.lastrowid, text))
conn.execute("COMMIT")
print("\n".join(r[0] for r in rows))
"""

# Runs the real CLI with every sqlite3 connection traced; prints the statement tally.
TRACED = r"""
import json, sqlite3, sys
tally = {"begin": 0, "commit": 0, "insert": 0}
_connect = sqlite3.connect
def connect(*a, **kw):
    conn = _connect(*a, **kw)
    def trace(sql):
        word = sql.lstrip().split(None, 1)[0].lower()
        if word in tally:
            tally[word] += 1
    conn.set_trace_callback(trace)
    return conn
sqlite3.connect = connect
sys.argv = ["avo", *sys.argv[1:]]
from avo_cli.cli import main
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
finally:
    print(json.dumps(tally), file=sys.stderr)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="200 files, 3 runs")
    args = ap.parse_args()
    n, runs = (200, 3) if args.quick else (args.files, args.runs)
    header(f"batch submit: {n} files in one call, median of {runs}")
    ok = True
    with workdir() as tmp:
        env = bench_env(tmp)
        db = tmp / "avo.db"
        paths = [str(p) for p in write_docs(tmp / "docs", n)]
        (tmp / "bare.py").write_text(BARE)
        (tmp / "traced.py").write_text(TRACED)
        run([AVO, "submit", paths[0]], env)  # create + migrate outside the timing

        t = time_interleaved(
            {
                "bare sqlite3, 1 transaction": (
                    [PYTHON, str(tmp / "bare.py"), str(db), *paths],
                    env,
                ),
                f"avo submit ({n} files)": ([AVO, "submit", *paths], env),
                "avo submit (1 file)": ([AVO, "submit", paths[0]], env),
            },
            runs,
            warmup=1,
        )
        med = {k: median(v) for k, v in t.items()}
        bare = med["bare sqlite3, 1 transaction"]
        avo = med[f"avo submit ({n} files)"]
        for name, value in med.items():
            print(f"  {name:<32}{ms(value)}   {value / bare:5.2f}x bare   {n / value:8.0f} docs/s")

        traced = run([PYTHON, str(tmp / "traced.py"), "submit", *paths], env)
        tally = json.loads(traced.stderr.strip().splitlines()[-1])
        ids = traced.stdout.split()
        print(
            f"  statements of one avo submit: {tally['begin']} BEGIN, {tally['commit']} COMMIT, "
            f"{tally['insert']} INSERT"
        )
        ok &= verdict(f"{n} files in < 2 s", avo < 2.0, ms(avo).strip())
        ok &= verdict(
            "one write transaction",
            tally["begin"] == 1 and tally["commit"] == 1,
            f"{tally['begin']} BEGIN / {tally['commit']} COMMIT",
        )
        ok &= verdict("one id per file", len(ids) == n == len(set(ids)), f"{len(ids)} ids")
        one = med["avo submit (1 file)"]
        print(
            f"  split: start-up (interpreter, imports, open) = avo submit of 1 file "
            f"{ms(one).strip()}; the other {ms(max(0.0, avo - one)).strip()} read, hash, "
            f"validate and insert {n} documents ({(avo - one) / n * 1e6:.0f} us each)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
