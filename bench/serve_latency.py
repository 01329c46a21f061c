"""``avo serve`` latency: ``POST /api/jobs`` under 50 concurrent closed-loop clients.

Starts ``avo serve`` itself on a free loopback port (default settings, so the
access log is on and goes to a file), then runs N clients; each keeps one
keep-alive connection and sends its next request as soon as the last one is
answered. The client is raw asyncio streams (no HTTP library) so it steals as
little of the 2 shared cores as possible.

Three kinds of request take turns in short slices (0.5 s) until each had D
seconds: ``GET /healthz`` (the baseline: the HTTP stack, no store), ``POST
/api/jobs`` (the goal: p99 under 50 ms on the default SQLite store) and ``GET
/api/jobs/{id}``. Interleaved, they all see the same background load, so the
ratios to the baseline mean something on a busy machine. The server's CPU time
per request (from /proc, all threads) is printed too: it hardly depends on load.
Every ``201`` must be a job in the store afterwards.

PostgreSQL: with ``--pg URL`` or ``AVO_BENCH_PG`` (an admin URL such as
``postgresql://postgres@127.0.0.1:5432/test``) the same mix runs again on a
fresh ``avo_bench_*`` database created there and dropped afterwards.

Bounded: at most ``--max-requests`` per server and 3 x ``--duration`` seconds
(plus warm-up).
Run: ``.venv/bin/python bench/serve_latency.py [--clients 50] [--duration 10] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GUIDE, PYTHON, bench_env, header, verdict, workdir

GOAL_P99 = 0.050
Maker = Callable[[int], bytes]
LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    ok_total: int = 0  # answers with the expected status, warm-up included
    stored: int | None = None  # jobs the store gained during the phase
    cpu: float = 0.0  # server process CPU seconds (all threads) during the phase

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

    def line(self) -> str:
        n = len(self.latencies)
        rate = n / self.elapsed if self.elapsed else 0.0
        errs = sum(self.errors.values())
        return (
            f"  {self.name:<34} n={n:<6} p50={self.pct(50) * 1000:6.1f} ms  "
            f"p90={self.pct(90) * 1000:6.1f} ms  p99={self.pct(99) * 1000:6.1f} ms  "
            f"max={max(self.latencies, default=0) * 1000:6.1f} ms  "
            f"{rate:6.0f} req/s  server CPU {self.cpu_per_request() * 1e6:5.0f} us/req  "
            f"errors={errs}{' ' + str(self.errors) if errs else ''}"
        )

    def cpu_per_request(self) -> float:
        measured = len(self.latencies) + sum(self.errors.values())  # warm-up excluded, as cpu
        return self.cpu / measured if measured else float("nan")


# --- a minimal HTTP/1.1 keep-alive client ------------------------------------------------


def request_bytes(method: str, path: str, body: bytes = b"", ctype: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body or method == "POST":
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


@dataclass
class Kind:
    """One kind of request of the mix: how to make it, what it must answer."""

    phase: Phase
    make: Maker
    expect: int


async def client(
    port: int, kinds: list[Kind], clock: Clock, budget: list[int], counter: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0:
            t0 = time.perf_counter()
            slot = clock.slot(t0)
            if slot is None:
                return
            kind = kinds[slot]
            budget[0] -= 1
            counter[0] += 1
            writer.write(kind.make(counter[0]))
            status, _ = await read_response(reader)
            dt = time.perf_counter() - t0
            kind.phase.ok_total += status == kind.expect
            if t0 < clock.warm_until:
                continue
            if status == kind.expect:
                kind.phase.latencies.append(dt)
            else:
                kind.phase.errors[str(status)] = kind.phase.errors.get(str(status), 0) + 1
    finally:
        writer.close()


@dataclass
class Clock:
    """Which kind of request is due: kinds take turns in ``slice_s`` slices."""

    start: float
    warm_until: float
    stop_at: float
    slice_s: float
    kinds: int

    def slot(self, t: float) -> int | None:
        if t >= self.stop_at:
            return None
        return int((t - self.start) / self.slice_s) % self.kinds


async def cpu_sampler(pid: int, kinds: list[Kind], clock: Clock) -> None:
    """Charge the server's CPU time (and wall time) of each slice to its kind."""
    last_t, last_cpu = time.perf_counter(), cpu_seconds(pid)
    while last_t < clock.stop_at:
        slot = clock.slot(last_t)
        boundary = clock.start + (int((last_t - clock.start) / clock.slice_s) + 1) * clock.slice_s
        await asyncio.sleep(max(0.0, min(boundary, clock.stop_at) - time.perf_counter()))
        now, cpu = time.perf_counter(), cpu_seconds(pid)
        if slot is not None and last_t >= clock.warm_until:
            kinds[slot].phase.cpu += cpu - last_cpu
            kinds[slot].phase.elapsed += now - last_t
        last_t, last_cpu = now, cpu


