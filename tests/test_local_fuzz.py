"""Property tests: the offline engine never crashes and keeps its contract on any text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from avo_cli.engines.local import clear_caches, extract_checklist, summarize_text

_PIECES = [
    "# ",
    "## ",
    "### Title ###",
    "<h2>",
    "</h2>",
    "===",
    "---",
    "~~~",
    "```",
    "***",
    "+++",
    "- ",
    "* ",
    "1. ",
    "  - ",
    "    ",
    "\t",
    "> ",
    "> [!NOTE]",
    "| a | b |",
    "|---|---|",
    "+---+",
    "<!--",
    "-->",
    "[x](y)",
    "![i](p)",
    "[ref]: http://e",
    "`",
    "``",
    "**",
    "_",
    "\\",
    "&amp;",
    "<br>",
    "{#id}",
    ".. code-block:: py",
    "::",
    "title: T",
    "\r\n",
    "\n",
    "\n\n",
    "Use tabs.",
    "You must not push.",
    "You should test.",
    "반드시 해야 합니다.",
    "하세요.",
    "것이 좋습니다.",
    "할 것",
    "Why?",
    "For example, x.",
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\u200b",
    "\ufeff",
    "[bold]",
    "가",
    "a",
    " ",
    ".",
    ":",
    ";",
    "—",
]


@st.composite
def documents(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=60))
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(documents())
def test_any_text_keeps_the_contract(text: str) -> None:
    clear_caches()
    summary = summarize_text(text, "doc.md")
    checklist = extract_checklist(text, "doc.md")
    assert summary["title"].strip()
    assert summary["content"].strip()
    assert 1 <= len(summary["key_points"]) <= 7
    assert all(p.strip() for p in summary["key_points"])
    for cat in checklist["categories"]:
        assert cat["name"].strip()
        assert cat["items"]
        for item in cat["items"]:
            assert item["text"].strip()
            assert isinstance(item["required"], bool)
    clear_caches()
    assert summarize_text(text, "doc.md") == summary
    assert extract_checklist(text, "doc.md") == checklist
