"""``avo serve``: a real server process on a free loopback port, a real HTTP client.

The server is ``python -m avo_cli serve --port 0`` (it prints the port it got);
jobs are worked by real ``avo work`` processes (or ``--workers``) against the
fake OpenAI server, and every job JSON is compared byte for byte with what
``avo status --json`` prints for the same database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conftest import RunAvo, avo_cmd
from fake_openai import FakeOpenAI, error

pytest_plugins = ["stores"]  # pg_url: a real PostgreSQL database

TOKEN = "s3cret-token-for-tests"
KEY = "sk-test-serve-0000"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class Served:
    """An ``avo serve`` subprocess; stderr is drained by a thread into ``lines``."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            avo_cmd("serve", "--port", "0", *args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._ready.wait(30) or not self.url:
            self.proc.kill()
            raise AssertionError(f"avo serve did not start: {self.stderr}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = LISTENING.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def client(self, token: str | None = None) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(timeout=5)
        return code


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    """Start ``avo serve`` with os.environ (the test's AVO_DB) plus ``env``."""
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None, access_log: bool = False) -> Served:
        full = {**os.environ, **(env or {})}
        served = Served([*args] if access_log else ["--no-access-log", *args], full)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop(signal.SIGKILL)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def openai_env(fake: FakeOpenAI) -> dict[str, str | None]:
    return {"AVO_ENGINE": "openai", "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": KEY}


def work(run_avo: RunAvo, fake: FakeOpenAI, *args: str, db: str | None = None) -> None:
    env = openai_env(fake)
    if db is not None:
        env["AVO_DB"] = db
    proc = run_avo("work", *args, env=env)
    assert proc.returncode == 0, proc.stderr


def cli_status_bytes(run_avo: RunAvo, event_id: str, db: str | None = None) -> bytes:
    env = {"AVO_DB": db} if db else None
    proc = run_avo("status", event_id, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.encode("utf-8")


GUIDE = "# Review guide\n\n- You must run the tests.\n- 변경 사항은 반드시 리뷰를 받아야 합니다.\n"


# --- the round trip -----------------------------------------------------------------------------


@pytest.mark.slow
def test_create_work_fetch_round_trip(
    serve: ServeFactory, run_avo: RunAvo, fake: FakeOpenAI
) -> None:
    from avo_cli.schema import Job

    server = serve()
    with server.client() as http:
        created = http.post("/api/jobs", json={"content": GUIDE, "source": "review.md"})
        assert created.status_code == 201, created.text
        assert created.headers["content-type"] == "application/json"
        event_id = created.json()["event_id"]
        assert created.json() == {"event_id": event_id}
        assert created.headers["location"] == f"/api/jobs/{event_id}"
        md = http.post(
            "/api/jobs?source=notes.md",
            content=GUIDE.encode(),
            headers={"Content-Type": "text/markdown; charset=utf-8"},
        )
        assert md.status_code == 201, md.text

        pending = http.get(f"/api/jobs/{event_id}").json()
        assert pending["status"] == "pending" and pending["result"] is None

        work(run_avo, fake)  # a separate worker process drains the queue, as Celery did

        done = http.get(f"/api/jobs/{event_id}")
        assert done.status_code == 200
        job = Job.model_validate_json(done.content)
        assert job.status == "completed"
        assert job.result is not None and job.result.checklist.total_items >= 1
        assert job.result.summary.title == "Review guide"
        listed = http.get("/api/jobs").json()
        assert {(j["source"], j["status"]) for j in listed} == {
            ("review.md", "completed"),
            ("notes.md", "completed"),
        }
    assert server.stop() == 143


# --- byte for byte with avo status --json ---------------------------------------------------


@pytest.mark.slow
def test_job_json_is_avo_status_bytes_for_every_status(
    serve: ServeFactory, run_avo: RunAvo, fake: FakeOpenAI, db_path: Path
) -> None:
    from avo_cli.store import open_store

    server = serve()
    with server.client() as http:

        def post() -> str:
            # Distinct texts: an identical document would reuse the cached result.
            r = http.post("/api/jobs", json={"content": f"{GUIDE}\n- rule {time.time_ns()}\n"})
            assert r.status_code == 201, r.text
            return str(r.json()["event_id"])

        completed = post()
        work(run_avo, fake, "--max-jobs", "1")
        failed = post()
        fake.default = error(401, "Incorrect API key provided", "invalid_api_key")
        work(run_avo, fake, "--max-jobs", "1")
        cancelled = post()
        assert run_avo("cancel", cancelled).returncode == 0
        processing = post()
        store = open_store(str(db_path))
        claimed = store.claim("test-owner", 600)
        assert claimed is not None and claimed.event_id == processing
        store.close()
        pending = post()

        seen = {}
        for event_id in (completed, failed, cancelled, processing, pending):
            r = http.get(f"/api/jobs/{event_id}")
            assert r.status_code == 200
            cli = cli_status_bytes(run_avo, event_id)
            assert r.content == cli, event_id  # both end with exactly one newline
            seen[json.loads(r.content)["status"]] = event_id
        assert set(seen) == {"completed", "failed", "cancelled", "processing", "pending"}
        assert "authentication" in json.loads(http.get(f"/api/jobs/{failed}").content)["message"]


# --- the error table ------------------------------------------------------------------------------

MAX = 1000  # AVO_MAX_BYTES of the shared server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    """One server for the read-only and error tests: small size cap, own database."""
    base = tmp_path_factory.mktemp("shared-serve")
    db = str(base / "avo.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AVO_", "OPENAI_"))}
    env.update(HOME=str(base), XDG_DATA_HOME=str(base), XDG_CONFIG_HOME=str(base))
    env.update(AVO_DB=db, AVO_MAX_BYTES=str(MAX))
    served = Served(["--no-access-log"], env)
    yield served, db
    assert served.stop() == 143
    assert "Traceback" not in served.stderr, served.stderr


