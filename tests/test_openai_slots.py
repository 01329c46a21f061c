"""Request slots and the overlapping chain of long documents (real client, fake server).

``--concurrency N`` bounds the model requests in flight across every job and
every chunk of a long document; a long document whose checklist is written in
chunks runs those chunk calls alongside its summary's map and reduce calls.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai  # noqa: F401  (imported up front so timed tests do not pay for it)
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from avo_cli.chain import ChainOutcome, run_chain
from avo_cli.engines.base import Document
from avo_cli.engines.openai_engine import OpenAIEngine
from avo_cli.errors import PermanentJobError, TransientJobError
from conftest import RunAvo, StubEngine, status_json, submit_ids
from fake_openai import FakeOpenAI, Recorded, Reply, error, schema_name

KEY = "sk-test-SECRET-slots-0123456789"

SHORT = "# Short Guide\n\n## Review\n- You must get one approval.\n- Keep changes small.\n"


def long_doc(sections: int = 8) -> str:
    parts = ["# Big Guide\n\nIntro paragraph about the whole guide.\n"]
    for i in range(sections):
        filler = " ".join(f"word{i}x{j}" for j in range(90))
        parts.append(f"## Section {i}\n\n{filler}\n\n- You must follow rule {i}.\n")
    return "\n".join(parts)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


def make_engine(srv: FakeOpenAI, **kw: Any) -> OpenAIEngine:
    kw.setdefault("api_key", KEY)
    kw.setdefault("timeout", 10.0)
    kw.setdefault("context_tokens", 700)  # ~350-token chunks: a long_doc() has many
    return OpenAIEngine(base_url=srv.url, **kw)


def doc(text: str, event_id: str = "e1") -> Document:
    return Document(event_id=event_id, source="guide.md", text=text)


def chain_all(engine: OpenAIEngine, docs: list[Document]) -> list[ChainOutcome]:
    """Run the chain on every document at once, then close the engine."""

    async def go() -> list[ChainOutcome]:
        try:
            return list(await asyncio.gather(*(run_chain(engine, d, None, None) for d in docs)))
        finally:
            await engine.aclose()

    return asyncio.run(go())


def chain_one(
    engine: OpenAIEngine,
    d: Document,
    checkpoint: str | None = None,
    save: Callable[[str], None] | None = None,
) -> ChainOutcome:
    async def go() -> ChainOutcome:
        try:
            return await run_chain(engine, d, checkpoint, save)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def is_checklist(r: Recorded) -> bool:
    return schema_name(r.body) == "guideline_checklist"


def is_reduce(r: Recorded) -> bool:
    return "<partial_summaries>" in r.body["messages"][-1]["content"]


def by_stage(
    delays: dict[str, float], fail: str | None = None
) -> Callable[[dict[str, Any]], Reply]:
    """Answer each stage after its own delay; ``fail`` gets a permanent 400 at once."""

    def reply(body: dict[str, Any]) -> Reply:
        stage = schema_name(body)
        if stage == fail:
            return error(400, f"{stage} rejected")
        return Reply(delay=delays.get(stage, 0.0))

    return reply


# --- slots ----------------------------------------------------------------------------------


def test_requests_in_flight_never_exceed_concurrency(server: FakeOpenAI) -> None:
    server.latency = 0.1
    engine = make_engine(server, concurrency=3)
    docs = [doc(long_doc(), "long1"), doc(long_doc(6), "long2")]
    docs += [doc(SHORT + f"- Rule {i}.\n", f"s{i}") for i in range(6)]
    outcomes = chain_all(engine, docs)  # eight jobs at once, two of them fanning out
    assert len(outcomes) == 8
    assert server.max_in_flight == 3, server.max_in_flight
    assert len(server.chat_requests) > 8 * 2  # the long ones made chunk calls


def test_one_long_document_can_use_every_slot(server: FakeOpenAI) -> None:
    server.latency = 0.2
    engine = make_engine(server, concurrency=6)
    (outcome,) = chain_all(engine, [doc(long_doc(10))])
    assert server.max_in_flight == 6, server.max_in_flight
    assert outcome.result["checklist"]["total_items"] >= 10


# --- the overlapping chain ------------------------------------------------------------------


def test_chunked_checklist_runs_alongside_the_summary(server: FakeOpenAI) -> None:
    server.latency = 0.3
    engine = make_engine(server, concurrency=32)
    saved: list[str] = []

    outcome = chain_one(engine, doc(long_doc()), save=saved.append)
    reqs = server.chat_requests
    checklist = [r for r in reqs if is_checklist(r)]
    reduces = [r for r in reqs if is_reduce(r)]
    assert len(checklist) > 1 and reduces
    # every chunk's checklist call was sent before the map answers made a reduce possible
    assert max(r.at for r in checklist) < min(r.at for r in reduces)
    for r in checklist:  # chunk calls do not carry the (not yet written) summary
        assert "<summary>" not in r.body["messages"][-1]["content"]
    # stage 1 was still checkpointed, and the result covers every section
    assert len(saved) == 1 and json.loads(saved[0])["summary"]["title"] == "Big Guide"
    texts = [i["text"] for c in outcome.result["checklist"]["categories"] for i in c["items"]]
    for i in range(8):
        assert any(f"rule {i}." in t for t in texts), i
    usage = outcome.usage
    assert usage["summary"]["calls"] + usage["checklist"]["calls"] == len(reqs)


def test_short_document_keeps_the_summary_in_its_checklist_call(server: FakeOpenAI) -> None:
    chain_all(make_engine(server, context_tokens=128_000), [doc(SHORT)])
    first, second = server.chat_requests
    assert not is_checklist(first) and is_checklist(second)
    assert "<summary>" in second.body["messages"][-1]["content"]


def test_failed_checklist_stops_the_summary_at_once(server: FakeOpenAI) -> None:
    server.default = by_stage({"guideline_summary": 3.0}, fail="guideline_checklist")
    engine = make_engine(server, concurrency=32)
    started = time.monotonic()
    with pytest.raises(PermanentJobError, match="guideline_checklist rejected"):
        chain_all(engine, [doc(long_doc())])
    # without cancelling stage 1, the chain would wait for the summary's 3 s answers
    assert time.monotonic() - started < 2.5
    assert not [r for r in server.chat_requests if is_reduce(r)]


def test_failed_summary_stops_the_checklist_at_once(server: FakeOpenAI) -> None:
    server.default = by_stage({"guideline_checklist": 3.0}, fail="guideline_summary")
    engine = make_engine(server, concurrency=32)
    started = time.monotonic()
    with pytest.raises(PermanentJobError, match="guideline_summary rejected") as caught:
        chain_all(engine, [doc(long_doc())])
    assert time.monotonic() - started < 2.5
    assert "summary" not in (caught.value.usage or {})  # stage 1 never finished


def test_transient_checklist_failure_keeps_the_summary(server: FakeOpenAI) -> None:
    """The job will be retried: stage 1 finishes and is checkpointed, so the retry skips it."""
    from fake_openai import server_error

    def reply(body: dict[str, Any]) -> Reply:
        if schema_name(body) == "guideline_checklist":
            return server_error()
        return Reply(delay=0.5)

    server.default = reply
    engine = make_engine(server, concurrency=32)
    engine.request_tries = 1
    saved: list[str] = []

    with pytest.raises(TransientJobError, match="kept failing") as caught:
        chain_one(engine, doc(long_doc()), save=saved.append)
    assert len(saved) == 1 and json.loads(saved[0])["summary"]["title"] == "Big Guide"
    assert (caught.value.usage or {})["summary"]["calls"] == sum(
        1 for r in server.chat_requests if not is_checklist(r)
    )


def test_a_permanent_summary_failure_outranks_a_transient_checklist_one(
    server: FakeOpenAI,
) -> None:
    """The checklist fails transiently first, then the summary for good: the job must end
    failed, not be retried (and pay for the summary again) up to --max-attempts."""
    from fake_openai import server_error

    def reply(body: dict[str, Any]) -> Reply:
        if schema_name(body) == "guideline_checklist":
            return server_error()
        reply = error(401, "invalid key")
        reply.delay = 0.5
        return reply

    server.default = reply
    engine = make_engine(server, concurrency=32)
    engine.request_tries = 1
    with pytest.raises(PermanentJobError, match="authentication failed"):
        chain_one(engine, doc(long_doc()))


def test_cancelling_the_job_cancels_both_stages(server: FakeOpenAI) -> None:
    """A job cancelled mid-flight (lease lost, avo cancel, grace over) ends cancelled, with
    no stage left running."""
    server.latency = 5.0
    engine = make_engine(server, concurrency=32)

    async def go() -> None:
        job = asyncio.ensure_future(run_chain(engine, doc(long_doc()), None, None))
        deadline = time.monotonic() + 30
        while server.in_flight < 4:
            assert time.monotonic() < deadline, "the chain never sent its requests"
            await asyncio.sleep(0.01)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await engine.aclose()

    asyncio.run(go())


def test_checkpointed_summary_skips_stage_one(server: FakeOpenAI) -> None:
    summary = {"title": "Big Guide", "content": "From the checkpoint.", "key_points": ["x"]}
    checkpoint = json.dumps({"summary": summary, "usage": {"calls": 3}})
    engine = make_engine(server, concurrency=8)

    outcome = chain_one(engine, doc(long_doc()), checkpoint)
    assert all(is_checklist(r) for r in server.chat_requests)
    assert outcome.result["summary"]["content"] == "From the checkpoint."


# --- the CLI --------------------------------------------------------------------------------


def test_avo_work_concurrency_bounds_chunk_calls(
    run_avo: RunAvo, tmp_path: Path, server: FakeOpenAI
) -> None:
    server.latency = 0.1
    texts = {"long.md": long_doc(), **{f"s{i}.md": SHORT + f"- Rule {i}.\n" for i in range(4)}}
    files = []
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        files.append(str(tmp_path / name))
    ids = submit_ids(run_avo("submit", *files))
    env = {"OPENAI_API_KEY": KEY, "AVO_CONTEXT_TOKENS": "700"}
    proc = run_avo(
        "work", "--engine", "openai", "--base-url", server.url, "--concurrency", "2", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert server.max_in_flight == 2
    assert [status_json(run_avo, i)["status"] for i in ids] == ["completed"] * 5


def test_worker_queues_a_few_jobs_for_the_slots(
    run_avo: RunAvo, tmp_path: Path, isolated: Path, server: FakeOpenAI
) -> None:
    """Four request slots, five jobs held: a freed slot never waits for a claim."""
    import sqlite3

    server.latency = 0.3
    files = []
    for i in range(10):
        (tmp_path / f"d{i}.md").write_text(SHORT + f"- Rule {i}.\n", encoding="utf-8")
        files.append(str(tmp_path / f"d{i}.md"))
    ids = submit_ids(run_avo("submit", *files))
    env = {"OPENAI_API_KEY": KEY}
    proc = run_avo(
        "work", "--engine", "openai", "--base-url", server.url, "--concurrency", "4", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert server.max_in_flight == 4
    with sqlite3.connect(isolated) as conn:
        rows = conn.execute("SELECT started_at, finished_at FROM jobs ORDER BY id").fetchall()
    first_done = min(finished for _, finished in rows)
    started = sorted(start for start, _ in rows)
    assert started[4] < first_done  # the fifth job was claimed up front, waiting for a slot
    assert started[5] > first_done  # no more than that: 4 + 4 // 4
    assert [status_json(run_avo, i)["status"] for i in ids] == ["completed"] * 10


def test_a_cancel_during_the_clean_up_still_cancels_the_job() -> None:
    """Stage 2 fails, and while stage 1 winds down the job itself is cancelled: the job
    must end cancelled (released or marked cancelled), not with stage 2's error."""
    from avo_cli.engines.base import StageResult, SummaryDraft

    class SlowToStop(StubEngine):
        def checklist_without_summary(self, doc: Document) -> bool:
            return True

        async def summarize(self, doc: Document) -> StageResult:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.3)  # a stage that takes a moment to wind down
                raise
            raise AssertionError("not cancelled")

        async def checklist(self, doc: Document, summary: SummaryDraft | None) -> StageResult:
            await asyncio.sleep(0.05)
            raise PermanentJobError("checklist rejected")

    async def go() -> None:
        job = asyncio.ensure_future(run_chain(SlowToStop(), doc(SHORT), None, None))
        await asyncio.sleep(0.15)  # stage 2 has failed; stage 1 is winding down
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(go())
