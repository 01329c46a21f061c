"""End to end: avo submit -> avo work --engine openai -> avo status, against the fake server.

The happy path runs the real CLI in subprocesses; the retry scenarios run it
in-process (typer's runner) so the engine's back-off can be shrunk.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from avo_cli.engines.openai_engine import OpenAIEngine
from conftest import RunAvo, status_json, submit_ids
from fake_openai import FakeOpenAI, error, ok, server_error

KEY = "sk-test-SECRET-e2e-0123456789abcdef"

DOC = """# Code Review Guide

## Review
- You must get one approval before merging.
- Keep pull requests small.

## Tests
- You must run the test suite.
"""


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def fast_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OpenAIEngine, "request_tries", 2)
    monkeypatch.setattr(OpenAIEngine, "backoff_base", 0.01)
    monkeypatch.setattr(OpenAIEngine, "backoff_max", 0.02)
    monkeypatch.setattr(OpenAIEngine, "backoff_jitter", 0.01)


def db_bytes(db_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


def test_submit_work_status(
    run_avo: RunAvo, doc: Callable[..., Path], db_path: Path, server: FakeOpenAI
) -> None:
    ids = submit_ids(run_avo("submit", str(doc(DOC)), str(doc(DOC + "\n- Also this.\n", "b.md"))))
    assert len(ids) == 2
    proc = run_avo(
        "work", "--engine", "openai", "--base-url", server.url, env={"OPENAI_API_KEY": KEY}
    )
    assert proc.returncode == 0, proc.stderr
    for event_id in ids:
        job = status_json(run_avo, event_id)
        assert job["status"] == "completed", job
        summary, checklist = job["result"]["summary"], job["result"]["checklist"]
        assert summary["_source"] == checklist["_source"] == "openai_gpt"
        assert summary["_model"] == "gpt-4o-mini"
        assert summary["title"] == "Code Review Guide"
        assert checklist["total_items"] >= 3 and checklist["required_items"] == 2
    reqs = server.chat_requests
    assert len(reqs) == 4  # two chat calls per job
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in reqs)
    assert all(r.body["response_format"]["type"] == "json_schema" for r in reqs)
    assert KEY.encode() not in db_bytes(db_path)
    assert b"SECRET" not in db_bytes(db_path)
    assert KEY not in proc.stdout + proc.stderr


def test_local_server_needs_no_key(
    run_avo: RunAvo, doc: Callable[..., Path], server: FakeOpenAI
) -> None:
    ids = submit_ids(run_avo("submit", str(doc(DOC))))
    proc = run_avo("work", "--engine", "openai", "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    assert status_json(run_avo, ids[0])["status"] == "completed"
    assert server.chat_requests[0].headers["authorization"] == "Bearer not-needed"


def test_no_key_no_base_url_is_an_engine_error(run_avo: RunAvo, doc: Callable[..., Path]) -> None:
    submit_ids(run_avo("submit", str(doc(DOC))))
    proc = run_avo("work", "--engine", "openai")
    assert proc.returncode == 8
    assert "OPENAI_API_KEY" in proc.stderr


def job_of(cli: Callable[..., Any], event_id: str) -> dict[str, Any]:
    result = cli("status", event_id, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_500_forever_ends_failed_with_clear_message(
    cli: Callable[..., Any],
    doc: Callable[..., Path],
    db_path: Path,
    server: FakeOpenAI,
    fast_engine: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.default = server_error()
    submitted = cli("submit", str(doc(DOC)))
    assert submitted.exit_code == 0, submitted.output
    event_id = submitted.stdout.split()[0]
    worked = cli("work", "--engine", "openai", "--base-url", server.url, "--max-attempts", "2")
    assert worked.exit_code == 0, worked.output
    job = job_of(cli, event_id)
    assert job["status"] == "failed"
    assert "HTTP 500" in job["message"] and "gave up after 2 attempts" in job["message"]
    assert len(server.chat_requests) == 4  # 2 tries per request x 2 job attempts
    assert b"SECRET" not in db_bytes(db_path)


def test_auth_failure_fails_without_leaking_the_key(
    cli: Callable[..., Any],
    doc: Callable[..., Path],
    db_path: Path,
    server: FakeOpenAI,
    fast_engine: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.default = error(401, f"Incorrect API key provided: {KEY}.", "invalid_api_key")
    event_id = cli("submit", str(doc(DOC))).stdout.split()[0]
    cli("work", "--engine", "openai", "--base-url", server.url)
    job = job_of(cli, event_id)
    assert job["status"] == "failed"
    assert "authentication failed" in job["message"]
    assert len(server.chat_requests) == 1  # not retried
    assert b"SECRET" not in db_bytes(db_path)


def test_checkpoint_skips_stage_one_on_retry(
    cli: Callable[..., Any],
    doc: Callable[..., Path],
    server: FakeOpenAI,
    fast_engine: None,
) -> None:
    # stage 1 answers, stage 2 fails transiently (both tries), the job is retried
    server.push(ok(), server_error(), server_error())
    event_id = cli("submit", str(doc(DOC))).stdout.split()[0]
    worked = cli("work", "--engine", "openai", "--base-url", server.url)
    assert worked.exit_code == 0, worked.output
    job = job_of(cli, event_id)
    assert job["status"] == "completed", job
    kinds = [r.body["response_format"]["json_schema"]["name"] for r in server.chat_requests]
    assert kinds == [
        "guideline_summary",
        "guideline_checklist",
        "guideline_checklist",
        "guideline_checklist",  # the retry went straight to stage 2
    ]


def test_worker_runs_jobs_concurrently(
    run_avo: RunAvo, doc: Callable[..., Path], server: FakeOpenAI
) -> None:
    server.latency = 0.5
    files = [str(doc(DOC + f"\n- Rule number {i}.\n", f"d{i}.md")) for i in range(40)]
    assert len(submit_ids(run_avo("submit", *files))) == 40
    proc = run_avo("work", "--engine", "openai", "--base-url", server.url, "--concurrency", "20")
    assert proc.returncode == 0, proc.stderr
    assert len(server.chat_requests) == 80
    assert server.max_in_flight >= 15
    drain = re.findall(r"job\(s\) in ([\d.]+)s", proc.stderr)
    assert drain, proc.stderr
    # 80 calls x 0.5 s / 20 = 2 s ideal; serialised it would be 40 s
    assert float(drain[-1]) < 10, proc.stderr


def test_fast_exit_keeps_every_line_and_the_exit_code(
    tmp_path: Path, doc: Callable[..., Path], server: FakeOpenAI
) -> None:
    """Once openai is loaded the CLI skips interpreter teardown (os._exit): stdout to a
    block-buffered file must still hold every job, and the exit code must be kept."""
    import os
    import subprocess

    from conftest import avo_cmd

    files = [str(doc(DOC + f"\n- Rule number {i}.\n", f"d{i}.md")) for i in range(30)]
    server.push(*[ok()] * 58, error(400, "bad request"))  # the last call fails for good
    marker = tmp_path / "teardown-ran"
    # an atexit handler that only a normal interpreter exit would run
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).touch)\n"
    )
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": path}
    out = tmp_path / "out.jsonl"
    with out.open("w") as fh:
        proc = subprocess.run(
            avo_cmd("run", *files, "--engine", "openai", "--base-url", server.url),
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    assert proc.returncode == 1, proc.stderr  # one job failed: avo run exits 1
    lines = out.read_text().splitlines()
    assert len(lines) == 30
    statuses = sorted(json.loads(line)["status"] for line in lines)
    assert statuses == ["completed"] * 29 + ["failed"]
    assert not marker.exists(), "interpreter teardown ran: the fast exit was not taken"
    assert "Traceback" not in proc.stderr
