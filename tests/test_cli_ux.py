"""The command line as people and scripts meet it: terminals, pipes, codes, help.

Terminal behaviour is tested on real pseudo-terminals (``pty``): the progress
bar and the rendered views must appear there, and never in a pipe, a dumb
terminal or a CI log.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from avo_cli.errors import EXIT_CODE_HELP, ExitCode
from conftest import ROOT, avo_cmd
from fake_openai import FakeOpenAI, error, hang

ESC = "\x1b"
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-9](;|m)")

GUIDE = "# Review guide\n\n## Merging\n- You must get one approval.\n- Keep pull requests small.\n"


class Tty:
    """avo with stdout and/or stderr on a pseudo-terminal (100x30), read as it draws."""

    def __init__(
        self,
        *args: str,
        stdout_tty: bool = False,
        stderr_tty: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", **(env or {})}
        self.proc = subprocess.Popen(
            avo_cmd(*args),
            stdin=subprocess.DEVNULL,
            stdout=slave if stdout_tty else subprocess.PIPE,
            stderr=slave if stderr_tty else subprocess.PIPE,
            env=full_env,
        )
        os.close(slave)
        self.master = master
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed its end
                return
            if not data:
                return
            self.chunks.append(data)

    def screen(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in CSI.sub("", self.screen()):
            assert self.proc.poll() is None, f"exited before drawing {text!r}: {self.screen()!r}"
            assert time.monotonic() < deadline, f"never drew {text!r}: {self.screen()!r}"
            time.sleep(0.02)

    def finish(self, timeout: float = 120) -> tuple[int, str, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.reader.join(timeout=10)
        os.close(self.master)
        return (
            self.proc.returncode,
            self.screen(),
            (out or b"").decode("utf-8", "replace"),
            (err or b"").decode("utf-8", "replace"),
        )


def tty_run(
    *args: str,
    stdout_tty: bool = False,
    stderr_tty: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, str, str, str]:
    """(exit code, what the terminal showed, piped stdout, piped stderr)."""
    return Tty(*args, stdout_tty=stdout_tty, stderr_tty=stderr_tty, env=env).finish(timeout)


@pytest.fixture
def three_docs(doc: Any) -> list[str]:
    return [str(doc(GUIDE.replace("Review", f"Review {i}"), f"g{i}.md")) for i in range(3)]


def submit(run_avo: Any, *files: str) -> list[str]:
    proc = run_avo("submit", *files)
    assert proc.returncode == 0, proc.stderr
    return list(proc.stdout.split())


def one_line_error(stderr: str) -> bool:
    return stderr.startswith("avo: error: ") and stderr.count("\n") == 1


# --- avo work: progress bar on a terminal, log lines elsewhere -----------------------------


@pytest.mark.slow
def test_work_draws_a_progress_bar_when_stderr_is_a_terminal(
    run_avo: Any, three_docs: list[str]
) -> None:
    submit(run_avo, *three_docs)
    code, screen, out, _ = tty_run("work", "--engine", "local", stderr_tty=True)
    assert code == 0
    assert out == ""  # nothing on stdout: work prints no data
    assert "━" in screen and "3/3" in screen and "jobs/s" in screen
    assert "\x1b[?25l" in screen  # rich hid the cursor while drawing
    assert "3 job(s) in" in screen and "(3 completed)" in screen


def test_work_logs_plain_lines_when_stderr_is_piped(run_avo: Any, three_docs: list[str]) -> None:
    ids = submit(run_avo, *three_docs)
    proc = run_avo("work", "--engine", "local")
    assert proc.returncode == 0 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 4
    assert {line.split()[1] for line in lines[:3]} == {i[:8] for i in ids}
    assert all(re.match(r"completed  [0-9a-f]{8}  \S+g\d\.md  \d+\.\d\ds$", ln) for ln in lines[:3])
    assert re.match(r"3 job\(s\) in \d+\.\d\ds \(3 completed\)$", lines[3])
    assert ESC not in proc.stderr and "━" not in proc.stderr


@pytest.mark.slow
def test_work_on_a_dumb_terminal_logs_plain_lines(run_avo: Any, three_docs: list[str]) -> None:
    submit(run_avo, *three_docs)
    code, screen, _, _ = tty_run("work", "--engine", "local", stderr_tty=True, env={"TERM": "dumb"})
    assert code == 0
    assert ESC not in screen and "━" not in screen, repr(screen)
    assert screen.count("completed  ") == 3, repr(screen)


def test_quiet_silences_messages_before_or_after_the_command(
    run_avo: Any, three_docs: list[str]
) -> None:
    submit(run_avo, three_docs[0])
    proc = run_avo("-q", "work", "--engine", "local")
    assert proc.returncode == 0 and proc.stderr == ""
    submit(run_avo, three_docs[1])
    proc = run_avo("work", "--engine", "local", "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""
    # data still flows, errors still speak
    assert len(run_avo("-q", "submit", three_docs[2]).stdout.split()) == 1
    proc = run_avo("status", "-q", "00000000")
    assert proc.returncode == 4 and one_line_error(proc.stderr)


# --- human views on a terminal, data in a pipe -----------------------------------------------


@pytest.fixture
def done_id(run_avo: Any, doc: Any) -> str:
    proc = run_avo("run", "--engine", "local", str(doc(GUIDE)))
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["event_id"])


@pytest.mark.slow
def test_status_renders_on_a_terminal_and_prints_json_in_a_pipe(run_avo: Any, done_id: str) -> None:
    code, screen, _, err = tty_run("status", done_id[:6], stdout_tty=True)
    assert code == 0 and err == ""
    assert COLOUR.search(screen)
    text = CSI.sub("", screen)
    assert "╭─ Review guide" in text and "Checklist: 2 items" in text
    assert "(required)" in text and "tokens: none (no model calls)" in text
    piped = run_avo("status", done_id[:6])
    assert json.loads(piped.stdout)["event_id"] == done_id and ESC not in piped.stdout


@pytest.mark.slow
def test_no_color_and_dumb_terminal_are_honoured(run_avo: Any, done_id: str) -> None:
    code, screen, _, _ = tty_run("status", done_id, stdout_tty=True, env={"NO_COLOR": "1"})
    assert code == 0 and "╭─ Review guide" in CSI.sub("", screen)
    assert not COLOUR.search(screen)
    code, screen, _, _ = tty_run("status", done_id, stdout_tty=True, env={"TERM": "dumb"})
    assert code == 0 and ESC not in screen
    assert json.loads(screen)["event_id"] == done_id  # a dumb terminal gets the data


@pytest.mark.slow
def test_config_show_is_a_table_on_a_terminal(run_avo: Any) -> None:
    key = "sk-live-0123456789abcdefWXYZ"
    code, screen, _, _ = tty_run(
        "config", "show", stdout_tty=True, env={"OPENAI_API_KEY": key, "AVO_MODEL": "gpt-4o"}
    )
    assert code == 0
    text = CSI.sub("", screen)
    assert "setting" in text and "from" in text
    assert re.search(r"model\s+│ gpt-4o\s+│ env AVO_MODEL", text)
    assert "sk-****WXYZ" in text and key not in screen


def test_force_color_never_decorates_data_or_logs(run_avo: Any, doc: Any) -> None:
    env: dict[str, str | None] = {"FORCE_COLOR": "1"}
    (job,) = submit(run_avo, str(doc(GUIDE)))
    work = run_avo("work", "--engine", "local", env=env)
    assert work.returncode == 0 and ESC not in work.stderr and "━" not in work.stderr
    for args in (("status", job), ("list",), ("config", "show"), ("export", job)):
        proc = run_avo(*args, env=env)
        assert proc.returncode == 0 and ESC not in proc.stdout, args
    assert json.loads(run_avo("status", job, env=env).stdout)["status"] == "completed"


@pytest.mark.slow
def test_list_table_with_coloured_statuses(run_avo: Any, done_id: str, doc: Any) -> None:
    submit(run_avo, str(doc("# Other\n\n- You must wait.\n", "other.md")))
    code, screen, _, _ = tty_run("list", stdout_tty=True)
    assert code == 0
    assert "event id" in screen and done_id[:8] in screen
    assert "\x1b[1;32mcompleted" in screen and "\x1b[1;33mpending" in screen


@pytest.mark.slow
def test_watch_live_on_a_terminal_until_the_job_ends(run_avo: Any, doc: Any) -> None:
    (job,) = submit(run_avo, str(doc(GUIDE)))
    watcher = Tty("watch", job[:8], stdout_tty=True)
    watcher.wait_for("Job is queued.")  # drawn while waiting
    assert run_avo("work", "--engine", "local").returncode == 0
    code, screen, _, _ = watcher.finish(timeout=60)
    assert code == 0
    text = CSI.sub("", screen)
    assert "Job completed." in text and "Checklist: 2 items" in text


@pytest.mark.slow
def test_follow_in_a_pipe_prints_json_lines_per_change(run_avo: Any, doc: Any) -> None:
    (job,) = submit(run_avo, str(doc(GUIDE)))
    follower = subprocess.Popen(
        avo_cmd("status", job, "--follow", "--timeout", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    first = follower.stdout.readline()  # the follower has seen the job before work starts
    assert run_avo("work", "--engine", "local").returncode == 0
    rest, err = follower.communicate(timeout=60)
    out = first + rest
    assert follower.returncode == 0, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert objs[0]["status"] == "pending" and objs[-1]["status"] == "completed"
    final = json.loads(run_avo("status", job, "--json").stdout)
    assert objs[-1] == final


def test_watch_times_out_with_code_7(run_avo: Any, doc: Any) -> None:
    (job,) = submit(run_avo, str(doc(GUIDE)))
    proc = run_avo("watch", job, "--timeout", "0.3")
    assert proc.returncode == 7 and one_line_error(proc.stderr)


# --- avo run -------------------------------------------------------------------------------


def test_run_json_lines_equal_status_objects(run_avo: Any, three_docs: list[str]) -> None:
    proc = run_avo("run", "--engine", "local", *three_docs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line, path in zip(lines, three_docs, strict=True):
        obj = json.loads(line)
        assert line == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))  # compact
        status = run_avo("status", obj["event_id"], "--json").stdout
        assert obj == json.loads(status)
        assert obj["result"]["summary"]["title"] == Path(path).read_text().splitlines()[0][2:]


@pytest.mark.slow
def test_run_on_a_terminal_renders(run_avo: Any, three_docs: list[str]) -> None:
    code, screen, _, _ = tty_run("run", "--engine", "local", three_docs[0], stdout_tty=True)
    assert code == 0 and "╭─ Review 0 guide" in CSI.sub("", screen)
    code, screen, _, _ = tty_run(
        "run", "--json", "--engine", "local", three_docs[1], stdout_tty=True
    )
    assert code == 0 and json.loads(screen)["status"] == "completed"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


def openai_env(server: FakeOpenAI) -> dict[str, str | None]:
    return {"OPENAI_API_KEY": "sk-test-0123456789abcdef", "OPENAI_BASE_URL": server.url}


def test_run_exits_1_when_a_job_fails(run_avo: Any, doc: Any, server: FakeOpenAI) -> None:
    server.push(error(400, "bad request"))
    proc = run_avo("run", "--engine", "openai", str(doc(GUIDE)), env=openai_env(server))
    assert proc.returncode == 1
    obj = json.loads(proc.stdout)
    assert obj["status"] == "failed" and obj["result"] is None
    assert proc.stderr.splitlines()[-1] == "1 of 1 job(s) did not complete"


@pytest.mark.slow
def test_run_does_not_wait_for_unrelated_forever_work(
    run_avo: Any, doc: Any, server: FakeOpenAI
) -> None:
    (other,) = submit(run_avo, str(doc("# Slow\n\n- You must wait.\n", "slow.md")))
    server.default = hang(60)
    env = {**os.environ, **{k: v for k, v in openai_env(server).items() if v}}
    forever = subprocess.Popen(
        avo_cmd("-q", "work", "--forever", "--engine", "openai", "--grace", "0"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while json.loads(run_avo("status", other).stdout)["status"] != "processing":
            assert time.monotonic() < deadline, "the --forever worker never claimed its job"
            time.sleep(0.1)
        proc = run_avo("run", "--engine", "local", str(doc(GUIDE)), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["status"] == "completed"
        assert json.loads(run_avo("status", other).stdout)["status"] == "processing"
    finally:
        forever.send_signal(signal.SIGTERM)
        assert forever.wait(timeout=30) == ExitCode.TERMINATED
    assert json.loads(run_avo("status", other).stdout)["status"] == "pending"  # handed back


# --- exit codes: one per code a user can cause, one line on stderr ---------------------------


def _corrupt_db(db: Path) -> None:
    db.write_bytes(b"this is not a database" * 100)


@pytest.mark.parametrize(
    ("code", "args", "setup"),
    [
        (ExitCode.USAGE, ("work", "--concurrency", "0"), None),
        (ExitCode.USAGE, ("status",), None),
        (ExitCode.BAD_INPUT, ("submit", "/nonexistent/guide.md"), None),
        (ExitCode.NOT_FOUND, ("status", "ffffffff"), "job"),
        (ExitCode.WRONG_STATE, ("retry", "{job}"), "job"),
        (ExitCode.DATABASE, ("status", "ffffffff"), "corrupt"),
        (ExitCode.TIMEOUT, ("status", "{job}", "--wait", "--timeout", "0.2"), "job"),
        (ExitCode.ENGINE, ("work", "--engine", "gpt"), None),
        (ExitCode.BACKEND, ("list", "--db", "postgresql://avo@127.0.0.1:1/nothing"), None),
        (ExitCode.CONFIG, ("work",), "bad-config"),
    ],
    ids=lambda v: v.name if isinstance(v, ExitCode) else None,
)
def test_user_errors_exit_with_their_code_and_one_line(
    run_avo: Any, doc: Any, db_path: Path, code: ExitCode, args: tuple[str, ...], setup: str | None
) -> None:
    env: dict[str, str | None] = {}
    job = ""
    if setup == "job":
        job = submit(run_avo, str(doc(GUIDE)))[0]
    elif setup == "corrupt":
        _corrupt_db(db_path)
    elif setup == "bad-config":
        env["AVO_TIMEOUT"] = "soon"
    proc = run_avo(*(a.format(job=job) for a in args), env=env)
    assert proc.returncode == code, proc.stderr
    assert one_line_error(proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_job_failed_code_1(run_avo: Any, doc: Any, db_path: Path) -> None:
    (job,) = submit(run_avo, str(doc(GUIDE)))
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE jobs SET status = 'failed', error = 'boom'")
    proc = run_avo("status", job, "--wait")
    assert proc.returncode == ExitCode.JOB_FAILED
    assert json.loads(proc.stdout)["message"] == "Job failed: boom"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_exit_130_and_143_and_hand_the_job_back(
    run_avo: Any, doc: Any, server: FakeOpenAI, sig: signal.Signals
) -> None:
    (job,) = submit(run_avo, str(doc(GUIDE)))
    server.default = hang(60)
    env = {**os.environ, **{k: v for k, v in openai_env(server).items() if v}}
    worker = subprocess.Popen(
        avo_cmd("work", "-q", "--engine", "openai", "--grace", "0"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not server.chat_requests:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(sig)
    out, err = worker.communicate(timeout=30)
    expected = ExitCode.INTERRUPTED if sig == signal.SIGINT else ExitCode.TERMINATED
    assert worker.returncode == expected, err
    assert out == "" and "Traceback" not in err
    assert json.loads(run_avo("status", job).stdout)["status"] == "pending"


def test_every_exit_code_is_listed_in_help_and_readme(run_avo: Any) -> None:
    help_text = run_avo("--help").stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code, text in EXIT_CODE_HELP.items():
        assert re.search(rf"^\s+{int(code)}  {re.escape(text)}$", help_text, re.M), code
        assert re.search(rf"^\| {int(code)}\b", readme, re.M) or f"{int(code)} /" in readme, code


# --- help: every command has an example --------------------------------------------------------


def _commands() -> list[tuple[str, ...]]:
    from typer.main import get_command

    from avo_cli.cli import app

    root = get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(root, ())
    return found


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(cli: Any, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"avo {' '.join(path)} --help has no example"
    assert "-q, --quiet" in result.output or path == ()


# --- examples/: the jq one-liners, the Makefile and the CI step really work ----------------------

VENV_BIN = str(Path(sys.executable).parent)


def _shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **env}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", markdown, re.S)


def test_jq_one_liners(run_avo: Any, done_id: str) -> None:
    blocks = _sh_blocks((ROOT / "examples" / "jq.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    for block in blocks:
        proc = _shell(block.replace("ID", done_id[:8]), ROOT)
        assert proc.returncode == 0, (block, proc.stderr)
        if "--status failed" not in block:  # no failed jobs here: empty is right
            assert proc.stdout.strip() not in ("", "null", "[]"), (block, proc.stdout)
    required = _shell(blocks[0].replace("ID", done_id), ROOT).stdout.splitlines()
    job = json.loads(run_avo("status", done_id).stdout)
    items = [i for c in job["result"]["checklist"]["categories"] for i in c["items"]]
    assert required == [i["text"] for i in items if i["required"]] and required


@pytest.mark.slow
def test_makefile_target_builds_once(tmp_path: Path, isolated: Path) -> None:
    (tmp_path / "CONTRIBUTING.md").write_text(GUIDE, encoding="utf-8")
    make = f"make -f {ROOT / 'examples' / 'Makefile'} checklist"  # AVO_DB: the test's queue
    first = _shell(make, tmp_path, AVO_ENGINE="local")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "build" / "checklist"
    md = (out / "CHECKLIST.md").read_text(encoding="utf-8")
    assert md.startswith("## Review guide\n") and "- [ ] You must get one approval." in md
    assert sorted(p.name for p in out.iterdir()) == ["CHECKLIST.md", "jobs.jsonl"]
    again = _shell(make, tmp_path, AVO_ENGINE="local")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout


def _workflow_step(name: str) -> str:
    """The ``run: |`` script of a named step in the example workflow (no YAML library)."""
    lines = (
        (ROOT / "examples" / "github-actions" / "guideline-checklist.yml")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    start = next(i for i, ln in enumerate(lines) if ln.strip() == f"- name: {name}")
    run_at = next(i for i in range(start, len(lines)) if lines[i].strip() == "run: |")
    indent = len(lines[run_at]) - len(lines[run_at].lstrip()) + 2
    body = []
    for ln in lines[run_at + 1 :]:
        if ln.strip() and len(ln) - len(ln.lstrip()) < indent:
            break
        body.append(ln[indent:])
    return "\n".join(body)


@pytest.mark.slow
def test_github_actions_step_produces_the_artefact(tmp_path: Path) -> None:
    script = _workflow_step("Turn CONTRIBUTING.md into a checklist")
    assert "avo run CONTRIBUTING.md" in script
    (tmp_path / "CONTRIBUTING.md").write_text(GUIDE, encoding="utf-8")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    summary = tmp_path / "step-summary.md"
    proc = _shell(
        script,
        tmp_path,
        RUNNER_TEMP=str(runner_temp),
        GITHUB_STEP_SUMMARY=str(summary),
        OPENAI_API_KEY="",  # a fork without the secret: the offline engine takes over
        NO_COLOR="1",
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "checklist"
    checklist = json.loads((out / "job.jsonl").read_text(encoding="utf-8"))["result"]["checklist"]
    assert checklist["total_items"] == 2
    assert proc.stdout == f"2 checks, {checklist['required_items']} required\n"
    assert sorted(p.name for p in out.iterdir()) == ["CHECKLIST.md", "checklist.json", "job.jsonl"]
    job = json.loads((out / "checklist.json").read_text(encoding="utf-8"))
    assert job == json.loads((out / "job.jsonl").read_text(encoding="utf-8"))
    assert summary.read_text(encoding="utf-8") == (out / "CHECKLIST.md").read_text(encoding="utf-8")
    assert (runner_temp / "avo.db").exists()


def test_quickstart_script(tmp_path: Path) -> None:
    proc = _shell(str(ROOT / "examples" / "quickstart.sh"), tmp_path, AVO_DB=str(tmp_path / "q.db"))
    assert proc.returncode == 0, proc.stderr
    objs = [json.loads(o) for o in re.findall(r"\{.*?\}", proc.stdout, re.S)]
    assert len(objs) == 2 and all(o["status"] == "completed" and o["items"] > 0 for o in objs)
