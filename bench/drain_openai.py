"""Drain throughput of ``avo work --engine openai`` against the fake server.

For each concurrency: submit JOBS distinct documents into a fresh temporary
database (``AVO_DB``), run ``avo work --engine openai --concurrency N`` as a
real process, and print its wall time (and the worker's own drain time, without
process start-up) next to the latency ideal
(jobs x 2 calls x latency / N) and, as baselines in the same run, a bare
AsyncOpenAI loop making the same 2 x JOBS calls and the engine driven directly.

    .venv/bin/python bench/drain_openai.py                    # 0.25 s, 200 jobs, 8/32/64
    .venv/bin/python bench/drain_openai.py --latency 0.5 --jobs 40 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

KEY = "sk-bench-not-a-real-key"


def make_doc(i: int) -> str:
    return (
        f"# Guideline {i}\n\n## Review\n- You must get one approval ({i}).\n"
        f"- Keep pull requests small.\n\n## Tests\n- You must run the test suite ({i}).\n"
    )


def avo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avo_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


class ServerProcess:
    """The fake server in its own process, so its threads do not share our GIL."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "fake_openai.py"),
                "--port",
                "0",
                "--latency",
                str(latency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = line.split(" on ", 1)[1].split()[0]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def completed(env: dict[str, str]) -> int:
    import json

    proc = avo("list", "--status", "completed", "--limit", "100000", "--json", env=env)
    return len(json.loads(proc.stdout)) if proc.returncode == 0 else -1


def run_cli(url: str, jobs: int, concurrency: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AVO_DB": str(Path(tmp) / "avo.db"), "OPENAI_API_KEY": KEY}
        env.pop("OPENAI_BASE_URL", None)
        files = []
        for i in range(jobs):
            path = Path(tmp) / f"doc{i:04d}.md"
            path.write_text(make_doc(i), encoding="utf-8")
            files.append(str(path))
        proc = avo("submit", *files, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"avo submit failed: {proc.stderr}")
        started = time.perf_counter()
        proc = avo(
            "work",
            "--engine",
            "openai",
            "--base-url",
            url,
            "--concurrency",
            str(concurrency),
            "--no-cache",
            env=env,
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"avo work failed ({proc.returncode}): {proc.stderr[-2000:]}")
        # the worker's own summary line: "N job(s) in X.XXs" (drain time, no start-up)
        found = re.findall(r"job\(s\) in ([\d.]+)s", proc.stderr)
        drain = float(found[-1]) if found else float("nan")
        return wall, drain, completed(env)


async def bare_loop(url: str, jobs: int, concurrency: int) -> float:
    import httpx2
    import openai

    http = openai.DefaultAsyncHttpx2Client(
        limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256)
    )
    client = openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0, http_client=http)
    sem = asyncio.Semaphore(concurrency)
    fmt = {"type": "json_object"}

    async def job(i: int) -> None:
        async with sem:
            for stage in ("guideline_summary", "guideline_checklist"):
                await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": f"schema {stage}"},
                        {"role": "user", "content": f"<document>\n{make_doc(i)}\n</document>"},
                    ],
                    response_format=fmt,  # type: ignore[arg-type]
                )

    started = time.perf_counter()
    await asyncio.gather(*(job(i) for i in range(jobs)))
    wall = time.perf_counter() - started
    await client.close()
    return wall


async def engine_direct(url: str, jobs: int, concurrency: int) -> float:
    from avo_cli.engines.base import Document
    from avo_cli.engines.openai_engine import OpenAIEngine

    engine = OpenAIEngine(api_key=KEY, base_url=url, concurrency=concurrency)
    sem = asyncio.Semaphore(concurrency)

    async def job(i: int) -> None:
        async with sem:
            doc = Document(event_id=str(i), source="bench", text=make_doc(i))
            summary = await engine.summarize(doc)
            await engine.checklist(doc, summary.draft)

    started = time.perf_counter()
    await asyncio.gather(*(job(i) for i in range(jobs)))
    wall = time.perf_counter() - started
    await engine.aclose()
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description="avo openai drain benchmark")
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--no-cli", action="store_true", help="skip the avo work processes")
    parser.add_argument(
        "--in-process-server", action="store_true", help="run the fake server in this process"
    )
    args = parser.parse_args()

    if args.in_process_server:
        local: FakeOpenAI | None = FakeOpenAI(latency=args.latency).start()
        url = local.url
        remote = None
    else:
        local, remote = None, ServerProcess(args.latency)
        url = remote.url
    try:
        print(f"fake server {url}: latency {args.latency}s, {args.jobs} jobs, 2 calls/job")
        cols = ("conc", "ideal", "bare loop", "engine", "avo work", "(drain)", "done")
        print("{:>5} {:>8} {:>10} {:>8} {:>9} {:>8} {:>6}".format(*cols), flush=True)
        for n in args.concurrency:
            ideal = args.jobs * 2 * args.latency / n
            bare = asyncio.run(bare_loop(url, args.jobs, n))
            direct = asyncio.run(engine_direct(url, args.jobs, n))
            if args.no_cli:
                cli_wall, drain, done = float("nan"), float("nan"), 0
            else:
                cli_wall, drain, done = run_cli(url, args.jobs, n)
            print(
                f"{n:>5} {ideal:>7.2f}s {bare:>9.2f}s {direct:>7.2f}s {cli_wall:>8.2f}s"
                f" {drain:>7.2f}s {done:>6}",
                flush=True,
            )
        if local is not None:
            print(f"peak requests in flight at the server: {local.max_in_flight}")
    finally:
        if local is not None:
            local.stop()
        if remote is not None:
            remote.close()


if __name__ == "__main__":
    main()
