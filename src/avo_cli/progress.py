"""How ``avo work`` reports to people: one plain line per job on stderr."""

from __future__ import annotations

import time

from avo_cli import output
from avo_cli.store.base import ClaimedJob


class LineReporter:
    """One line per finished job; made for logs, CI and pipes."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.t0 = time.monotonic()

    def started(self, total: int) -> None:
        self.total = total
        self.t0 = time.monotonic()

    def claimed(self, job: ClaimedJob) -> None:
        pass

    def finished(self, job: ClaimedJob, status: str, seconds: float, detail: str) -> None:
        self.done += 1
        line = f"{status:<10} {job.event_id[:8]}  {job.source}  {seconds:.2f}s"
        if detail:
            line += f"  {detail}"
        output.info(line)

    def stopped(self) -> None:
        elapsed = time.monotonic() - self.t0
        if self.done:
            output.info(f"{self.done} job(s) in {elapsed:.2f}s")


def make_reporter() -> LineReporter:
    return LineReporter()
