"""``avo export``: Markdown task lists that survive hostile text, JSON equal to status.

The Markdown is checked with a real CommonMark parser (markdown-it-py, which
rich already depends on): the headings and list items it finds must be exactly
the categories and checks of the job, and the text it extracts must be the
job's text (made inert), whatever the model wrote.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from avo_cli.export import inline, to_markdown
from avo_cli.files import write_atomic
from avo_cli.output import clean

HOSTILE = [
    "[bold]x[/]",
    "\x1b[31mred\x1b[0m",
    "# heading",
    "- [x] pre-ticked",
    "1. ordered",
    "line one\nline two\n\n### injected",
    "<script>alert(1)</script> &amp; &#35;",
    "*emph* _under_ `code` ~~strike~~ | pipe | ![img](http://x/y.png) [link](http://x)",
    "trailing backslash \\",
    "   ",
    "> quote",
    "===",
]


def job(items: list[tuple[str, list[tuple[str, bool]]]], title: str = "Guide") -> dict[str, Any]:
    n = 0
    cats = []
    for name, its in items:
        out = []
        for text, req in its:
            n += 1
            out.append({"id": n, "text": text, "required": req})
        cats.append({"name": name, "items": out})
    return {
        "event_id": "3f2a9c1e-8d4b-4f6a-9e2b-0c7d5a1b2c3d",
        "status": "completed",
        "message": "Job completed.",
        "result": {
            "summary": {
                "_source": "local_extractive",
                "_model": "avo-local-1",
                "title": title,
                "content": "First paragraph.\n\nSecond # paragraph.",
                "key_points": ["- point one", "[point](two)"],
                "word_count": 5,
            },
            "checklist": {
                "_source": "local_extractive",
                "_model": "avo-local-1",
                "categories": cats,
                "total_items": n,
                "required_items": sum(r for _, its in items for _, r in its),
            },
        },
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def flat(text: str) -> str:
    return " ".join(clean(text).split())


def parse(md: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(headings as (tag, text), checklist item texts) as CommonMark sees them."""
    tokens = MarkdownIt("commonmark").parse(md)
    headings: list[tuple[str, str]] = []
    items: list[str] = []
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            headings.append((tok.tag, _text(tokens[i + 1])))
        elif tok.type == "list_item_open":
            depth += 1
        elif tok.type == "list_item_close":
            depth -= 1
        elif tok.type == "inline" and depth == 1:
            items.append(_text(tok))
    return headings, items


def _text(inline_tok: Any) -> str:
    out = []
    for child in inline_tok.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type in ("strong_open", "strong_close"):
            out.append("**")
        elif child.type in ("em_open", "em_close"):
            out.append("_")
        else:
            out.append(f"<{child.type}>")
    return "".join(out)


def check_structure(j: dict[str, Any]) -> None:
    md = to_markdown(j)
    headings, items = parse(md)
    summary, checklist = j["result"]["summary"], j["result"]["checklist"]
    cats = checklist["categories"]
    assert [h for h, _ in headings] == ["h2"] + ["h3"] * len(cats)
    assert headings[0][1] == (flat(summary["title"]) or "Checklist")
    assert [t for _, t in headings[1:]] == [flat(c["name"]) or "General" for c in cats]
    expected_items = [f"{flat(p)}" for p in summary["key_points"]]
    for cat in cats:
        for item in cat["items"]:
            mark = " **(required)**" if item["required"] else ""
            expected_items.append(f"[ ] {flat(item['text'])}{mark}".rstrip())
    assert [i.rstrip() for i in items] == expected_items