def _chunks(data: bytes, size: int = 256) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


JSON = "application/json"
MD = "text/markdown"
ERROR_TABLE: list[tuple[str, str | None, bytes, int, str, str]] = [
    # (row id, content type, body, status, error code, words in the message)
    ("json-empty", JSON, b"", 400, "empty_body", "empty"),
    ("json-malformed", JSON, b'{"content": ', 400, "bad_json", "malformed JSON"),
    ("json-not-utf8", JSON, b'{"content": "\xff\xfe"}', 400, "bad_json", "UTF-8"),
    ("json-array", JSON, b'["# a"]', 400, "bad_request", "object"),
    ("json-no-content", JSON, b'{"source": "a.md"}', 400, "bad_request", "content"),
    ("json-content-number", JSON, b'{"content": 3}', 400, "bad_request", "content"),
    ("json-source-number", JSON, b'{"content": "# a", "source": 3}', 400, "bad_request", "source"),
    ("json-blank-content", JSON, b'{"content": "  \\n "}', 400, "invalid_document", "empty"),
    ("json-nul", JSON, b'{"content": "# a\\u0000b"}', 400, "invalid_document", "NUL"),
    ("json-lone-surrogate", JSON, b'{"content": "# \\ud800"}', 400, "invalid_document", "UTF-8"),
    (
        "json-too-big",
        JSON,
        json.dumps({"content": "x" * (MAX + 1)}).encode(),
        413,
        "too_large",
        "limit",
    ),
    ("md-empty", MD, b"", 400, "empty_body", "empty"),
    ("md-blank", MD, b"\n\n  \n", 400, "invalid_document", "empty"),
    ("md-not-utf8", MD, b"# caf\xe9\n", 400, "invalid_document", "UTF-8"),
    ("plain-nul", "text/plain", b"# a\x00b\n", 400, "invalid_document", "NUL"),
    ("md-too-big", MD, b"x" * (MAX + 1), 413, "too_large", "limit"),
    (
        "md-latin1",
        "text/markdown; charset=latin-1",
        b"# a\n",
        415,
        "unsupported_media_type",
        "UTF-8",
    ),
    ("form", "application/x-www-form-urlencoded", b"a=b", 415, "unsupported_media_type", "json"),
    ("no-type", None, b"# a\n", 415, "unsupported_media_type", "json"),
    ("xml", "application/xml", b"<a/>", 415, "unsupported_media_type", "markdown"),
]


