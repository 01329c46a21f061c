"""Cold start: ``avo submit FILE`` and ``avo status ID --json`` as whole processes.

Baselines measured in the same run, on the same database schema:

* bare sqlite3: a Python script inserting the same rows with the standard
  library (the interpreter + sqlite3 floor);
* typer floor: the same insert inside a one-command typer app (typer 0.29
  imports pydantic to coerce parameters, so no typer CLI starts faster);
* ``llm --version`` from a throwaway venv (/tmp/llm-venv), when installable.

Run: ``.venv/bin/python bench/cold_start.py [--runs 21] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    AVO,
    GUIDE,
    PYTHON,
    bench_env,
    header,
    median,
    ms,
    run,
    time_interleaved,
    verdict,
    workdir,
)

LLM_VENV = Path("/tmp/llm-venv")

BARE = r"""
import hashlib, sqlite3, sys, time, uuid
path = sys.argv[1]
data = open(path, "rb").read()
text = data.decode("utf-8")
eid = str(uuid.uuid4())
now = time.time()
conn = sqlite3.connect(sys.argv[2], timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
cur = conn.execute(
    "INSERT INTO jobs (event_id, status, source, size, sha256, attempts, run_after, "
    "cancel_requested, created_at, updated_at) VALUES (?, 'pending', ?, ?, ?, 0, 0, 0, ?, ?)",
    (eid, path, len(data), hashlib.sha256(data).hexdigest(), now, now))
conn.execute("INSERT INTO documents (job_id, content) VALUES (?, ?)", (cur.lastrowid, text))
conn.execute("COMMIT")
print(eid)
"""

TYPER = r"""
import hashlib, sqlite3, sys, time, uuid
import typer

app = typer.Typer()

@app.command()
def submit(path: str, db: str) -> None:
    data = open(path, "rb").read()
    text = data.decode("utf-8")
    eid = str(uuid.uuid4())
    now = time.time()
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute(
        "INSERT INTO jobs (event_id, status, source, size, sha256, attempts, run_after, "
        "cancel_requested, created_at, updated_at) VALUES (?, 'pending', ?, ?, ?, 0, 0, 0, ?, ?)",
        (eid, path, len(data), hashlib.sha256(data).hexdigest(), now, now))
    conn.execute("INSERT INTO documents (job_id, content) VALUES (?, ?)", (cur.lastrowid, text))
    conn.execute("COMMIT")
    print(eid)

app()
"""

IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_breakdown(cmd: list[str], env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    """Total self time of all imports and the heaviest top-level packages (seconds)."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", *cmd], env=env, capture_output=True, text=True, check=True
    )
    total = 0
    tops: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if not m:
            continue
        self_us, name = int(m.group(1)), m.group(4)
        total += self_us
        top = name.split(".")[0]
        tops[top] = tops.get(top, 0) + self_us
    heavy = sorted(tops.items(), key=lambda kv: -kv[1])[:8]
    return total / 1e6, [(k, v / 1e6) for k, v in heavy]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="timed runs per command (median)")
    ap.add_argument("--quick", action="store_true", help="7 runs instead of 21")
    args = ap.parse_args()
    runs = 7 if args.quick else max(15, args.runs)
    header(f"cold start, median of {runs} runs (console script {AVO})")
    ok = True
    with workdir() as tmp:
        env = bench_env(tmp)
        # No AVO_DB: avo finds its database in the user data dir, as for a real user.
        del env["AVO_DB"]
        db = Path(env["XDG_DATA_HOME"]) / "avo" / "avo.db"
        doc = tmp / "guide.md"
        doc.write_text(GUIDE, encoding="utf-8")
        (tmp / "bare.py").write_text(BARE)
        (tmp / "typer_app.py").write_text(TYPER)
        # Create and migrate the database once: every timed run sees an up-to-date schema.
        event_id = run([AVO, "submit", str(doc)], env).stdout.strip()

        cmds: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([PYTHON, "-c", "pass"], env),
            "bare sqlite3 insert": ([PYTHON, str(tmp / "bare.py"), str(doc), str(db)], env),
            "typer floor insert": ([PYTHON, str(tmp / "typer_app.py"), str(doc), str(db)], env),
            "avo submit FILE": ([AVO, "submit", str(doc)], env),
            "avo status ID --json": ([AVO, "status", event_id, "--json"], env),
            "python -m avo_cli submit": ([PYTHON, "-m", "avo_cli", "submit", str(doc)], env),
        }
        llm = LLM_VENV / "bin" / "llm"
        if not llm.exists() and os.environ.get("AVO_BENCH_INSTALL_LLM"):
            subprocess.run([sys.executable, "-m", "venv", str(LLM_VENV)], check=True)
            subprocess.run([str(LLM_VENV / "bin" / "pip"), "install", "-q", "llm"], check=True)
        if llm.exists():
            cmds["llm --version"] = ([str(llm), "--version"], env)
        t = time_interleaved(cmds, runs)

        med = {k: median(v) for k, v in t.items()}
        floor = med["typer floor insert"]
        bare = med["bare sqlite3 insert"]
        print(f"\n  {'command':<28}{'median':>11}{'min':>11}   vs bare   vs typer floor")
        for name, xs in t.items():
            print(
                f"  {name:<28}{ms(med[name]):>11}{ms(min(xs)):>11}   {med[name] / bare:5.2f}x"
                f"   {med[name] / floor:5.2f}x"
            )
        if "llm --version" not in med:
            print(
                "  llm --version: not measured (install llm into /tmp/llm-venv, or set "
                "AVO_BENCH_INSTALL_LLM=1)"
            )

        print("\n  where avo submit's time goes (python -X importtime, one run):")
        imp_total, heavy = import_breakdown(["-m", "avo_cli", "submit", str(doc)], env)
        interp = med["python -c pass"]
        print(f"    interpreter start-up (python -c pass)   {ms(interp)}")
        print(f"    imports (sum of self times)             {ms(imp_total)}")
        print("      heaviest: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in heavy))
        rest = med["avo submit FILE"] - interp - imp_total
        print(f"    the rest: argument parsing, SQLite, I/O {ms(max(0.0, rest))}")
        print("    (importtime inflates import cost ~10-20 %; the split is indicative)")

        print()
        for name in ("avo submit FILE", "avo status ID --json"):
            ok &= verdict(
                f"{name} <= 1.25x typer floor",
                med[name] <= 1.25 * floor,
                f"{med[name] / floor:.2f}x",
            )
            ok &= verdict(f"{name} < 200 ms", med[name] < 0.2, ms(med[name]).strip())
            if "llm --version" in med:
                speed = med["llm --version"] / med[name]
                ok &= verdict(
                    f"{name} >= 3.5x faster than llm --version", speed >= 3.5, f"{speed:.1f}x"
                )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
