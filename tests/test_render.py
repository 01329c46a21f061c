"""Terminal views drawn on a fixed-width forced terminal; snapshots of the text.

Escape sequences are stripped before comparing, so the snapshots show what a
person reads; separate assertions check colour is there (or not, NO_COLOR) and
that hostile text from a model stays literal.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from rich.console import Console

from avo_cli import render
from avo_cli.store.base import JobRow

NOW = 1_800_000_000.0
SGR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, and the cursor moves of Live

RESULT: dict[str, Any] = {
    "summary": {
        "_source": "openai",
        "_model": "gpt-4o-mini",
        "title": "Code [bold]Review[/]",
        "content": "Keep changes small.\x1b[31m Review within a day.",
        "key_points": ["One approval", "# not a heading"],
        "word_count": 42,
    },
    "checklist": {
        "_source": "openai",
        "_model": "gpt-4o-mini",
        "categories": [
            {
                "name": "Review",
                "items": [
                    {"id": 1, "text": "Got one approval?", "required": True},
                    {"id": 2, "text": "PR under 400 lines? [/]", "required": False},
                ],
            }
        ],
        "total_items": 2,
        "required_items": 1,
    },
}
USAGE = {
    "summary": {"prompt_tokens": 1200, "completion_tokens": 300, "calls": 1},
    "checklist": {"prompt_tokens": 1500, "completion_tokens": 500, "calls": 1},
    "total": {"prompt_tokens": 2700, "completion_tokens": 800, "calls": 2},
}


def make_row(**kw: Any) -> JobRow:
    base: dict[str, Any] = {
        "seq": 1,
        "event_id": "3f2a9c1e-8d4b-4f6a-9e2b-0c7d5a1b2c3d",
        "status": "completed",
        "source": "CONTRIBUTING.md",
        "size": 1234,
        "sha256": "x",
        "error": None,
        "result": json.dumps(RESULT),
        "usage": json.dumps(USAGE),
        "attempts": 1,
        "created_at": NOW - 3700,
        "updated_at": NOW - 65,
        "engine": "openai",
        "model": "gpt-4o-mini",
    }
    base.update(kw)
    return JobRow(**base)


def draw(renderables: list[Any] | Any, width: int = 80) -> str:
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width,
        force_terminal=True,
        color_system="truecolor",
        highlight=False,
        markup=False,
        emoji=False,
    )
    for part in renderables if isinstance(renderables, list) else [renderables]:
        console.print(part)
    return buf.getvalue()


def plain(raw: str) -> str:
    return "\n".join(line.rstrip() for line in SGR.sub("", raw).splitlines())


STATUS_SNAPSHOT = """\
Job 3f2a9c1e-8d4b-4f6a-9e2b-0c7d5a1b2c3d  completed
created 1h ago · updated 1m ago
Job completed.
╭─ Code [bold]Review[/] ───────────────────────────────────────────────────────╮
│ Keep changes small. Review within a day.                                     │
│                                                                              │
│ Key points                                                                   │
│ • One approval                                                               │
│ • # not a heading                                                            │
│                                                                              │
│ 42 words · openai · gpt-4o-mini                                              │
╰──────────────────────────────────────────────────────────────────────────────╯
Checklist: 2 items, 1 required
└── Review
    ├──   1. Got one approval? (required)
    └──   2. PR under 400 lines? [/]