@pytest.mark.parametrize(
    ("ctype", "body", "status", "code", "words"),
    [row[1:] for row in ERROR_TABLE],
    ids=[row[0] for row in ERROR_TABLE],
)
def test_error_table(
    shared: tuple[Served, str],
    ctype: str | None,
    body: bytes,
    status: int,
    code: str,
    words: str,
) -> None:
    server, _ = shared
    headers = {"Content-Type": ctype} if ctype else {}
    with server.client() as http:
        before = len(http.get("/api/jobs?limit=1000").json())
        r = http.post("/api/jobs", content=body, headers=headers)
        after = len(http.get("/api/jobs?limit=1000").json())
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()
    assert set(err) == {"error"} and set(err["error"]) == {"code", "message"}
    assert err["error"]["code"] == code
    assert words.lower() in err["error"]["message"].lower()
    assert "\n" not in err["error"]["message"]
    assert after == before  # nothing queued


def test_oversized_body_is_rejected_by_content_length_and_while_streaming(
    shared: tuple[Served, str],
) -> None:
    server, _ = shared
    with server.client() as http:
        # A declared length over the cap is refused before the body is read.
        declared = http.post("/api/jobs", content=b"x" * (MAX + 1), headers={"Content-Type": MD})
        assert declared.status_code == 413
        assert "over the" in declared.json()["error"]["message"]
        # Chunked (no Content-Length): refused once the bytes read pass the cap.
        streamed = http.post(
            "/api/jobs", content=_chunks(b"y" * (MAX * 4)), headers={"Content-Type": MD}
        )
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "too_large"
        # Exactly at the cap is fine, for text and for JSON (which may be escaped).
        ok = http.post("/api/jobs", content=b"# " + b"z" * (MAX - 2), headers={"Content-Type": MD})
        assert ok.status_code == 201, ok.text
        korean = "가" * (MAX // 3)  # 3 UTF-8 bytes each; JSON escapes make it 6
        escaped = json.dumps({"content": korean}).encode()
        assert len(escaped) > MAX
        ok_json = http.post("/api/jobs", content=escaped, headers={"Content-Type": JSON})
        assert ok_json.status_code == 201, ok_json.text


def test_unknown_routes_and_methods_are_json(shared: tuple[Served, str]) -> None:
    server, _ = shared
    with server.client() as http:
        r = http.get("/api/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = http.delete("/api/jobs")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert "POST" in r.headers["allow"]


# --- ids, list, openapi ------------------------------------------------------------------------


def test_id_prefixes(shared: tuple[Served, str], run_avo: RunAvo) -> None:
    server, db = shared
    with server.client() as http:
        ids = [
            http.post("/api/jobs", json={"content": f"# doc {i}\n"}).json()["event_id"]
            for i in range(17)  # 17 ids over 16 hex digits: two share a first character
        ]
        event_id = ids[0]
        for ref in (event_id, event_id[:8], event_id[:8].upper(), f" {event_id[:12]}"):
            r = http.get(f"/api/jobs/{ref}")
            assert r.status_code == 200, ref
            assert r.content == cli_status_bytes(run_avo, event_id, db)
        firsts = [i[0] for i in ids]
        shared_first = next(c for c in firsts if firsts.count(c) > 1)
        ambiguous = http.get(f"/api/jobs/{shared_first}")
        assert ambiguous.status_code == 404
        assert ambiguous.json()["error"]["code"] == "not_found"
        assert "ambiguous" in ambiguous.json()["error"]["message"]
        for bad in ("00000000-0000-4000-8000-000000000000", "zzzz", "a" * 40, "%00"):
            r = http.get(f"/api/jobs/{bad}")
            assert r.status_code == 404, bad
            assert r.json()["error"]["code"] == "not_found"


def test_list_filters_match_avo_list(shared: tuple[Served, str], run_avo: RunAvo) -> None:
    server, db = shared
    with server.client() as http:
        for i in range(3):
            assert http.post("/api/jobs", json={"content": f"# l {i}\n"}).status_code == 201
        victim = http.post("/api/jobs", json={"content": "# cancel me\n"}).json()["event_id"]
        assert run_avo("cancel", victim, env={"AVO_DB": db}).returncode == 0
        for query, args in (
            ("", []),
            ("?status=pending", ["--status", "pending"]),
            ("?status=cancelled", ["--status", "cancelled"]),
            ("?status=pending&limit=2", ["--status", "pending", "--limit", "2"]),
            ("?limit=1", ["--limit", "1"]),
        ):
            r = http.get(f"/api/jobs{query}")
            assert r.status_code == 200
            proc = run_avo("list", "--json", *args, env={"AVO_DB": db})
            assert r.content == proc.stdout.encode(), query
        assert [j["event_id"] for j in http.get("/api/jobs?status=cancelled").json()] == [victim]
        for bad in ("?status=done", "?limit=0", "?limit=x", "?limit=1001"):
            r = http.get(f"/api/jobs{bad}")
            assert r.status_code == 400, bad
            assert r.json()["error"]["code"] == "bad_request"


def test_openapi_describes_the_real_responses(shared: tuple[Served, str]) -> None:
    from avo_cli.schema import JOB_KEYS

    server, _ = shared
    with server.client() as http:
        r = http.get("/openapi.json")
        assert r.status_code == 200
        spec = json.loads(r.content)
        assert spec["openapi"].startswith("3.")
        assert set(spec["paths"]) == {
            "/api/jobs",
            "/api/jobs/{event_id}",
            "/healthz",
            "/openapi.json",
        }
        assert set(spec["paths"]["/api/jobs"]) == {"get", "post"}
        schemas = spec["components"]["schemas"]

        def resolve(obj: dict[str, Any]) -> dict[str, Any]:
            ref = obj.get("$ref")
            return schemas[ref.rsplit("/", 1)[1]] if ref else obj

        get_job = spec["paths"]["/api/jobs/{event_id}"]["get"]["responses"]["200"]
        job_schema = resolve(get_job["content"]["application/json"]["schema"])
        assert tuple(job_schema["properties"]) == JOB_KEYS
        summary = resolve(schemas["Summary"])
        assert "_source" in summary["properties"] and "word_count" in summary["properties"]

        created = http.post("/api/jobs", json={"content": "# o\n"})
        created_schema = resolve(
            spec["paths"]["/api/jobs"]["post"]["responses"]["201"]["content"]["application/json"][
                "schema"
            ]
        )
        assert set(created.json()) == set(created_schema["required"])
        item_schema = resolve(
            spec["paths"]["/api/jobs"]["get"]["responses"]["200"]["content"]["application/json"][
                "schema"
            ]["items"]
        )
        listed = http.get("/api/jobs?limit=1").json()[0]
        assert list(listed) == list(item_schema["properties"])
        job = http.get(f"/api/jobs/{created.json()['event_id']}").json()
        assert list(job) == list(job_schema["properties"])
        err = http.get("/api/jobs/zzzz").json()
        assert set(err["error"]) == set(schemas["Error"]["properties"]["error"]["required"])
        health = http.get("/healthz").json()
        assert set(health) == set(schemas["Health"]["required"])
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                for status in op["responses"]:
                    assert status.isdigit(), (path, method, status)


# --- the token ------------------------------------------------------------------------------------


def test_bearer_token(serve: ServeFactory) -> None:
    server = serve(env={"AVO_API_TOKEN": TOKEN}, access_log=True)
    assert "token required" in server.stderr
    with server.client() as anon:
        for method, path in (
            ("POST", "/api/jobs"),
            ("GET", "/api/jobs"),
            ("GET", "/openapi.json"),
            ("GET", "/api/jobs/abcd"),
        ):
            r = anon.request(method, path, json={"content": "# t\n"})
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["error"]["code"] == "unauthorized"
        assert anon.get("/healthz").status_code == 200  # probes need no token
        basic = anon.get("/api/jobs", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
    for wrong in ("nope", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        with server.client(wrong) as http:
            r = http.get("/api/jobs")
            assert r.status_code == 401
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            assert TOKEN not in r.text
    with server.client(TOKEN) as http:
        created = http.post("/api/jobs", json={"content": "# t\n"})
        assert created.status_code == 201
        event_id = created.json()["event_id"]
        assert http.get(f"/api/jobs/{event_id[:8]}").status_code == 200
        lower = http.get("/api/jobs", headers={"Authorization": f"bearer {TOKEN}"})
        assert lower.status_code == 200
    assert server.stop() == 143
    assert '"GET /api/jobs HTTP/1.1" 401' in server.stderr  # the access log is on...
    assert TOKEN not in server.stderr  # ...and never shows the token


def test_empty_token_is_a_config_error(run_avo: RunAvo) -> None:
    proc = run_avo("serve", "--port", "0", env={"AVO_API_TOKEN": "  "}, timeout=30)
    assert proc.returncode == 10
    assert proc.stderr.startswith("avo: error: AVO_API_TOKEN is set but empty")
    assert proc.stderr.count("\n") == 1


# --- process behaviour ----------------------------------------------------------------------------


def test_port_in_use_is_one_line(run_avo: RunAvo) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_avo("serve", "--port", str(port), timeout=30)
    assert proc.returncode == 10, proc.stderr
    assert proc.stderr.startswith(f"avo: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("missing", ["starlette", "uvicorn"])
def test_missing_extra_says_what_to_install(missing: str) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None; sys.argv = ['avo', 'serve', '--port', '0']\n"
        "from avo_cli.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 9  # ExitCode.BACKEND, like a missing database driver
    assert proc.stderr == f"avo: error: avo serve needs {missing}: pip install 'avo-cli[serve]'\n"


def test_sigint_stops_quietly_with_130(serve: ServeFactory) -> None:
    server = serve()
    with server.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
    assert server.stop(signal.SIGINT) == 130
    assert "Traceback" not in server.stderr


@pytest.mark.slow
def test_in_process_workers(serve: ServeFactory, fake: FakeOpenAI, run_avo: RunAvo) -> None:
    server = serve("--workers", "2", env={k: v for k, v in openai_env(fake).items() if v})
    assert "2 in-process worker(s)" in server.stderr
    with server.client() as http:
        assert http.get("/healthz").json()["workers"] == 2
        ids = [  # distinct texts: no job may be answered from the result cache
            http.post("/api/jobs", json={"content": f"{GUIDE}- rule {i}\n"}).json()["event_id"]
            for i in range(6)
        ]
        deadline = time.monotonic() + 30
        statuses: list[str] = []
        while time.monotonic() < deadline:
            statuses = [http.get(f"/api/jobs/{i}").json()["status"] for i in ids]
            if all(s == "completed" for s in statuses):
                break
            time.sleep(0.05)
        assert statuses == ["completed"] * 6
        for event_id in ids[:2]:
            assert http.get(f"/api/jobs/{event_id}").content == cli_status_bytes(run_avo, event_id)
    assert server.stop() == 143
    assert KEY not in server.stderr
    assert len(fake.chat_requests) == 12  # two stages per job, each job once


@pytest.mark.slow
def test_in_process_worker_finishes_its_job_on_sigterm(
    serve: ServeFactory, fake: FakeOpenAI
) -> None:
    fake.latency = 0.4
    server = serve(
        "--workers", "1", "--grace", "10", env={k: v for k, v in openai_env(fake).items() if v}
    )
    with server.client() as http:
        event_id = http.post("/api/jobs", json={"content": GUIDE}).json()["event_id"]
        deadline = time.monotonic() + 10
        while http.get(f"/api/jobs/{event_id}").json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert server.stop() == 143
    from avo_cli.store import open_store

    row = open_store(os.environ["AVO_DB"]).get(event_id)
    assert row.status == "completed"  # finished within the grace period, not lost


# --- concurrency ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_posts_and_reads_with_a_worker_process_draining(
    serve: ServeFactory, fake: FakeOpenAI, db_path: Path
) -> None:
    server = serve()
    env = {**os.environ, **{k: v for k, v in openai_env(fake).items() if v}}
    worker = subprocess.Popen(
        avo_cmd("work", "--forever", "--concurrency", "8"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    n = 200
    try:
        with server.client() as http:

            def one(i: int) -> tuple[int, str, int]:
                r = http.post("/api/jobs", json={"content": f"# Doc {i}\n\n- must {i}\n"})
                event_id = r.json().get("event_id", "")
                g = http.get(f"/api/jobs/{event_id}")
                return r.status_code, event_id, g.status_code

            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(one, range(n)))
            assert {(p, g) for p, _, g in results} == {(201, 200)}
            ids = [e for _, e, _ in results]
            assert len(set(ids)) == n
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = http.get("/api/jobs?status=completed&limit=1000").json()
                if len(done) == n:
                    break
                time.sleep(0.2)
            assert {j["event_id"] for j in done} == set(ids)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    from avo_cli.store import open_store

    counts = open_store(str(db_path)).counts()
    assert (counts.completed, counts.pending, counts.processing) == (n, 0, 0)


def test_group_commit_isolates_a_failing_job(db_path: Path) -> None:
    """Jobs batched into one transaction: one bad job fails alone, the rest are queued."""
    import asyncio

    from avo_cli.documents import validate
    from avo_cli.errors import DatabaseError
    from avo_cli.serve import StoreAccess
    from avo_cli.store import open_store
    from avo_cli.store.base import NewJob

    jobs = [validate(f"# doc {i}\n".encode(), f"d{i}.md", 1000) for i in range(5)]
    duplicate = jobs[1]  # same event id twice: the UNIQUE constraint rejects the batch

    async def main(batch: list[NewJob]) -> tuple[list[BaseException | None], int]:
        access = StoreAccess(str(db_path))
        try:
            done = await asyncio.gather(*(access.enqueue(j) for j in batch), return_exceptions=True)
            return done, access.transactions
        finally:
            access.close()

    results, transactions = asyncio.run(main(jobs[:3]))
    assert (results, transactions) == ([None] * 3, 1)  # concurrent requests, one commit
    results, transactions = asyncio.run(main([*jobs[3:], duplicate]))
    assert results[:2] == [None] * 2
    assert transactions == 1 + 3  # the batch, then each job alone
    assert isinstance(results[2], DatabaseError)
    store = open_store(str(db_path))
    assert sorted(r.event_id for r in store.recent(limit=100)) == sorted(j.event_id for j in jobs)
    store.close()


def test_wal_is_checkpointed_off_the_request_path(serve: ServeFactory, db_path: Path) -> None:
    """The writer never checkpoints; the checkpoint thread copies the WAL into the file."""
    server = serve()
    body = "# Big\n\n" + "- You must keep this line. " * 80 + "\n"
    with server.client() as http:
        for i in range(150):  # ~0.5 MB of documents: far below SQLite's own 4 MB threshold
            r = http.post("/api/jobs", json={"content": f"{body}- {i}\n"})
            assert r.status_code == 201
        deadline = time.monotonic() + 15
        while db_path.stat().st_size < 300_000:
            assert time.monotonic() < deadline, "no checkpoint reached the database file"
            time.sleep(0.1)
    assert server.stop() == 143
    from avo_cli.store import open_store

    assert open_store(str(db_path)).counts().pending == 150


@pytest.mark.slow
def test_postgres_store_same_bytes(
    serve: ServeFactory, run_avo: RunAvo, fake: FakeOpenAI, pg_url: str
) -> None:
    """Over PostgreSQL the API serves what avo status/list print for the same database."""
    server = serve(env={"AVO_DB": pg_url})
    with server.client() as http:
        done = http.post("/api/jobs", json={"content": GUIDE, "source": "pg.md"}).json()
        work(run_avo, fake, "--max-jobs", "1", db=pg_url)
        waiting = http.post(
            "/api/jobs", content=b"# Later\n- must wait\n", headers={"Content-Type": MD}
        ).json()
        for event_id in (done["event_id"], waiting["event_id"]):
            r = http.get(f"/api/jobs/{event_id[:10]}")
            assert r.status_code == 200
            assert r.content == cli_status_bytes(run_avo, event_id, pg_url)
        assert http.get(f"/api/jobs/{done['event_id']}").json()["status"] == "completed"
        listed = http.get("/api/jobs?limit=5")
        proc = run_avo("list", "--json", "--limit", "5", env={"AVO_DB": pg_url})
        assert listed.content == proc.stdout.encode()
        assert http.get("/api/jobs/00000000").status_code == 404
    assert server.stop() == 143


def test_cors_only_when_asked(serve: ServeFactory) -> None:
    origin = "https://app.example"
    plain = serve(env={"AVO_API_TOKEN": TOKEN})
    with plain.client(TOKEN) as http:
        r = http.get("/api/jobs", headers={"Origin": origin})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    server = serve("--cors-origin", origin, env={"AVO_API_TOKEN": TOKEN})
    with server.client() as anon:
        # The browser's preflight carries no token; it must not get a 401.
        pre = anon.options(
            "/api/jobs",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == origin
        assert "POST" in pre.headers["access-control-allow-methods"]
        other = anon.options(
            "/api/jobs",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert other.status_code == 400
        assert anon.get("/api/jobs", headers={"Origin": origin}).status_code == 401
    with server.client(TOKEN) as http:
        r = http.post("/api/jobs", json={"content": "# c\n"}, headers={"Origin": origin})
        assert r.status_code == 201
        assert r.headers["access-control-allow-origin"] == origin
        assert "location" in r.headers["access-control-expose-headers"].lower()