def test_markdown_shape() -> None:
    j = job([("Review", [("Got one approval?", True), ("Small PR?", False)]), ("Tests", [])])
    assert to_markdown(j) == (
        "## Guide\n\n"
        "First paragraph.\n\nSecond \\# paragraph.\n\n"
        "**Key points**\n\n"
        "- \\- point one\n"
        "- \\[point\\](two)\n\n"
        "_2 checks, 1 required · 5 words summarised · avo job "
        "`3f2a9c1e-8d4b-4f6a-9e2b-0c7d5a1b2c3d`_\n\n"
        "### Review\n\n"
        "- [ ] Got one approval? **(required)**\n"
        "- [ ] Small PR?\n\n"
        "### Tests\n"
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_item_text_cannot_break_the_structure(text: str) -> None:
    j = job([(text, [(text, True), ("plain", False)])], title=text)
    check_structure(j)
    md = to_markdown(j)
    assert "\x1b" not in md
    assert "<script>" not in md


# Mostly Markdown's own punctuation, plus any character at all.
MD_CHARS = st.one_of(st.sampled_from(list("ab1 _*#-+=[]()!<>&\\`|~.:\n\t")), st.characters())
md_text = st.text(alphabet=MD_CHARS, max_size=50)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(md_text, st.lists(st.tuples(md_text, st.booleans()), max_size=4)),
        max_size=4,
    ),
    md_text,
)
def test_markdown_round_trips_any_text(
    cats: list[tuple[str, list[tuple[str, bool]]]], title: str
) -> None:
    check_structure(job(cats, title=title))


def test_inline_escapes_line_starts() -> None:
    assert inline("- a") == "\\- a"
    assert inline("+ a") == "\\+ a"
    assert inline("12) a") == "12\\) a"
    assert inline("a\nb\tc") == "a b c"
    assert inline("\x1b]52;c;ZXZpbA==\x07ok") == "ok"


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    tmp_path = tmp_path / "out"
    target = tmp_path / "out.md"
    target.write_text("old", encoding="utf-8")
    old_umask = os.umask(0o022)
    try:
        write_atomic(target, "new ✓\n")
    finally:
        os.umask(old_umask)
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.md"]
    write_atomic(target, "secret", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_atomic_failure_keeps_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    tmp_path = tmp_path / "out"
    target = tmp_path / "out.md"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.md"]


def test_write_atomic_keeps_the_mode_and_caps_it(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    write_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_text() == "new"
    write_atomic(target, b"bytes", mode=0o600)  # a cap narrows...
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"bytes"
    target.chmod(0o400)
    write_atomic(target, "x", mode=0o600)  # ...and never widens
    assert stat.S_IMODE(target.stat().st_mode) == 0o400


def test_write_atomic_through_symlinks_and_into_streams(tmp_path: Path) -> None:
    real = tmp_path / "real" / "target.md"
    real.parent.mkdir()
    chain = tmp_path / "a"
    chain.symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(real)  # dangling until written: the target is created
    write_atomic(chain, "one")
    assert real.read_text() == "one" and chain.is_symlink() and (tmp_path / "b").is_symlink()
    write_atomic(chain, "two")
    assert real.read_text() == "two"
    assert sorted(p.name for p in real.parent.iterdir()) == ["target.md"]
    write_atomic("/dev/null", "into the void")  # a device: written, not replaced
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


# --- through the real CLI -------------------------------------------------------

HOSTILE_DOC = """# Review [bold]rules[/]

## # Merging \x1b[31m
- You must get one approval [bold]x[/] before merging.
- You must not push \x1b[31mdirectly\x1b[0m to main.
- # heading inside an item: you should keep it short.
"""


@pytest.fixture
def done_job(run_avo: Any, doc: Any) -> str:
    path = doc(HOSTILE_DOC)
    proc = run_avo("run", "--engine", "local", str(path))
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["event_id"])


def test_cli_export_md_matches_the_job(run_avo: Any, done_job: str) -> None:
    status = json.loads(run_avo("status", done_job, "--json").stdout)
    proc = run_avo("export", done_job[:8])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == to_markdown(status)
    assert "\x1b" not in proc.stdout
    check_structure(status)
    _headings, items = parse(proc.stdout)
    assert any("[bold]x[/]" in i for i in items)  # literal, as written
    assert (
        len([i for i in items if i.startswith("[ ] ")])
        == (status["result"]["checklist"]["total_items"])
    )


def test_cli_export_json_equals_status_json(run_avo: Any, done_job: str, tmp_path: Path) -> None:
    status = run_avo("status", done_job, "--json").stdout
    out = tmp_path / "job.json"
    proc = run_avo("export", done_job, "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # data went to the file, the message to stderr
    assert out.read_text(encoding="utf-8") == status
    assert json.loads(out.read_text(encoding="utf-8"))["event_id"] == done_job


def test_cli_export_md_to_file(run_avo: Any, done_job: str, tmp_path: Path) -> None:
    out = tmp_path / "checklist.md"
    out.write_text("stale", encoding="utf-8")
    proc = run_avo("-q", "export", done_job, "-o", str(out))
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == ""
    assert out.read_text(encoding="utf-8") == run_avo("export", done_job).stdout
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".checklist")] == []


