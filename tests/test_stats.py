"""`avo stats` and `status --verbose` cost: totals from real model calls (fake server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from avo_cli.pricing import cost
from conftest import RunAvo, submit_ids
from fake_openai import FakeOpenAI, Reply, error, ok

KEY = "sk-test-stats-0123456789"
DOC = "# Guide\n\n## Review\n- You must get one approval.\n- Keep changes small.\n"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


def _stats(run_avo: RunAvo) -> dict:
    proc = run_avo("stats")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_stats_on_offline_jobs_counts_jobs_and_no_tokens(run_avo: RunAvo, doc: Callable[..., Path]):
    submit_ids(run_avo("submit", str(doc(DOC)), str(doc(DOC + "\nMore.\n", "b.md"))))
    run_avo("work", check=True)
    stats = _stats(run_avo)
    assert stats["jobs"]["completed"] == 2 and stats["jobs"]["total"] == 2
    assert stats["tokens"] == {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
    assert stats["models"] == [] and stats["cost_complete"] is True


def test_stats_totals_tokens_and_cost_of_model_calls(
    run_avo: RunAvo, doc: Callable[..., Path], server: FakeOpenAI
):
    ids = submit_ids(run_avo("submit", str(doc(DOC)), str(doc(DOC + "\nMore.\n", "b.md"))))
    env = {"OPENAI_API_KEY": KEY}
    run_avo("work", "--engine", "openai", "--base-url", server.url, env=env, check=True)
    calls = server.chat_requests
    per_call = Reply().usage  # what the fake server reports for each answer
    stats = _stats(run_avo)
    assert stats["tokens"] == {
        "prompt_tokens": 4 * per_call[0],
        "completion_tokens": 4 * per_call[1],
        "calls": 4,
    }
    assert len(calls) == 4
    (model,) = stats["models"]
    assert model["model"] == "gpt-4o-mini" and model["jobs"] == 2
    expected = cost("gpt-4o-mini", model["prompt_tokens"], model["completion_tokens"])
    assert expected is not None and expected > 0
    assert model["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert stats["cost_usd"] == pytest.approx(expected, abs=1e-6)
    # per job, status --verbose carries the same figures
    per_job = [
        json.loads(run_avo("status", i, "--verbose", "--json").stdout)["details"] for i in ids
    ]
    assert sum(d["usage"]["total"]["calls"] for d in per_job) == 4
    assert sum(d["cost_usd"] for d in per_job) == pytest.approx(expected, abs=1e-5)


def test_unpriced_model_is_never_zero_dollars(
    run_avo: RunAvo, doc: Callable[..., Path], server: FakeOpenAI
):
    (event_id,) = submit_ids(run_avo("submit", str(doc(DOC))))
    run_avo(
        "work",
        "--engine",
        "openai",
        "--base-url",
        server.url,
        "--model",
        "my-local-llm",
        env={"OPENAI_API_KEY": KEY},
        check=True,
    )
    stats = _stats(run_avo)
    assert stats["cost_complete"] is False
    assert stats["unpriced_models"] == ["my-local-llm"]
    assert stats["models"][0]["cost_usd"] is None
    details = json.loads(run_avo("status", event_id, "-v", "--json").stdout)["details"]
    assert details["cost_usd"] is None and details["usage"]["total"]["calls"] == 2
    assert KEY not in run_avo("stats").stdout


def test_a_failed_job_still_counts_what_it_spent(
    run_avo: RunAvo, doc: Callable[..., Path], server: FakeOpenAI
):
    (event_id,) = submit_ids(run_avo("submit", str(doc(DOC))))
    server.push(ok(), error(403, "stage 2 is forbidden"))  # stage 1 answers, stage 2 fails
    proc = run_avo(
        "work", "--engine", "openai", "--base-url", server.url, env={"OPENAI_API_KEY": KEY}
    )
    assert proc.returncode == 0, proc.stderr
    details = json.loads(run_avo("status", event_id, "-v", "--json").stdout)["details"]
    assert details["usage"]["total"]["calls"] == 1
    assert details["model"] == "gpt-4o-mini" and details["cost_usd"] > 0
    stats = _stats(run_avo)
    assert stats["jobs"]["failed"] == 1
    assert stats["tokens"]["calls"] == 1
    assert stats["models"][0]["model"] == "gpt-4o-mini"


def test_unreadable_usage_is_shown_as_unknown_not_a_traceback(
    run_avo: RunAvo, doc: Callable[..., Path], db_path: Path
):
    import sqlite3

    (event_id,) = submit_ids(run_avo("submit", str(doc(DOC))))
    run_avo("work", check=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE jobs SET model = 'gpt-4o-mini', usage = ?",
            ('{"total": {"prompt_tokens": "many", "calls": [1]}}',),
        )
    proc = run_avo("status", event_id, "-v", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["details"]["cost_usd"] is None
    assert _stats(run_avo)["tokens"]["calls"] == 0
