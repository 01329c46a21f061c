"""Everything that draws on a terminal. Untrusted text is shown as plain text.

rich is imported here only, and this module only when stdout (or, for the
progress bar, stderr) is a terminal. Every string from a document or a model
goes through ``output.clean`` into ``Text`` objects, so markup like ``[bold]``
or ``[/]`` stays literal and escape sequences never reach the terminal.

Colour follows rich, which honours ``NO_COLOR``, ``FORCE_COLOR`` and
``TERM=dumb``. Each ``*_renderables`` function builds the view without
printing it, so tests can draw it on a fixed-width console.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from avo_cli.jobview import job_cost, job_json, usage_totals
from avo_cli.output import clean
from avo_cli.store.base import JobRow

STATUS_STYLE = {
    "pending": "yellow",
    "processing": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, markup=False, emoji=False)


def _t(text: str, style: str = "") -> Text:
    """Untrusted text, inert: no markup, no escapes, no control characters."""
    return Text(clean(text), style=style)


def age(ts: float, now: float | None = None) -> str:
    seconds = max(0, int((time.time() if now is None else now) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def status_text(status: str) -> Text:
    return Text(status, style=f"bold {STATUS_STYLE.get(status, '')}".strip())


def usage_line(row: JobRow) -> str | None:
    """``tokens: 1,234 in / 567 out (2 calls) · cost: $0.0005`` (or ``unpriced``).

    None when the job has no usage yet. Cost comes from ``pricing.cost``;
    a model without a known price is "unpriced", never $0.
    """
    if not row.usage:
        return None
    try:
        usage = json.loads(row.usage)
    except ValueError:
        return None
    if not isinstance(usage, dict):
        return None
    if usage.get("cached"):
        return "tokens: none (reused the result of an identical document)"
    totals = usage_totals(usage)
    if totals is None:
        return None
    prompt, completion, calls = totals
    if not calls:
        return "tokens: none (no model calls)"
    line = f"tokens: {prompt:,} in / {completion:,} out ({calls} call{'s' if calls != 1 else ''})"
    price = job_cost(row.model, totals)
    if price is None:
        line += " · cost: unpriced"
    else:
        line += f" · cost: ${price:.4f}" if price >= 0.0001 or price == 0 else " · cost: <$0.0001"
    return line


def status_renderables(
    row: JobRow, verbose: bool = False, now: float | None = None
) -> list[RenderableType]:
    job = job_json(row)
    head = Text()
    head.append("Job ", style="bold")
    head.append(row.event_id)
    head.append("  ")
    head.append_text(status_text(row.status))
    ages = Text(
        f"created {age(row.created_at, now)} · updated {age(row.updated_at, now)}", style="dim"
    )
    message_style = "red" if row.status == "failed" else ""
    parts: list[RenderableType] = [head, ages, _t(job["message"], message_style)]
    if verbose or row.status != "completed":
        parts.append(
            _t(f"source: {row.source} ({row.size:,} bytes) · attempts: {row.attempts}", "dim")
        )
    if verbose:
        took = ""
        if row.started_at and row.finished_at:
            took = f" · took {max(0.0, row.finished_at - row.started_at):.2f}s"
        parts.append(_t(f"engine: {row.engine or '-'} · model: {row.model or '-'}{took}", "dim"))
    result = job["result"]
    if result:
        summary = result["summary"]
        body: list[RenderableType] = [_t(summary["content"])]
        if summary["key_points"]:
            body.append(Text(""))
            body.append(Text("Key points", style="bold"))
            body.extend(_t(f"• {' '.join(str(p).split())}") for p in summary["key_points"])
        body.append(Text(""))
        body.append(
            _t(
                f"{summary['word_count']} words · {summary['_source']} · {summary['_model']}",
                "dim",
            )
        )
        parts.append(
            Panel(
                Group(*body),
                title=_t(" ".join(summary["title"].split()), "bold"),
                title_align="left",
            )
        )
        checklist = result["checklist"]
        tree = Tree(
            Text(
                f"Checklist: {checklist['total_items']} items, "
                f"{checklist['required_items']} required",
                style="bold",
            )
        )
        for cat in checklist["categories"]:
            branch = tree.add(_t(" ".join(cat["name"].split()), "bold"))
            for item in cat["items"]:
                line = Text(f"{item['id']:>3}. ")
                line.append(clean(" ".join(item["text"].split())))
                if item["required"]:
                    line.append(" (required)", style="bold red")
                branch.add(line)
        parts.append(tree)
    usage = usage_line(row)
    if usage:
        parts.append(Text(f"{usage} · engine: {clean(row.engine or '?')}", style="dim"))
    return parts


def render_status(row: JobRow, verbose: bool = False, out: Console | None = None) -> None:
    out = out or console()
    for part in status_renderables(row, verbose):
        out.print(part)


def list_table(rows: list[JobRow], now: float | None = None) -> RenderableType:
    if not rows:
        return Text("No jobs.", style="dim")
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    # fixed columns keep their width; a long source name is the one that gives way
    table.add_column("event id", no_wrap=True, min_width=8)
    table.add_column("status", no_wrap=True, min_width=10)
    table.add_column("source", overflow="ellipsis", no_wrap=True, max_width=34)
    table.add_column("created", no_wrap=True, min_width=7)
    table.add_column("updated", no_wrap=True, min_width=7)
    for row in rows:
        table.add_row(
            Text(row.event_id[:8]),
            status_text(row.status),
            _t(row.source),
            Text(age(row.created_at, now)),
            Text(age(row.updated_at, now)),
        )
    return table


def render_list(rows: list[JobRow], out: Console | None = None) -> None:
    (out or console()).print(list_table(rows))


def config_table(rows: list[dict[str, Any]], path: str) -> RenderableType:
    table = Table(
        title=_t(f"config file: {path}"),
        title_justify="left",
        show_edge=False,
        header_style="bold",
        pad_edge=False,
    )
    for col in ("setting", "value", "from", "env"):
        table.add_column(col, no_wrap=col != "value")
    for r in rows:
        value = r["value"]
        shown = _t("—", "dim") if value is None else _t(str(value))
        origin = str(r["origin"])
        style = "dim" if origin == "default" else ("cyan" if origin.startswith("env") else "green")
        table.add_row(Text(r["name"]), shown, Text(origin, style=style), Text(r["env"], "dim"))
    return table


def render_config(rows: list[dict[str, Any]], path: str, out: Console | None = None) -> None:
    (out or console()).print(config_table(rows, path))


def watch(
    poll: Callable[[Callable[[JobRow], None]], JobRow],
    verbose: bool = False,
    out: Console | None = None,
) -> JobRow:
    """Redraw a job live (rich ``Live``) until ``poll`` returns the final row.

    ``poll(on_change)`` blocks until the job ends, calling ``on_change`` with
    every fresh row (``waiting.wait_for`` does exactly that).
    """
    from rich.live import Live

    out = out or console()
    with Live(Text("…"), console=out, auto_refresh=False, transient=False) as live:

        def on_change(row: JobRow) -> None:
            # every poll redraws: the status may change, and the ages move on
            live.update(Group(*status_renderables(row, verbose)), refresh=True)

        row = poll(on_change)
        live.update(Group(*status_renderables(row, verbose)), refresh=True)
    return row
