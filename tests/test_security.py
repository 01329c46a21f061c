"""Security: hostile text stays inert, the API key never leaks, files are private, SQL is bound.

Hostile documents and model answers go through the real CLI, a real worker and
the fake model server; terminal output is checked through ``avo_cli.render``
with a forced-terminal rich Console and through a real pty.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pty
import re
import secrets
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import reliability_report
from fake_openai import FakeOpenAI, Reply, answer_for, content, error
from reliability_report import Figures, account, avo_cmd, child_env, job, run, submit

pytestmark = pytest.mark.slow
reliability = reliability_report.reliability  # the fixture that tallies the figures

ROOT = Path(__file__).resolve().parent.parent

OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # would write "echo pwned" to the clipboard
RED = "\x1b[31m"
HOSTILE = [
    "[bold]bold?[/bold] and [/] and [link=https://evil.example]click[/link]",
    f"evil{RED}red{OSC52}after",
    "title\x1b[2J\x1b[Hcleared\x9b31mC1",
    "\u202eevil.exe\u202c right-to-left override",
    "zero\u200bwidth\u200djoin\ufeffbom",
    "long " + "x" * 20_000,
    ":thumbs_up: emoji code and <script>alert(1)</script>",
]


def hostile_answer(body: dict[str, Any]) -> Reply:
    """A valid answer whose every text field is hostile."""
    draft = answer_for(body)
    if "categories" in draft:
        draft = {
            "categories": [
                {"name": HOSTILE[0], "items": [{"text": t, "required": True} for t in HOSTILE]},
                {"name": HOSTILE[1], "items": [{"text": "plain", "required": False}]},
            ]
        }
    else:
        draft = {"title": HOSTILE[1], "content": " ".join(HOSTILE), "key_points": HOSTILE}
    return Reply(kind="content", content=json.dumps(draft, ensure_ascii=False))


def visible(text: str) -> str:
    """What a person sees: rich's own SGR colour codes removed, nothing else."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def assert_inert(out: str) -> None:
    assert "\x1b]" not in out and "\x07" not in out, "an OSC sequence reached the terminal"
    assert "\x1b[2J" not in out and "\x1b[H" not in out and "\x9b" not in out
    assert RED + "red" not in out
    shown = visible(out)
    assert "\x1b" not in shown, "an escape sequence other than rich's colours got through"
    assert "evilredafter" in shown  # the text around the escapes is still shown
    assert "[bold]bold?[/bold]" in shown and "[/]" in shown  # markup is literal text
    assert "[link=https://evil.example]" in shown
    assert "\u202eevil.exe" in shown and "zero\u200bwidth" in shown  # shown as they are
    assert ":thumbs_up:" in shown


@pytest.fixture
def hostile_job(tmp_path: Path, isolated: Path) -> str:
    doc = tmp_path / "hostile.md"
    doc.write_text("# Guide\n\n" + "\n".join(f"- {h}" for h in HOSTILE) + "\n", encoding="utf-8")
    (event_id,) = submit([doc])
    with FakeOpenAI() as fake:
        fake.default = hostile_answer
        proc = run(
            "work", "--engine", "openai", "--base-url", fake.url, env={"OPENAI_API_KEY": "sk-x"}
        )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr
    return event_id