async def run_mix(port: int, pid: int, kinds: list[Kind], args: argparse.Namespace) -> None:
    """All clients send the kind whose slice it is, on their one keep-alive connection.

    Interleaving (rather than one phase after the other) puts every kind under the
    same background load, so the ratios hold on a busy machine. The warm-up is a
    whole number of rounds, so it also ends on a slice boundary.
    """
    start = time.perf_counter()
    rounds = max(1, round(args.warmup / (args.slice * len(kinds))))
    warm_until = start + rounds * args.slice * len(kinds)
    clock = Clock(
        start, warm_until, warm_until + args.duration * len(kinds), args.slice, len(kinds)
    )
    budget, counter = [args.max_requests], [0]
    await asyncio.gather(
        cpu_sampler(pid, kinds, clock),
        *(client(port, kinds, clock, budget, counter) for _ in range(args.clients)),
    )


def post_maker() -> Maker:
    tag = uuid.uuid4().hex[:8]

    def make(i: int) -> bytes:
        body = json.dumps(
            {"content": f"{GUIDE}\n- Request {tag}-{i} must be unique.\n", "source": "bench.md"}
        ).encode()
        return request_bytes("POST", "/api/jobs", body, "application/json")

    return make


# --- the server ------------------------------------------------------------------------------


@contextmanager
def server(tmp: Path, db: str, label: str, extra: list[str]) -> Iterator[tuple[int, int]]:
    env = bench_env(tmp, AVO_DB=db)
    log = open(tmp / f"serve-{label}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PYTHON, "-m", "avo_cli", "serve", "--port", "0", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None:
            found = LISTENING.search((tmp / f"serve-{label}.log").read_bytes())
            if found:
                port = int(found.group(1))
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"avo serve did not start: {(tmp / f'serve-{label}.log').read_text()[-2000:]}"
                )
            else:
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def queued(db: str) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from avo_cli.store import open_store

    store = open_store(db)
    try:
        return store.counts().pending
    finally:
        store.close()


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"avo_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(db: str, tmp: Path, label: str, args: argparse.Namespace) -> dict[str, Phase]:
    with server(tmp, db, label, args.serve_arg) as (port, pid):
        some = asyncio.run(_create_one(port))
        health = request_bytes("GET", "/healthz")
        get = request_bytes("GET", f"/api/jobs/{some}")
        phases = {
            "healthz": Phase(f"[{label}] GET /healthz (baseline)"),
            "post": Phase(f"[{label}] POST /api/jobs"),
            "get": Phase(f"[{label}] GET /api/jobs/{{id}}"),
        }
        kinds = [
            Kind(phases["healthz"], lambda i: health, 200),
            Kind(phases["post"], post_maker(), 201),
            Kind(phases["get"], lambda i: get, 200),
        ]
        before = queued(db)
        asyncio.run(run_mix(port, pid, kinds, args))
        # Every 201 (warm-up included) must be a job in the store: no lost writes.
        phases["post"].stored = queued(db) - before
    return phases


async def _create_one(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post_maker()(0))
    status, body = await read_response(reader)
    writer.close()
    if status != 201:
        raise SystemExit(f"POST /api/jobs answered {status}: {body[:500]!r}")
    return str(json.loads(body)["event_id"])


def report(phases: dict[str, Phase], label: str) -> bool:
    for key in ("healthz", "post", "get"):
        print(phases[key].line())
    post, base = phases["post"], phases["healthz"]
    ratio = post.pct(99) / base.pct(99) if base.pct(99) else float("nan")
    print(
        f"  POST / healthz: p99 {ratio:.2f}x, p50 {post.pct(50) / base.pct(50):.2f}x, "
        f"server CPU per request {post.cpu_per_request() / base.cpu_per_request():.2f}x"
    )
    ok = verdict(
        f"{label} POST /api/jobs p99 < {GOAL_P99 * 1000:.0f} ms",
        post.pct(99) < GOAL_P99 and not post.errors,
        f"{post.pct(99) * 1000:.1f} ms, {len(post.latencies)} requests, errors={post.errors}",
    )
    ok &= verdict(
        f"{label} every 201 is a stored job",
        post.stored == post.ok_total,
        f"{post.ok_total} created, {post.stored} stored",
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per request kind"
    )
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per turn of a kind")
    parser.add_argument("--warmup", type=float, default=1.5, help="untimed seconds first")
    parser.add_argument("--max-requests", type=int, default=300_000, help="cap per server")
    parser.add_argument("--pg", default=os.environ.get("AVO_BENCH_PG"), help="PostgreSQL admin URL")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra avo serve option (repeatable), e.g. --serve-arg=--no-access-log",
    )
    parser.add_argument("--quick", action="store_true", help="3 s phases (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.duration = 3.0
    header(
        f"avo serve: {args.clients} closed-loop clients, {args.duration:.0f} s per request kind, "
        f"kinds interleaved in {args.slice:g} s turns (+{args.warmup:g} s warm-up), loopback"
    )
    ok = True
    with workdir("avo-bench-serve-") as tmp:
        phases = measure(str(tmp / "avo.db"), tmp, "sqlite", args)
        ok &= report(phases, "SQLite")
        if args.pg:
            with pg_database(args.pg) as url:
                pg = measure(url, tmp, "postgres", args)
            ok &= report(pg, "PostgreSQL")
        else:
            print("  (PostgreSQL skipped: pass --pg URL or set AVO_BENCH_PG)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
