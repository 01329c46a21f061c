"""``--wait``: poll one job until it ends, backing off so waiting costs little."""

from __future__ import annotations

import time

from avo_cli.errors import WaitTimeout
from avo_cli.store.base import TERMINAL, JobRow, Store


def wait_for(
    store: Store, event_id: str, timeout: float | None, on_change: object = None
) -> JobRow:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.05
    while True:
        row = store.get(event_id)
        if callable(on_change):
            on_change(row)
        if row.status in TERMINAL:
            return row
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"job {event_id} still {row.status} after {timeout:g}s")
        pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)
        delay = min(delay * 1.5, 1.0)
