"""How ``avo work`` reports to people, on stderr.

Two implementations of the worker's ``Reporter`` protocol:

* ``LineReporter``: one plain line per finished job, for logs, CI and pipes;
* ``RichReporter``: a live progress bar (jobs done / total, rate, ETA, the
  document being worked on), only when stderr is a terminal.

``make_reporter`` picks one. rich is imported only on the terminal path, so a
worker in CI never loads it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from avo_cli import output
from avo_cli.store.base import ClaimedJob

if TYPE_CHECKING:
    from rich.console import Console

#: statuses after which a job will not come back to this run
FINAL = frozenset({"completed", "failed", "cancelled"})


def _line(job: ClaimedJob, status: str, seconds: float, detail: str) -> str:
    source = " ".join(output.clean(job.source).split())  # one line per job, whatever the name
    line = f"{status:<10} {job.event_id[:8]}  {source}  {seconds:.2f}s"
    if detail:
        line += f"  {' '.join(output.clean(detail).split())}"
    return line


def _summary(counts: dict[str, int], elapsed: float) -> str:
    done = sum(counts.values())
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{done} job(s) in {elapsed:.2f}s ({parts})" if parts else f"0 jobs in {elapsed:.2f}s"


class LineReporter:
    """One line per finished job; made for logs, CI and pipes."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.counts: dict[str, int] = {}
        self.t0 = time.monotonic()

    def started(self, total: int) -> None:
        self.total = total
        self.t0 = time.monotonic()

    def claimed(self, job: ClaimedJob) -> None:
        pass

    def finished(self, job: ClaimedJob, status: str, seconds: float, detail: str) -> None:
        self.done += 1
        self.counts[status] = self.counts.get(status, 0) + 1
        output.info(_line(job, status, seconds, detail))

    def stopped(self) -> None:
        if self.done:
            output.info(_summary(self.counts, time.monotonic() - self.t0))


class RichReporter:
    """A progress bar on a terminal: done / total, rate, ETA, current document.

    Jobs that end are also printed above the bar (failures in red) so the
    scrollback keeps a record once the bar is gone.
    """

    STYLE: ClassVar[dict[str, str]] = {
        "completed": "green",
        "failed": "red",
        "cancelled": "magenta",
        "retrying": "yellow",
    }

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console(stderr=True, highlight=False, markup=False, emoji=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[current]}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}", markup=False),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self.task: Any = None
        self.active: dict[int, str] = {}
        self.counts: dict[str, int] = {}
        self.done = 0
        self.t0 = time.monotonic()

    def _fields(self) -> tuple[str, str]:
        """(current document, rate) for the two text columns."""
        current = next(reversed(self.active.values()), "") if self.active else "idle"
        if len(self.active) > 1:
            current = f"{current} (+{len(self.active) - 1})"
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = f"{self.done / elapsed:.2f} jobs/s" if self.done else "-- jobs/s"
        return f"{current[:28]:<28}", rate  # a fixed-width column keeps the bar steady

    def _refresh(self, current: str | None = None) -> None:
        doc, rate = self._fields()
        self.progress.update(self.task, completed=self.done, current=current or doc, rate=rate)
        self.progress.refresh()  # lines printed above the bar redraw it from this frame

    def started(self, total: int) -> None:
        self.t0 = time.monotonic()
        self.progress.start()
        doc, rate = self._fields()
        self.task = self.progress.add_task("work", total=max(total, 0), current=doc, rate=rate)

    def claimed(self, job: ClaimedJob) -> None:
        self.active[job.seq] = " ".join(output.clean(job.source).split())
        self._refresh()

    def finished(self, job: ClaimedJob, status: str, seconds: float, detail: str) -> None:
        from rich.text import Text

        self.active.pop(job.seq, None)
        self.counts[status] = self.counts.get(status, 0) + 1
        if status in FINAL:
            self.done += 1
        if self.done > (self.progress.tasks[0].total or 0):  # jobs submitted while we work
            self.progress.update(self.task, total=self.done)
        self._refresh()
        self.progress.console.print(
            Text(_line(job, status, seconds, detail), style=self.STYLE.get(status, "dim"))
        )

    def stopped(self) -> None:
        if self.task is not None:
            self._refresh(current=f"{'done':<28}")
        self.progress.stop()
        self.console.print(_summary(self.counts, time.monotonic() - self.t0), markup=False)


def make_reporter() -> LineReporter | RichReporter:
    """A progress bar when stderr is a terminal (and not silenced), else log lines."""
    if output.stderr_is_tty() and not output.is_quiet():
        return RichReporter()
    return LineReporter()
