"""Everything that draws on a terminal. Untrusted text is shown as plain text.

rich is imported here only, and only when stdout is a terminal. Every string
from a document or a model goes through ``output.clean`` and into ``Text``
objects, so markup like ``[bold]`` or ``[/]`` stays literal and escape
sequences never reach the terminal.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from avo_cli.jobview import job_json
from avo_cli.output import clean
from avo_cli.store.base import JobRow

STATUS_STYLE = {
    "pending": "yellow",
    "processing": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def console() -> Console:
    return Console(highlight=False, markup=False, emoji=False)


def _t(text: str, style: str = "") -> Text:
    return Text(clean(text), style=style)


def age(ts: float) -> str:
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def status_renderables(row: JobRow, verbose: bool = False) -> list[Any]:
    job = job_json(row)
    head = Text()
    head.append("Job ", style="bold")
    head.append(row.event_id)
    head.append("  ")
    head.append(row.status, style=f"bold {STATUS_STYLE.get(row.status, '')}")
    head.append(f"  created {age(row.created_at)}, updated {age(row.updated_at)}", style="dim")
    parts: list[Any] = [head, _t(job["message"])]
    if verbose or row.status != "completed":
        parts.append(
            _t(f"source: {row.source} ({row.size} bytes), attempts: {row.attempts}", "dim")
        )
    result = job["result"]
    if result:
        summary = result["summary"]
        body: list[Any] = [_t(summary["content"])]
        if summary["key_points"]:
            body.append(Text(""))
            body.append(Text("Key points", style="bold"))
            body.extend(_t(f"• {p}") for p in summary["key_points"])
        body.append(
            Text(
                f"\n{summary['word_count']} words · {summary['_source']} "
                f"· {clean(summary['_model'])}",
                style="dim",
            )
        )
        parts.append(Panel(Group(*body), title=_t(summary["title"], "bold"), title_align="left"))
        checklist = result["checklist"]
        tree = Tree(
            Text(
                f"Checklist: {checklist['total_items']} items, "
                f"{checklist['required_items']} required",
                style="bold",
            )
        )
        for cat in checklist["categories"]:
            branch = tree.add(_t(cat["name"], "bold"))
            for item in cat["items"]:
                line = Text(f"{item['id']:>3}. ")
                line.append(clean(item["text"]))
                if item["required"]:
                    line.append("  required", style="bold red")
                branch.add(line)
        parts.append(tree)
    if verbose and row.usage:
        usage = json.loads(row.usage)
        total = usage.get("total") or {}
        if total:
            parts.append(
                _t(
                    f"tokens: {total.get('prompt_tokens', 0)} in, "
                    f"{total.get('completion_tokens', 0)} out, "
                    f"{total.get('calls', 0)} calls",
                    "dim",
                )
            )
    return parts


def render_status(row: JobRow, verbose: bool = False) -> None:
    out = console()
    for part in status_renderables(row, verbose):
        out.print(part)


def render_list(rows: list[JobRow]) -> None:
    out = console()
    if not rows:
        out.print(Text("No jobs.", style="dim"))
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("event id", "status", "source", "created", "updated"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            Text(row.event_id),
            Text(row.status, style=STATUS_STYLE.get(row.status, "")),
            _t(row.source),
            Text(age(row.created_at)),
            Text(age(row.updated_at)),
        )
    out.print(table)
