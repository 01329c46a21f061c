"""Render the figures of the reliability tests as the README's Markdown table.

The tests (tests/test_reliability_*.py, tests/test_security.py,
tests/test_fuzz.py) tally what they injected and what they found into
``build/reliability-report.json`` through ``tests/reliability_report.py``.
This script sums them and prints the table::

    rm -f build/reliability-report.json
    .venv/bin/pytest -q -p no:randomly tests/test_reliability_*.py tests/test_security.py \
        tests/test_fuzz.py
    .venv/bin/python bench/reliability_table.py          # prints the table
    .venv/bin/python bench/reliability_table.py --check  # exit 1 if a job was lost or duplicated
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "build" / "reliability-report.json"

ROWS = (
    (
        "faults",
        "Faults injected (kill -9, SIGSTOP, signals, failing heartbeats, full disk, "
        "bad database files)",
    ),
    ("submitted", "Jobs submitted"),
    ("completed", "Jobs completed"),
    ("lost", "Jobs lost"),
    ("duplicates", "Duplicate jobs or results"),
    ("bad_inputs", "Bad inputs tried (documents, ids, model answers, hostile text)"),
)


def totals(report: dict[str, object]) -> tuple[dict[str, int], int]:
    tests = report.get("tests")
    if not isinstance(tests, dict) or not tests:
        raise SystemExit("no figures in the report: run the reliability tests first")
    sums = {key: 0 for key, _ in ROWS}
    for figures in tests.values():
        for key in sums:
            sums[key] += int(figures.get(key, 0))
    return sums, len(tests)


def table(sums: dict[str, int], n_tests: int, updated: str) -> str:
    lines = ["| Figure | Count |", "| --- | ---: |"]
    lines += [f"| {label} | {sums[key]:,} |" for key, label in ROWS]
    lines.append("")
    lines.append(f"From {n_tests} tests of the suite's own run ({updated}).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if any job was lost or duplicated"
    )
    args = parser.parse_args()
    try:
        report = json.loads(args.report.read_text())
    except FileNotFoundError:
        print(f"no report at {args.report}: run the reliability tests first", file=sys.stderr)
        return 2
    sums, n_tests = totals(report)
    print(table(sums, n_tests, str(report.get("updated_at", "?"))))
    if args.check and (sums["lost"] or sums["duplicates"]):
        print(f"lost {sums['lost']}, duplicates {sums['duplicates']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
