"""Helpers shared by the benchmarks: timing, isolated environments, reporting.

Every bench measures avo and its baseline in the same run, on the same
machine, and prints both with their ratio; nothing is compared against a
number written down on another day.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
AVO = str(VENV_BIN / "avo")
FAKE_SERVER = ROOT / "tests" / "fake_openai.py"

SCRUB = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "AVO_ENGINE", "AVO_MODEL", "AVO_DB", "AVO_LANG",
    "AVO_OUTPUT_LANG", "AVO_CONCURRENCY", "AVO_LEASE", "AVO_MAX_ATTEMPTS", "AVO_MAX_BYTES",
    "AVO_TIMEOUT", "AVO_CONTEXT_TOKENS", "AVO_CACHE", "AVO_CONFIG", "AVO_RAISE_ERRORS",
    "PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE",
)  # fmt: skip

GUIDE = """# Code review guideline

## Before you open a pull request
- You must run the test suite locally.
- Keep changes small and focused.
- Write a clear description of why the change is needed.

## Reviewing
- Reviewers must check error handling.
- Prefer readable code over clever code.
"""


@contextlib.contextmanager
def workdir(prefix: str = "avo-bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def bench_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A scrubbed environment whose user dirs and database live in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        AVO_DB=str(tmp / "avo.db"),
    )
    env.update(extra)
    return env


def run(cmd: Sequence[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd), env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    return proc


def time_cmd(cmd: Sequence[str], env: dict[str, str], runs: int, warmup: int = 2) -> list[float]:
    """Wall seconds of ``runs`` whole-process runs (after ``warmup`` untimed ones)."""
    out = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        run(cmd, env)
        dt = time.perf_counter() - t0
        if i >= warmup:
            out.append(dt)
    return out


def time_interleaved(
    cmds: dict[str, tuple[Sequence[str], dict[str, str]]], runs: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Like ``time_cmd`` for several commands, run round-robin so a busy moment on a
    shared machine slows every command alike instead of one of them."""
    out: dict[str, list[float]] = {name: [] for name in cmds}
    for i in range(warmup + runs):
        for name, (cmd, env) in cmds.items():
            t0 = time.perf_counter()
            run(cmd, env)
            dt = time.perf_counter() - t0
            if i >= warmup:
                out[name].append(dt)
    return out


def time_call(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    out = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if i >= warmup:
            out.append(dt)
    return out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def header(title: str) -> None:
    print(f"\n== {title} ==")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), load average {load}, "
        f"{time.strftime('%F %T')}"
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print("note: the machine is busy (load > cpus): absolute times are inflated; ratios to")
        print("      the baselines of the same run (interleaved) are the figures to compare")


def verdict(name: str, ok: bool, detail: str) -> bool:
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_docs(folder: Path, n: int, text: str = GUIDE) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"doc{i:05d}.md"
        # A distinct line per document so the result cache never short-cuts a job.
        p.write_text(f"{text}\n- Document number {i} must be unique.\n", encoding="utf-8")
        paths.append(p)
    return paths


def seed_jobs(db: Path, n: int, text: str = GUIDE, status: str = "pending") -> None:
    """Insert ``n`` jobs straight through the store (fast set-up, not a measurement)."""
    import hashlib
    import uuid

    sys.path.insert(0, str(ROOT / "src"))
    from avo_cli.store.base import NewJob
    from avo_cli.store.sqlite import SQLiteStore

    store = SQLiteStore(str(db))
    batch: list[NewJob] = []
    for i in range(n):
        body = f"{text}\n- Document number {i} must be unique.\n"
        data = body.encode()
        batch.append(
            NewJob(
                str(uuid.uuid4()), f"doc{i}.md", len(data), hashlib.sha256(data).hexdigest(), body
            )
        )
        if len(batch) == 5000:
            store.enqueue(batch)
            batch = []
    if batch:
        store.enqueue(batch)
    if status != "pending":
        store._conn.execute("UPDATE jobs SET status = ?", (status,))
    store.close()


@contextlib.contextmanager
def fake_server(latency: float) -> Iterator[str]:
    """tests/fake_openai.py in its own process, so its threads never share our GIL."""
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, str(FAKE_SERVER), "--port", str(port), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "fake OpenAI server" not in line:
            raise SystemExit(f"fake server did not start: {line!r}")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