def test_hostile_model_output_round_trips_in_json(
    hostile_job: str, isolated: Path, reliability: Figures
) -> None:
    proc = run("status", hostile_job, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["result"]
    assert result["summary"]["title"] == HOSTILE[1]
    assert result["summary"]["key_points"] == HOSTILE
    assert result["summary"]["content"] == " ".join(HOSTILE)
    items = result["checklist"]["categories"][0]["items"]
    assert [i["text"] for i in items] == HOSTILE
    assert result["checklist"]["categories"][0]["name"] == HOSTILE[0]
    reliability.bad_inputs += len(HOSTILE)
    account(isolated, [hostile_job], reliability)


def test_hostile_model_output_is_inert_on_a_terminal(hostile_job: str, isolated: Path) -> None:
    from rich.console import Console

    from avo_cli.render import status_renderables
    from avo_cli.store import open_store

    store = open_store(str(isolated), create=False)
    row = store.get(hostile_job)
    store.close()
    buf = io.StringIO()
    console = Console(
        file=buf, force_terminal=True, color_system="truecolor", width=20_100, emoji=True
    )
    for part in status_renderables(row, verbose=True):
        console.print(part)
    assert_inert(buf.getvalue())


def read_pty(args: list[str], env: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a real pseudo-terminal; return (code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_hostile_output_through_a_real_terminal(hostile_job: str, isolated: Path) -> None:
    env = child_env({"TERM": "xterm-256color", "COLUMNS": "20100", "FORCE_COLOR": None})
    code, out = read_pty(avo_cmd("status", hostile_job, "--verbose"), env)
    assert code == 0, out
    assert_inert(out)


def test_hostile_file_names_and_error_messages(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    name = tmp_path / f"name{RED}with[bold]markup[red].md"
    name.write_text("# Title\n- a rule\n", encoding="utf-8")
    (event_id,) = submit([name])
    with FakeOpenAI() as fake:
        fake.push(error(400, f"bad request {OSC52} {RED}[bold]boom[/]"))
        proc = run(
            "work", "--engine", "openai", "--base-url", fake.url, env={"OPENAI_API_KEY": "sk-x"}
        )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert job(isolated, event_id)["status"] == "failed"
    env = child_env({"TERM": "xterm-256color", "COLUMNS": "300"})
    for args in (["status", event_id], ["list"]):
        code, out = read_pty(avo_cmd(*args), env)
        assert code == 0, out
        shown = visible(out)
        assert "\x1b" not in shown and "\x07" not in shown
        assert "[bold]" in shown or args[0] == "list"  # list shortens long names
    listed = json.loads(run("list", "--json").stdout)
    assert listed[0]["source"] == str(name)  # JSON keeps the exact name
    reliability.bad_inputs += 2


# --- secrets ------------------------------------------------------------------------


def test_api_key_never_reaches_disk_logs_or_output(
    tmp_path: Path, isolated: Path, reliability: Figures
) -> None:
    key = f"sk-test-{secrets.token_hex(16)}"
    env = {"OPENAI_API_KEY": key}
    outputs: list[str] = []

    def avo(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = run(*args, env=env, **kw)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    docs = reliability_report.write_docs(tmp_path / "docs", 4)
    ids = [avo("submit", str(d)).stdout.strip() for d in docs]
    with FakeOpenAI() as fake:
        # ok; a 401 that echoes the key (as real servers do); 429s that echo it until the
        # tries run out; a garbage answer that quotes it (twice: the repair round-trip too).
        limited = error(
            429,
            f"Rate limit reached for {key}",
            "rate_limit_exceeded",
            "requests",
            {"retry-after": "0"},
        )
        fake.push(
            Reply(),
            Reply(),
            error(401, f"Incorrect API key provided: {key}.", "invalid_api_key"),
            *[limited] * 4,
            content(f"not json {key}"),
            content(f"still not json {key}"),
        )
        work = avo(
            "work",
            "--engine",
            "openai",
            "--base-url",
            fake.url,
            "--max-attempts",
            "1",
            "--concurrency",
            "1",
        )
        assert work.returncode == 0, work.stderr
        assert any(r.headers.get("authorization") == f"Bearer {key}" for r in fake.requests)
        # The engine refusing to start (bad base URL) mentions no key either.
        avo("work", "--engine", "openai", "--base-url", "ftp://nowhere")
    statuses = {job(isolated, e)["status"] for e in ids}
    assert statuses == {"completed", "failed"}, statuses
    for event_id in ids:
        avo("status", event_id, "--verbose", "--json")
        code, out = read_pty(avo_cmd("status", event_id, "--verbose"), child_env(env))
        assert code == 0, out
        outputs.append(out)
    avo("list", "--json")
    avo("list")
    avo("config", "show")
    avo("config", "show", "--json")
    # A worker that was killed leaves its -wal/-shm behind: grep those too.
    with FakeOpenAI(latency=30) as slow:
        (extra,) = submit([docs[0]])
        ids.append(extra)
        w = reliability_report.spawn(
            "work", "--engine", "openai", "--base-url", slow.url, "--no-cache", env=env
        )
        with reliability_report.reaped(w):
            reliability_report.wait_until(lambda: len(slow.requests) >= 1, what="a model call")
            os.kill(w.pid, 9)
            w.wait(timeout=10)
        reliability.faults += 1
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in written), [p.name for p in written]
    for path in written:
        assert key.encode() not in path.read_bytes(), f"API key found in {path}"
        assert key[8:].encode() not in path.read_bytes(), f"API key tail found in {path}"
    for text in outputs:
        assert key not in text and key[8:] not in text
    failed = [job(isolated, e) for e in ids if job(isolated, e)["status"] == "failed"]
    assert failed and all(row["error"] for row in failed)
    reliability.faults += 3
    reliability.submitted += len(ids)
    reliability.completed += sum(job(isolated, e)["status"] == "completed" for e in ids)


def test_database_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AVO_DB")  # the default location in the user's data dir
    doc = reliability_report.write_docs(tmp_path / "docs", 1)[0]
    old = os.umask(0o000)  # even a permissive umask must not make the database readable
    try:
        (event_id,) = submit([doc])
    finally:
        os.umask(old)
    db = Path(os.environ["XDG_DATA_HOME"]) / "avo" / "avo.db"
    assert db.exists()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) & 0o077 == 0
    # -wal and -shm, while a connection is open, are as private as the database.
    from avo_cli.store import open_store

    store = open_store(str(db))
    try:
        store.get(event_id)
        for suffix in ("-wal", "-shm"):
            side = Path(str(db) + suffix)
            if side.exists():
                assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side
    finally:
        store.close()


# --- SQL is parameterised: an audit of the store modules ---------------------------------

#: Names that may be interpolated into SQL text: fixed fragments, never data.
FIXED_FRAGMENTS = {
    "_JOB_COLUMNS",  # module constant: the column list
    "NOW",  # module constant: the server clock expression (PostgreSQL)
    "CHANNEL",  # module constant: the LISTEN/NOTIFY channel name
    "BUSY_TIMEOUT_MS",  # module constant int
    "len(MIGRATIONS)",  # an int
    "marks",  # ",".join("?" * n): placeholders only
    "qs",  # same
    "assignments",  # a literal from the caller; checked below
}
SQL_START = re.compile(
    r"^\s*(SELECT|UPDATE|INSERT|DELETE|WITH|PRAGMA|LISTEN|NOTIFY|CREATE|DROP|ALTER)\b", re.I
)


def _sql_fstrings(tree: ast.AST) -> list[ast.JoinedStr]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            if isinstance(first, ast.Constant) and SQL_START.match(str(first.value)):
                found.append(node)
    return found


def test_sql_only_interpolates_fixed_fragments() -> None:
    files = sorted((ROOT / "src" / "avo_cli" / "store").glob("*.py"))
    assert any(f.name == "sqlite.py" for f in files)
    problems: list[str] = []
    checked = 0
    for path in files:
        source = path.read_text()
        tree = ast.parse(source)
        module_constants = {
            t.id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for fstring in _sql_fstrings(tree):
            checked += 1
            for part in fstring.values:
                if not isinstance(part, ast.FormattedValue):
                    continue
                expr = ast.unparse(part.value)
                if expr not in FIXED_FRAGMENTS:
                    problems.append(f"{path.name}:{fstring.lineno}: interpolates {expr}")
                elif expr in module_constants and not isinstance(
                    module_constants[expr], ast.Constant | ast.JoinedStr
                ):
                    problems.append(f"{path.name}: {expr} is not a constant")
        for node in ast.walk(tree):
            # "..." % x or "...".format(x) building SQL
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and SQL_START.match(str(node.left.value))
            ):
                problems.append(f"{path.name}:{node.lineno}: %-formatted SQL")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
                and SQL_START.match(str(node.func.value.value))
            ):
                problems.append(f"{path.name}:{node.lineno}: .format() SQL")
            # placeholders: marks/qs are built from "?" or "%s" only
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("marks", "qs") for t in node.targets
            ):
                text = ast.unparse(node.value)
                if not re.fullmatch(
                    r"""', '\.join\(.*\)|','\.join\((['"])(\?|%s)\1 \* len\(\w+\)\)""", text
                ):
                    problems.append(f"{path.name}:{node.lineno}: placeholders built as {text}")
            # _owned_update(seq, owner, <assignments>, ...) gets a literal
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_owned_update"
            ):
                assignments = node.args[2] if len(node.args) > 2 else None
                if not isinstance(assignments, ast.Constant):
                    problems.append(f"{path.name}:{node.lineno}: non-literal assignments")
    assert checked >= 10, checked
    assert not problems, problems
