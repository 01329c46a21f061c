"""Reliability figures tallied by the fault-injection tests, plus their helpers.

Each test that injects faults takes the ``reliability`` fixture and adds what
it did and what it found (faults injected, jobs submitted/completed/lost,
duplicates, bad inputs tried). On teardown the figures are merged into
``build/reliability-report.json`` (git-ignored) under the test's node id, so a
re-run replaces its own entry instead of double counting and pytest-xdist
workers can write side by side (the file is updated under an ``flock``).
``bench/reliability_table.py`` turns that file into the README table.

The helpers run the real CLI as subprocesses (``python -m avo_cli``), start
workers against ``fake_openai.FakeOpenAI``, and read the SQLite file directly
to count what really got stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
REPORT = Path(os.environ.get("AVO_RELIABILITY_REPORT", ROOT / "build" / "reliability-report.json"))

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fake_openai import FakeOpenAI, Reply, answer_for  # noqa: E402

FIGURES = ("faults", "submitted", "completed", "lost", "duplicates", "bad_inputs")


@dataclass
class Figures:
    faults: int = 0
    submitted: int = 0
    completed: int = 0
    lost: int = 0
    duplicates: int = 0
    bad_inputs: int = 0


def record(nodeid: str, figures: Figures, path: Path = REPORT) -> None:
    """Merge one test's figures into the report file (safe across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        tests = data.setdefault("tests", {})
        tests[nodeid] = asdict(figures)
        data["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The figures of this test, written to the report when it ends (pass or fail)."""
    figures = Figures()
    yield figures
    record(request.node.nodeid, figures)


# --- subprocesses -----------------------------------------------------------------


def avo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "avo_cli", *args]


def child_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def spawn(
    *args: str,
    env: dict[str, str | None] | None = None,
    stderr_path: Path | None = None,
    **popen: Any,
) -> subprocess.Popen[str]:
    """Start ``avo ARGS`` in the background; stderr to a file when given."""
    err: Any = open(stderr_path, "w") if stderr_path is not None else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(
        avo_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=child_env(env),
        **popen,
    )


def run(
    *args: str,
    env: dict[str, str | None] | None = None,
    input: str | None = None,
    timeout: float = 60,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        avo_cmd(*args),
        input=input,
        capture_output=True,
        text=True,
        env=child_env(env),
        timeout=timeout,
        check=False,
        **kw,
    )


def wait_until(cond: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def submit(paths: list[Path], env: dict[str, str | None] | None = None) -> list[str]:
    proc = run("submit", *map(str, paths), env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def write_docs(directory: Path, n: int, prefix: str = "doc") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = directory / f"{prefix}-{i:04d}.md"
        p.write_text(
            f"# {prefix} {i}\n\n## Rules\n- You must write tests for change {i}.\n"
            f"- Keep functions short ({i}).\n",
            encoding="utf-8",
        )
        paths.append(p)
    return paths


# --- the database, read directly -------------------------------------------------------


def db_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def jobs_by_status(db: Path) -> dict[str, int]:
    return dict(db_rows(db, "SELECT status, count(*) FROM jobs GROUP BY status"))  # type: ignore[arg-type]


def job(db: Path, event_id: str) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM jobs WHERE event_id = ?", (event_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"job {event_id} is not in the database"
    return dict(row)


def account(db: Path, event_ids: list[str], figures: Figures) -> None:
    """Add submitted/completed/lost to ``figures``: lost = submitted but not stored exactly once."""
    figures.submitted += len(event_ids)
    stored = dict(db_rows(db, "SELECT event_id, status FROM jobs"))
    counts = db_rows(
        db, "SELECT event_id, count(*) FROM jobs GROUP BY event_id HAVING count(*) > 1"
    )
    figures.duplicates += len(counts)
    figures.completed += sum(1 for e in event_ids if stored.get(e) == "completed")
    figures.lost += sum(1 for e in event_ids if e not in stored)


# --- a fake model server whose answers say which request produced them --------------


class TaggedServer:
    """``FakeOpenAI`` whose answers carry the request number ("req-N") in their text.

    ``tags`` maps request number to the schema asked for, so a test can tell
    which worker call produced the stored result.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.server = FakeOpenAI(latency=latency)
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        self.numbers: list[tuple[int, str]] = []  # (request number, schema name)
        self.server.default = self._answer

    def _answer(self, body: dict[str, Any]) -> Reply:
        from fake_openai import schema_name

        with self._lock:
            n = next(self._count)
            self.numbers.append((n, schema_name(body)))
        draft = answer_for(body)
        if "categories" in draft:
            draft["categories"].append(
                {"name": f"req-{n}", "items": [{"text": f"answered by req-{n}", "required": False}]}
            )
        else:
            draft["title"] = f"req-{n}"
        return Reply(kind="content", content=json.dumps(draft, ensure_ascii=False))

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.numbers)

    def __enter__(self) -> TaggedServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url


def openai_env(key: str = "sk-test-reliability-0000000000") -> dict[str, str | None]:
    return {"OPENAI_API_KEY": key}


def worker_args(url: str, *extra: str) -> list[str]:
    return ["work", "--engine", "openai", "--base-url", url, "--no-cache", *extra]


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen[str]) -> Iterator[None]:
    """Kill (by pid) whatever is still running when the block ends."""
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, 9)
                p.wait(timeout=10)
