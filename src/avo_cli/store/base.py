"""The job store contract: one interface, one behaviour, every backend.

A job moves ``pending -> processing -> completed | failed`` (or
``cancelled``). A claim hands a job to one worker under a *lease* (owner +
expiry); while a worker holds the lease it renews it with ``heartbeat``.
Every write a worker makes about a claimed job is conditional on still
owning the lease, so a worker that was paused or partitioned past its lease
cannot overwrite the result of the worker that took the job over.

Times are seconds since the epoch (UTC) as floats at this boundary. Backends
shared by several machines take "now" from the database server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
ACTIVE = frozenset({"pending", "processing"})


@dataclass(frozen=True)
class NewJob:
    """A validated document ready to enqueue."""

    event_id: str
    source: str
    size: int
    sha256: str
    text: str


@dataclass
class JobRow:
    """A job as stored: what ``status``, ``list`` and the HTTP API read."""

    seq: int
    event_id: str
    status: str
    source: str
    size: int
    sha256: str
    error: str | None
    result: str | None  # JSON text of {"summary": ..., "checklist": ...}
    usage: str | None  # JSON text; see worker
    attempts: int
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    engine: str | None = None
    model: str | None = None


@dataclass
class ClaimedJob:
    """What a worker gets from ``claim``."""

    seq: int
    event_id: str
    source: str
    sha256: str
    attempts: int  # including this claim
    checkpoint: str | None  # JSON text of the stage-1 draft, if saved
    cancel_requested: bool


@dataclass
class Heartbeat:
    alive: set[int]  # seqs this owner still holds
    cancel: set[int]  # of those, the ones an operator asked to cancel


@dataclass
class Counts:
    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class Store(Protocol):
    """A FIFO job queue with leases. All methods are safe across processes."""

    url: str

    # --- clients ---------------------------------------------------------

    def enqueue(self, jobs: list[NewJob]) -> None:
        """Insert all jobs in one transaction: all are queued or none is."""
        ...

    def resolve(self, ref: str) -> str:
        """Return the full event id for an id or a unique id prefix.

        Raises ``NotFound`` for an unknown, ambiguous or malformed reference.
        """
        ...

    def get(self, ref: str) -> JobRow:
        """The job for an id or unique prefix; raises ``NotFound``."""
        ...

    def recent(self, status: str | None = None, limit: int = 20) -> list[JobRow]:
        """Most recent jobs first (by queue order), optionally of one status."""
        ...

    def counts(self) -> Counts:
        """Number of jobs per status."""
        ...

    def usage_rows(self) -> list[tuple[str | None, str | None]]:
        """(model, usage JSON) of every job that recorded usage, for ``avo stats``."""
        ...

    # --- workers -----------------------------------------------------------

    def claim(
        self, owner: str, lease: float, only: Sequence[str] | None = None
    ) -> ClaimedJob | None:
        """Atomically take the oldest claimable job, or return None.

        Claimable: pending and due (``run_after`` passed), or processing with
        another owner's expired lease. Increments ``attempts``. FIFO by queue
        order. ``only`` restricts the claim to those event ids (``avo run``).
        """
        ...

    def content(self, seq: int) -> str:
        """The document text of a job (immutable once enqueued)."""
        ...

    def heartbeat(self, owner: str, lease: float, seqs: list[int]) -> Heartbeat:
        """Extend the leases ``owner`` still holds among ``seqs``; report which."""
        ...

    def save_checkpoint(self, seq: int, owner: str, checkpoint: str) -> bool:
        """Store the stage-1 draft; False if the lease was lost."""
        ...

    def complete(
        self,
        seq: int,
        owner: str,
        result: str,
        usage: str | None,
        engine: str,
        model: str,
        cache_key: str | None,
    ) -> bool:
        """Mark completed with its result; False (and no write) if the lease was lost."""
        ...

    def fail(
        self,
        seq: int,
        owner: str,
        message: str,
        usage: str | None = None,
        model: str | None = None,
    ) -> bool:
        """Mark failed with a one-line reason (and what the attempt spent, on which
        model, when known); False if the lease was lost."""
        ...

    def retry_later(self, seq: int, owner: str, delay: float, message: str) -> bool:
        """Hand the job back to pending, due after ``delay`` seconds; keeps the checkpoint."""
        ...

    def release(self, seq: int, owner: str) -> bool:
        """Hand a job back untouched (shutdown): pending, due now, attempt not counted."""
        ...

    def mark_cancelled(self, seq: int, owner: str) -> bool:
        """A claimed job whose cancel was requested ends ``cancelled``."""
        ...

    def find_cached(self, sha256: str, cache_key: str) -> str | None:
        """Result JSON of a completed job with the same text and cache key, if any."""
        ...

    def has_active(self) -> bool:
        """True while any job is pending (due or not) or processing, by anyone."""
        ...

    def next_due(self) -> float | None:
        """Seconds until the earliest pending job is due or lease expires; None if none."""
        ...

    # --- operators ---------------------------------------------------------

    def retry(self, refs: list[str]) -> list[str]:
        """failed/cancelled -> pending (checkpoint kept). All-or-nothing; ``WrongState``."""
        ...

    def cancel(self, refs: list[str]) -> list[tuple[str, str]]:
        """pending -> cancelled at once; processing -> cancelled at its next heartbeat.

        Returns (event_id, new status or "cancelling"). All-or-nothing; ``WrongState``.
        """
        ...

    def purge(self, older_than: float, statuses: list[str]) -> int:
        """Delete terminal jobs last updated more than ``older_than`` seconds ago."""
        ...

    def close(self) -> None: ...


class WakeUp(Protocol):
    """Optional: a store that can tell an idle worker new work arrived.

    PostgreSQL implements it with LISTEN/NOTIFY (enqueue, retry and release
    notify). The worker calls it through ``asyncio.to_thread`` instead of its
    plain sleep; a store without it (SQLite) is polled. It may return early
    and spuriously; returning late is bounded by ``timeout``.
    """

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if woken by new work."""
        ...
