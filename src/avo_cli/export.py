"""``avo export``: a finished job as a GitHub-flavoured Markdown task list or JSON.

The Markdown is meant to be pasted into a pull-request template or an issue
body: the summary on top, then one ``### Category`` per group and one
``- [ ] item`` per check, required ones marked ``**(required)**``.

Every string comes from a document or a model, so it is made inert first:
control characters and escape sequences are removed (``output.clean``),
newlines are folded into spaces (an item stays one line), and characters that
Markdown would read as structure or formatting are backslash-escaped. What a
reader sees is the text, never a heading, a link, a checkbox or HTML that
the text smuggled in.
"""

from __future__ import annotations

import re
from typing import Any

from avo_cli.output import clean

FORMATS = ("md", "json")

# Inline punctuation Markdown gives meaning to anywhere in a line. "_" is left out:
# between two letters or digits (snake_case) it cannot start emphasis, so only the
# other ones are escaped (``_UNDERSCORE``).
_INLINE = re.compile(r"([\\`*\[\]<>#|~&!])")
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# What only means something at the start of a line: bullets, setext underlines,
# rules, ordered-list numbers ("1." / "1)").
_LEADING = re.compile(r"^([-+=])")
_ORDERED = re.compile(r"^(\d+)([.)])")


def inline(text: str) -> str:
    """One line of literal text, safe anywhere in Markdown (also inside a list item)."""
    flat = " ".join(clean(text).split())
    escaped = _UNDERSCORE.sub(r"\\_", _INLINE.sub(r"\\\1", flat))
    escaped = _LEADING.sub(r"\\\1", escaped)
    return _ORDERED.sub(r"\1\\\2", escaped)


def paragraphs(text: str) -> str:
    """Literal multi-paragraph text: blank lines are kept, each paragraph is one line."""
    parts = [inline(p) for p in re.split(r"\n\s*\n", clean(text))]
    return "\n\n".join(p for p in parts if p)


def to_markdown(job: dict[str, Any]) -> str:
    """A completed job (``jobview.job_json``) as a GitHub task list."""
    result = job["result"]
    summary, checklist = result["summary"], result["checklist"]
    lines: list[str] = [f"## {inline(summary['title']) or 'Checklist'}", ""]
    body = paragraphs(summary["content"])
    if body:
        lines += [body, ""]
    if summary["key_points"]:
        lines += ["**Key points**", ""]
        lines += [f"- {inline(p)}" for p in summary["key_points"]]
        lines.append("")
    lines += [
        f"_{checklist['total_items']} checks, {checklist['required_items']} required"
        f" · {summary['word_count']} words summarised · avo job `{job['event_id']}`_",
        "",
    ]
    for cat in checklist["categories"]:
        lines += [f"### {inline(cat['name']) or 'General'}", ""]
        for item in cat["items"]:
            mark = " **(required)**" if item["required"] else ""
            lines.append(f"- [ ] {inline(item['text'])}{mark}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