tokens: 2,700 in / 800 out (2 calls) · cost: $0.0009 · engine: openai"""


def test_status_view_snapshot() -> None:
    raw = draw(render.status_renderables(make_row(), now=NOW))
    assert plain(raw) == STATUS_SNAPSHOT


def test_status_view_is_coloured_and_untrusted_text_is_inert() -> None:
    raw = draw(render.status_renderables(make_row(), now=NOW))
    assert "\x1b[1;32mcompleted" in raw  # the status is green and bold
    assert "\x1b[1;31m (required)" in raw  # required items stand out
    # the document's own escape sequence never reaches the terminal
    assert "\x1b[31m Review" not in raw
    assert "Keep changes small. Review within a day." in raw
    # markup in model output is printed, not interpreted
    assert "Code [bold]Review[/]" in raw


def test_status_view_without_colour_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    raw = draw(render.status_renderables(make_row(), now=NOW))
    assert not re.search(r"\x1b\[[0-9;]*3[0-9](;|m)", raw), "colour codes despite NO_COLOR"
    assert plain(raw) == STATUS_SNAPSHOT  # the same layout, only uncoloured


def test_unpriced_model_says_unpriced_never_zero_dollars() -> None:
    raw = plain(draw(render.status_renderables(make_row(model="llama3.1:8b"), now=NOW)))
    assert "cost: unpriced" in raw
    assert "$0" not in raw


def test_cached_result_and_missing_usage() -> None:
    cached = plain(draw(render.status_renderables(make_row(usage='{"cached": true}'), now=NOW)))
    assert "tokens: none (reused the result of an identical document)" in cached
    none = plain(draw(render.status_renderables(make_row(usage=None), now=NOW)))
    assert "tokens:" not in none
    offline = {"summary": {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}}
    offline["total"] = offline["summary"]
    local = plain(draw(render.status_renderables(make_row(usage=json.dumps(offline)), now=NOW)))
    assert "tokens: none (no model calls)" in local and "cost" not in local


def test_pending_job_shows_source_and_no_panel() -> None:
    row = make_row(status="pending", result=None, usage=None, created_at=NOW - 5, updated_at=NOW)
    text = plain(draw(render.status_renderables(row, now=NOW)))
    assert text == (
        "Job 3f2a9c1e-8d4b-4f6a-9e2b-0c7d5a1b2c3d  pending\n"
        "created 5s ago · updated 0s ago\n"
        "Job is queued.\n"
        "source: CONTRIBUTING.md (1,234 bytes) · attempts: 1"
    )


LIST_SNAPSHOT = """\
event id ┃ status     ┃ source                             ┃ created ┃ updated
━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━
3f2a9c1e │ completed  │ CONTRIBUTING.md                    │ 1h ago  │ 1m ago
9bc1aaaa │ failed     │ docs/a-very-long-name-for-a-secur… │ 1d ago  │ 5s ago"""


def test_list_table_snapshot_and_coloured_statuses() -> None:
    rows = [
        make_row(),
        make_row(
            seq=2,
            event_id="9bc1aaaa-0000-4000-8000-000000000000",
            status="failed",
            source="docs/a-very-long-name-for-a-security-policy-document.md",
            result=None,
            created_at=NOW - 90000,
            updated_at=NOW - 5,
        ),
    ]
    raw = draw(render.list_table(rows, now=NOW))
    assert plain(raw) == LIST_SNAPSHOT
    assert "\x1b[1;32mcompleted" in raw and "\x1b[1;31mfailed" in raw


def test_list_table_empty() -> None:
    assert plain(draw(render.list_table([], now=NOW))) == "No jobs."


def test_list_hostile_source_is_inert() -> None:
    raw = draw(render.list_table([make_row(source="\x1b]52;c;ZXZpbA==\x07x[red]y.md")], now=NOW))
    assert "\x1b]52" not in raw
    assert "x[red]y.md" in plain(raw)


CONFIG_SNAPSHOT = """\
config file: /home/u/.config/avo/config.toml
setting ┃ value       ┃ from               ┃ env
━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━
engine  │ local       │ config file        │ AVO_ENGINE
api_key │ sk-****abcd │ env OPENAI_API_KEY │ OPENAI_API_KEY
lang    │ —           │ default            │ AVO_OUTPUT_LANG"""


def test_config_table_snapshot() -> None:
    rows = [
        {"name": "engine", "value": "local", "origin": "config file", "env": "AVO_ENGINE"},
        {
            "name": "api_key",
            "value": "sk-****abcd",
            "origin": "env OPENAI_API_KEY",
            "env": "OPENAI_API_KEY",
        },
        {"name": "lang", "value": None, "origin": "default", "env": "AVO_OUTPUT_LANG"},
    ]
    assert plain(draw(render.config_table(rows, "/home/u/.config/avo/config.toml"))) == (
        CONFIG_SNAPSHOT
    )


def test_watch_redraws_until_the_job_ends() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system="truecolor")
    states = [
        make_row(status="pending", result=None, usage=None),
        make_row(status="processing", result=None, usage=None),
        make_row(),
    ]

    def poll(on_change: Any) -> JobRow:
        for row in states:
            on_change(row)
        return states[-1]

    final = render.watch(poll, out=console)
    assert final.status == "completed"
    text = SGR.sub("", buf.getvalue())
    # every state was drawn, the last one stays on screen
    assert "Job is queued." in text and "Job is being processed." in text
    assert text.rstrip().endswith("engine: openai")


def test_progress_reporter_counts_and_keeps_a_log_above_the_bar() -> None:
    from avo_cli.progress import RichReporter
    from avo_cli.store.base import ClaimedJob

    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system="truecolor")
    reporter = RichReporter(console=console)
    reporter.started(3)
    jobs = [
        ClaimedJob(1, "aaaaaaaa-1", "a.md", "x", 1, None, False),
        ClaimedJob(2, "bbbbbbbb-2", "evil\x1b]52;c;ZXZpbA==\x07[red]b.md", "x", 1, None, False),
        ClaimedJob(3, "cccccccc-3", "c.md", "x", 1, None, False),
    ]
    for job in jobs:
        reporter.claimed(job)
    reporter.finished(jobs[0], "completed", 0.5, "")
    frames = SGR.sub("", buf.getvalue()).replace("\r", "\n")
    assert "completed  aaaaaaaa  a.md  0.50s" in frames
    assert "1/3" in frames.split("completed  aaaaaaaa")[-1]  # the bar moved on at once
    reporter.finished(jobs[1], "retrying", 0.1, "rate limited")  # not done: it comes back
    reporter.finished(jobs[2], "failed", 0.2, "bad\nrequest")
    reporter.stopped()
    raw = buf.getvalue()
    text = SGR.sub("", raw).replace("\r", "\n")
    assert "\x1b]52" not in raw and "evil[red]b.md" in text
    assert "failed     cccccccc  c.md  0.20s  bad request" in text
    assert "\x1b[31mfailed" in raw  # failures stand out in red
    assert "2/3" in text.splitlines()[-2]  # one job is still due to be retried
    last = text.splitlines()[-1]
    assert re.fullmatch(r"3 job\(s\) in \d+\.\d\ds \(1 completed, 1 failed, 1 retrying\)", last)


def test_verbose_adds_source_engine_and_duration() -> None:
    row = make_row(started_at=NOW - 100, finished_at=NOW - 97.5)
    text = plain(draw(render.status_renderables(row, verbose=True, now=NOW)))
    assert "source: CONTRIBUTING.md (1,234 bytes) · attempts: 1" in text
    assert "engine: openai · model: gpt-4o-mini · took 2.50s" in text
    assert "took" not in plain(draw(render.status_renderables(row, now=NOW)))


def test_failed_job_message_in_red_and_inert() -> None:
    row = make_row(status="failed", result=None, usage=None, error="HTTP 400 \x1b[2J[b]x[/b]")
    raw = draw(render.status_renderables(row, now=NOW))
    assert "\x1b[2J" not in raw
    assert "\x1b[31mJob failed: HTTP 400 [b]x[/b]" in raw
