"""Drains the queue: claim, run the chain, complete; leases, signals, back-off.

One asyncio loop runs up to ``concurrency`` jobs (a quarter more with an
engine that queues its own model requests, see ``jobs_ahead``). A single heartbeat task
renews every lease this worker holds in one statement and learns which jobs
were lost (taken over after a pause) or cancelled; those tasks are cancelled
and their results never written. SIGINT/SIGTERM only set a flag: the worker
stops claiming, lets in-flight jobs finish within the grace period, then
hands the rest back to pending and exits 130/143.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from avo_cli.chain import run_chain, total_usage
from avo_cli.engines.base import Document, Engine, JobMarks, job_marks
from avo_cli.errors import AvoError, ExitCode, JobError
from avo_cli.store.base import ClaimedJob, Store

IDLE_MIN = 0.05
IDLE_MAX = 2.0
IDLE_DRAIN_MAX = 0.2  # without --forever: poll for the end of other workers' jobs


class _LeaseLost(Exception):
    """A conditional write about a job was refused: another worker holds it now."""


@dataclass
class WorkerOptions:
    concurrency: int = 1
    lease: float = 60.0
    max_jobs: int | None = None
    forever: bool = False
    grace: float = 30.0
    max_attempts: int = 3
    cache: bool = True
    retry_base: float = 2.0  # job-level back-off: base * 2**(attempt-1), jittered
    retry_cap: float = 60.0
    handle_signals: bool = True  # False in a thread (avo serve --workers): use request_stop
    #: Stop once this says so (checked when idle); ``avo run`` waits for its own jobs only.
    stop_when: Callable[[], bool] | None = None
    #: Claim only these event ids (``avo run``: its own jobs, never others' backlog).
    only: list[str] | None = None


class Reporter(Protocol):
    """What the worker tells the person watching (progress bar or log lines)."""

    def started(self, total: int) -> None: ...
    def claimed(self, job: ClaimedJob) -> None: ...
    def finished(self, job: ClaimedJob, status: str, seconds: float, detail: str) -> None: ...
    def stopped(self) -> None: ...


class SilentReporter:
    def started(self, total: int) -> None:
        pass

    def claimed(self, job: ClaimedJob) -> None:
        pass

    def finished(self, job: ClaimedJob, status: str, seconds: float, detail: str) -> None:
        pass

    def stopped(self) -> None:
        pass


def jobs_ahead(engine: Engine) -> int:
    """Jobs held beyond ``concurrency`` when the engine bounds its own requests.

    The OpenAI engine keeps at most ``request_limit`` requests in flight. With only
    that many jobs, a slot freed by one job's last call waits for the next claim
    and first call, and jobs finish in waves; a few jobs queued for a slot keep
    every slot busy (200 two-call jobs at 32 slots: 14 latency rounds -> 13).
    Held jobs that have not sent a request are handed back at once on a stop.
    """
    limit = getattr(engine, "request_limit", None)
    return limit // 4 if isinstance(limit, int) else 0


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self, store: Store, engine: Engine, options: WorkerOptions, reporter: Reporter | None = None
    ) -> None:
        self.store = store
        self.engine = engine
        self.opts = options
        self.reporter: Reporter = reporter or SilentReporter()
        self.owner = make_owner()
        self.by_status: dict[str, int] = {}  # how this worker's jobs ended
        self.inflight: dict[int, tuple[ClaimedJob, asyncio.Task[None]]] = {}
        self.marks: dict[int, JobMarks] = {}  # of in-flight jobs, kept by the engine
        self.lost: set[int] = set()  # seqs whose lease is gone: write nothing for them
        self.cancelled: set[int] = set()
        self.stop_signal: int | None = None
        self.fatal: AvoError | None = None  # a store/engine failure that stopped the worker
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Future[Any] | None = None  # store.wait_for_work in a thread
        self._stop_waiter: asyncio.Future[Any] | None = None  # reused by _wait_any

    # --- entry point ----------------------------------------------------------

    def run(self) -> ExitCode:
        return asyncio.run(self._main())

    async def _main(self) -> ExitCode:
        loop = self._loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if self.opts.handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        heart = asyncio.create_task(self._heartbeat_loop())
        try:
            counts = self.store.counts()
            self.reporter.started(counts.pending + counts.processing)
            await self._drain()
            await self._shutdown()
        finally:
            heart.cancel()
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self.engine.aclose()
            self.reporter.stopped()
        if self.fatal is not None:
            raise self.fatal
        if self.stop_signal == signal.SIGINT:
            return ExitCode.INTERRUPTED
        if self.stop_signal == signal.SIGTERM:
            return ExitCode.TERMINATED
        return ExitCode.OK

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        """Thread-safe: stop as if ``sig`` had arrived (grace period, then hand back)."""
        loop = self._loop
        if loop is None:  # not started yet: it will see the flag and not claim
            self.stop_signal = sig
            self._stop.set()
            return
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing to stop
            loop.call_soon_threadsafe(self._on_signal, sig)

    def wake(self) -> None:
        """Thread-safe: cut an idle back-off short because a job was just queued."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    def _on_signal(self, sig: int) -> None:
        if self.stop_signal is not None:  # second signal: stop waiting for in-flight jobs
            for _, task in self.inflight.values():
                task.cancel()
        self.stop_signal = sig
        self._stop.set()
        self._wake.set()

    # --- the loop ---------------------------------------------------------------

    async def _drain(self) -> None:
        claimed = 0
        idle = IDLE_MIN
        limit = max(1, self.opts.concurrency) + jobs_ahead(self.engine)
        while not self._stop.is_set():
            if self.opts.max_jobs is not None and claimed >= self.opts.max_jobs:
                break
            if len(self.inflight) >= limit:
                await self._wait_any(None)
                continue
            # The claim never returns a job this worker already runs (the store skips
            # the owner's own lapsed leases), so each job has one task here.
            job = self.store.claim(self.owner, self.opts.lease, self.opts.only)
            if job is not None:
                claimed += 1
                idle = IDLE_MIN
                self._start(job)
                if limit == 1:
                    await self._wait_any(None)  # no point polling while the one slot is busy
                continue
            if self.inflight:
                await self._wait_any(idle)
                idle = min(idle * 2, IDLE_MAX)
                continue
            if not self.opts.forever and not self.store.has_active():
                break
            if self.opts.stop_when is not None and self.opts.stop_when():
                break
            due = self.store.next_due()
            delay = idle if due is None else min(idle, max(due, IDLE_MIN))
            if not self.opts.forever:
                # Only other workers' jobs are left: notice their end promptly, since
                # this process exits then (a 2 s back-off cost 4 x 16 workers ~2 s each).
                delay = min(delay, IDLE_DRAIN_MAX)
            await self._sleep(delay + random.uniform(0, delay / 4))
            idle = min(idle * 2, IDLE_MAX)
        if self.inflight and not self._stop.is_set():
            await asyncio.gather(*(t for _, t in self.inflight.values()), return_exceptions=True)
        if self._stop_waiter is not None:
            self._stop_waiter.cancel()

    async def _wait_any(self, timeout: float | None) -> None:
        tasks = [t for _, t in self.inflight.values()]
        if not tasks or any(t.done() for t in tasks):
            return
        # One waiter on the stop event for the whole drain, not a new task per job.
        if self._stop_waiter is None or self._stop_waiter.done():
            self._stop_waiter = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait(
            [*tasks, self._stop_waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        wait_for_work = getattr(self.store, "wait_for_work", None)  # base.WakeUp
        if wait_for_work is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=seconds)
            return
        # A store that can be told about new work (PostgreSQL LISTEN) blocks in a
        # thread; one waiter at a time, reused if a wake-up cut the last sleep short.
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(asyncio.to_thread(wait_for_work, seconds))
        wake: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                [wake, self._listener], timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wake.cancel()
        if self._listener.done() and not self._listener.cancelled():
            self._listener.exception()  # a failed wait is only a missed wake-up: keep polling

    def _start(self, job: ClaimedJob) -> None:
        marks = self.marks[job.seq] = JobMarks()
        task = asyncio.create_task(self._process(job, marks))
        self.inflight[job.seq] = (job, task)
        task.add_done_callback(lambda t: self._forget(job.seq, t))

    def _forget(self, seq: int, task: asyncio.Task[Any] | None) -> None:
        """Free the job's slot, unless the seq was claimed again by a newer task."""
        entry = self.inflight.get(seq)
        if entry is not None and entry[1] is task:
            del self.inflight[seq]
            self.marks.pop(seq, None)

    async def _shutdown(self) -> None:
        if not self.inflight:
            return
        if self.engine.marks_requests:
            # Jobs still waiting for a request slot (held ahead, or queued behind long
            # documents' chunk calls) have cost nothing yet: hand them back now rather
            # than spend the grace period, and slots, starting them.
            for seq, (_, task) in self.inflight.items():
                marks = self.marks.get(seq)
                if marks is not None and not marks.requested:
                    task.cancel()
        tasks = [t for _, t in self.inflight.values()]
        _, pending = await asyncio.wait(tasks, timeout=self.opts.grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # --- one job ---------------------------------------------------------------

    async def _process(self, job: ClaimedJob, marks: JobMarks) -> None:
        job_marks.set(marks)  # this task's context: the engine marks its first request
        started = time.monotonic()
        self.reporter.claimed(job)
        status, detail = "failed", ""
        try:
            status, detail = await self._run_job(job)
        except asyncio.CancelledError:
            status, detail = self._abandon(job)
        except AvoError as exc:
            # The store (disk full, read-only, server gone) or the engine's setup failed:
            # not this job's fault, so do not fail it. Stop the worker, hand the job back
            # if the store still takes a small write (else its lease expires), and let
            # ``run`` raise the error: one line and its exit code, as for any command.
            self.fatal = self.fatal or exc
            self._stop.set()
            self._wake.set()
            with contextlib.suppress(Exception):
                self._write(self.store.release, job)
            status, detail = "released", exc.message
        except Exception as exc:  # an engine bug must not take the worker down
            detail = f"internal error: {type(exc).__name__}: {exc}"
            status = "failed" if self._write(self.store.fail, job, detail[:500]) else "lost"
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.reporter.finished(job, status, time.monotonic() - started, detail)
        # Free the slot now, not one loop turn later in the done callback: the drain
        # loop claims the next job at once instead of waiting on a finished task.
        self._forget(job.seq, asyncio.current_task())

    def _write(self, fn: Callable[..., bool], job: ClaimedJob, *args: object) -> bool:
        if job.seq in self.lost:
            return False
        ok = fn(job.seq, self.owner, *args)
        if not ok:
            self.lost.add(job.seq)
        return ok

    def _abandon(self, job: ClaimedJob) -> tuple[str, str]:
        if job.seq in self.lost:
            return "lost", "lease taken over by another worker"
        if job.seq in self.cancelled:
            self._write(self.store.mark_cancelled, job)
            return "cancelled", "cancelled by request"
        self._write(self.store.release, job)
        return "released", "handed back to the queue"

    async def _run_job(self, job: ClaimedJob) -> tuple[str, str]:
        if job.cancel_requested:
            self._write(self.store.mark_cancelled, job)
            return "cancelled", "cancelled by request"
        if job.attempts > self.opts.max_attempts:
            msg = f"gave up after {job.attempts - 1} attempts (workers were lost mid-job)"
            return ("failed" if self._write(self.store.fail, job, msg) else "lost"), msg
        cache_key = self.engine.cache_key() if self.opts.cache else None
        if cache_key:
            cached = self.store.find_cached(job.sha256, cache_key)
            if cached is not None:
                ok = self._write(
                    self.store.complete,
                    job,
                    cached,
                    json.dumps({"cached": True}),
                    self.engine.source,
                    self.engine.model,
                    cache_key,
                )
                return ("completed" if ok else "lost"), "reused an identical result"
        doc = Document(
            event_id=job.event_id,
            source=job.source,
            text=self.store.content(job.seq),
            attempts=job.attempts,
        )

        def save(cp: str) -> None:
            if not self._write(self.store.save_checkpoint, job, cp):
                raise _LeaseLost  # paused past the lease: stage 2 would be a wasted call

        try:
            outcome = await run_chain(self.engine, doc, job.checkpoint, save)
        except _LeaseLost:
            return "lost", "lease taken over by another worker"
        except JobError as exc:
            if job.seq in self.lost:
                return "lost", exc.message
            if exc.transient and job.attempts < self.opts.max_attempts:
                delay = min(self.opts.retry_cap, self.opts.retry_base * 2 ** (job.attempts - 1))
                delay *= random.uniform(0.75, 1.25)
                ok = self._write(self.store.retry_later, job, delay, exc.message)
                return ("retrying" if ok else "lost"), exc.message
            msg = exc.message
            if exc.transient:
                msg = f"{msg} (gave up after {job.attempts} attempts)"
            spent = None
            if exc.usage:  # stages that finished before the failure still cost money
                spent = json.dumps({**exc.usage, "total": total_usage(exc.usage).as_dict()})
            ok = self._write(self.store.fail, job, msg, spent, self.engine.model)
            return ("failed" if ok else "lost"), msg
        usage = outcome.usage
        usage["total"] = total_usage(usage).as_dict()
        ok = self._write(
            self.store.complete,
            job,
            json.dumps(outcome.result, ensure_ascii=False),
            json.dumps(usage),
            self.engine.source,
            self.engine.model,
            cache_key,
        )
        return ("completed" if ok else "lost"), ""

    # --- leases -----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = max(0.05, self.opts.lease / 3)
        while True:
            await asyncio.sleep(interval)
            held = [
                seq
                for seq, (_, task) in self.inflight.items()
                if seq not in self.lost and not task.done()
            ]
            if not held:
                continue
            try:
                beat = self.store.heartbeat(self.owner, self.opts.lease, held)
            except Exception:  # a busy or failing database: try again next beat
                continue
            for seq in held:
                entry = self.inflight.get(seq)
                if entry is None:
                    continue
                if seq not in beat.alive:
                    self.lost.add(seq)
                    entry[1].cancel()
                elif seq in beat.cancel:
                    self.cancelled.add(seq)
                    entry[1].cancel()