def test_cli_export_pending_job_is_wrong_state(run_avo: Any, doc: Any) -> None:
    job_id = run_avo("submit", str(doc("# T\n\n- You must x.\n"))).stdout.strip()
    proc = run_avo("export", job_id)
    assert proc.returncode == 5
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("avo: error: job ")
    assert "pending" in proc.stderr and proc.stdout == ""


def test_cli_export_unknown_format(run_avo: Any, done_job: str) -> None:
    proc = run_avo("export", done_job, "--format", "html")
    assert proc.returncode == 2
    assert proc.stderr == "avo: error: unknown format 'html': use one of md, json\n"


# --- -o FILE: symlinks, modes, streams, failures ----------------------------------------


def test_cli_export_writes_through_a_symlink_and_keeps_the_mode(
    run_avo: Any, done_job: str, tmp_path: Path
) -> None:
    real_dir = tmp_path / "dotfiles"
    real_dir.mkdir()
    target = real_dir / "target.md"
    target.write_text("stale", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "link.md"
    link.symlink_to(target)
    proc = run_avo("-q", "export", done_job, "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text(encoding="utf-8") == run_avo("export", done_job).stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    # the temporary file lived next to the target, and is gone
    assert sorted(p.name for p in real_dir.iterdir()) == ["target.md"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".link")) == []


def test_cli_export_to_dev_stdout_writes_the_stream(
    run_avo: Any, done_job: str, tmp_path: Path
) -> None:
    expected = run_avo("export", done_job).stdout
    # first a private link shaped like /dev/stdout: a regression replaces only this one
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    for out in (str(link), "/dev/fd/1", "/dev/stdout"):
        proc = run_avo("-q", "export", done_job, "-o", out)
        assert proc.returncode == 0, (out, proc.stderr)
        assert proc.stdout == expected, out
        assert Path(out).is_symlink(), out  # written through, not replaced by a file
    assert os.readlink(link) == os.readlink("/dev/stdout") == "/proc/self/fd/1"


def test_cli_export_to_a_fifo_writes_into_it(run_avo: Any, done_job: str, tmp_path: Path) -> None:
    import threading

    expected = run_avo("export", done_job).stdout.encode()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = run_avo("-q", "export", done_job, "-o", str(fifo), timeout=60)
    reader.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert got == [expected]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".pipe")) == []


@pytest.mark.parametrize("where", ["missing/dir/out.md", "a_file/out.md", "."])
def test_cli_export_unwritable_path_exits_11(
    run_avo: Any, done_job: str, tmp_path: Path, where: str
) -> None:
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    out = str(tmp_path / where)
    proc = run_avo("export", done_job, "-o", out)
    assert proc.returncode == 11, proc.stderr
    assert proc.stderr.startswith(f"avo: error: cannot write {out}: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_cli_export_read_only_directory_exits_11(
    run_avo: Any, done_job: str, tmp_path: Path
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        proc = run_avo("export", done_job, "-o", str(ro / "out.md"))
    finally:
        ro.chmod(0o700)
    assert proc.returncode == 11
    assert proc.stderr.count("\n") == 1 and "Permission denied" in proc.stderr


def test_cli_export_empty_output_path_is_usage(run_avo: Any, done_job: str) -> None:
    proc = run_avo("export", done_job, "-o", "")
    assert proc.returncode == 2
    assert proc.stderr.startswith("avo: error: ") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""
