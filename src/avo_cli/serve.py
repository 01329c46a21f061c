"""``avo serve``: the seed system's HTTP API over the same job queue.

Routes (all JSON, UTF-8, two-space indent, one trailing newline)::

    POST /api/jobs               queue a document -> 201 {"event_id": ...}
    GET  /api/jobs/{event_id}    the job, byte for byte what ``avo status --json`` prints
    GET  /api/jobs               recent jobs, like ``avo list --json`` (?status=&limit=)
    GET  /healthz                liveness (never needs the token)
    GET  /openapi.json           this API described in OpenAPI 3.1

Validation is ``documents.validate`` (the one ``avo submit`` uses) and the job
JSON is ``jobview.job_json`` + ``jobview.dump_json``, so the CLI and the API
cannot drift apart.

Store access. Handlers run on one asyncio loop; store calls go to threads so a
database that is busy (a worker holding SQLite's write lock, a slow PostgreSQL)
never stalls the loop. Each thread opens its own store (a sqlite3 connection
must not be used by two threads at once). One writer thread does every
insert: in-process writers never contend for SQLite's lock (whose busy handler
sleeps in steps of milliseconds), and jobs posted while it was busy go in
together in one transaction (group commit). One reader thread does the reads,
which never wait behind writes (WAL); it too takes whatever piled up in one
hop. On SQLite the WAL is checkpointed by a thread of its own, not inside the
commit of some unlucky request.

Errors are ``{"error": {"code": ..., "message": ...}}``. An ambiguous id
prefix is a 404 ``not_found`` like an unknown id, with the store's message
("... is ambiguous: give more characters"), exactly as ``avo status`` treats it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avo_cli import __version__, output
from avo_cli.documents import validate
from avo_cli.errors import (
    AvoError,
    BackendUnavailable,
    BadInput,
    ConfigError,
    ExitCode,
    NotFound,
)
from avo_cli.jobview import dump_json, job_json, list_json
from avo_cli.store import open_store
from avo_cli.store.base import STATUSES, NewJob, Store

if TYPE_CHECKING:
    from avo_cli.config import Settings
    from avo_cli.worker import Worker

T = TypeVar("T")

DEFAULT_SOURCE = "<http>"
MAX_SOURCE_CHARS = 512
MAX_LIST_LIMIT = 1000
TOKEN_ENV = "AVO_API_TOKEN"
OPEN_PATHS = frozenset({"/healthz"})
TEXT_TYPES = frozenset({"text/markdown", "text/plain"})
JSON_TYPE = "application/json"
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints (SQLite)


def json_body_cap(max_bytes: int) -> int:
    """Largest JSON body read for a ``max_bytes`` document.

    JSON escaping can make a document up to six times longer (``\\u0001``), so
    the body cap is generous and the document itself is checked against
    ``max_bytes`` once decoded.
    """
    return 6 * max_bytes + 64 * 1024


# --- responses ----------------------------------------------------------------


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialised with ``dump_json`` plus a newline: the bytes the CLI prints."""
    body = (dump_json(obj) + "\n").encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _avo_error_status(exc: AvoError) -> tuple[int, str]:
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, BadInput):
        return 400, "invalid_document"
    if isinstance(exc, BackendUnavailable):
        return 503, "backend_unavailable"
    return 503, "database_error"


# --- store access ---------------------------------------------------------------


class StoreAccess:
    """Stores for the handlers: a writer thread (group commit) and a reader thread.

    Each thread has its own store. Requests that arrive while a thread is busy
    are handed to it together in one hop: with 50 clients, one thread switch
    serves dozens of requests instead of each paying for its own (and a pool of
    threads would mostly fight the event loop for the GIL).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._opened: list[Store] = []
        self._opened_lock = threading.Lock()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="avo-serve-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="avo-serve-write")
        self._pending: list[tuple[NewJob, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._reads: list[tuple[Callable[[Store], Any], asyncio.Future[Any]]] = []
        self._read_task: asyncio.Task[None] | None = None
        self.transactions = 0  # enqueue transactions run (tests check the batching)
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()

    def _store(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = open_store(self.url)
            self._local.store = store
            with self._opened_lock:
                self._opened.append(store)
        return store

    async def read(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` on the reader thread; reads never wait behind writes (WAL)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._reads.append((fn, fut))
        if self._read_task is None or self._read_task.done():
            self._read_task = loop.create_task(self._drain_reads())
        result: T = await fut
        return result

    def _run_reads(
        self, batch: list[tuple[Callable[[Store], Any], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        store = self._store()
        out: list[tuple[bool, Any]] = []
        for fn, _ in batch:
            try:
                out.append((True, fn(store)))
            except Exception as exc:
                out.append((False, exc))
        return out

    async def _drain_reads(self) -> None:
        loop = asyncio.get_running_loop()
        while self._reads:
            batch, self._reads = self._reads, []
            try:
                results = await loop.run_in_executor(self._reader, self._run_reads, batch)
            except Exception as exc:  # the store could not be opened
                results = [(False, exc)] * len(batch)
            for (_, fut), (ok, value) in zip(batch, results, strict=True):
                if fut.done():  # the client went away
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    async def enqueue(self, job: NewJob) -> None:
        """Queue one job; returns once it is committed.

        Jobs arriving while a commit is running are committed together by the
        next one. A failed batch is retried one job at a time, so one job's
        error never fails another request's job.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((job, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await fut

    def _insert(self, jobs: list[NewJob]) -> None:
        self.transactions += 1
        store = self._store()
        if self.transactions == 1:
            self._move_checkpoints(store)
        store.enqueue(jobs)

    def _move_checkpoints(self, writer: Store) -> None:
        """SQLite: checkpoint the WAL on a thread of its own, not in the commit of a request.

        A commit that crosses SQLite's auto-checkpoint threshold copies the WAL
        into the database and fsyncs it, and every request queued behind it
        waits: a tail-latency spike. Here the writer never checkpoints; a thread
        does it every ``CHECKPOINT_EVERY`` seconds in PASSIVE mode, which blocks
        neither writers nor readers.
        """
        disable_autocheckpoint = getattr(writer, "disable_autocheckpoint", None)
        if disable_autocheckpoint is None or self._checkpointer is not None:
            return  # not SQLite
        disable_autocheckpoint()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="avo-serve-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        store = open_store(self.url)
        try:
            while True:
                stopping = self._closing.wait(CHECKPOINT_EVERY)
                try:
                    store.checkpoint()  # type: ignore[attr-defined]
                except AvoError as exc:  # a busy or failing database: try again later
                    output.error(f"WAL checkpoint: {exc.message}")
                if stopping:
                    return
        finally:
            store.close()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self._writer, self._insert, [j for j, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                for job, fut in batch:  # find the bad one; the others still get queued
                    try:
                        await loop.run_in_executor(self._writer, self._insert, [job])
                    except Exception as one:
                        _settle(fut, one)
                    else:
                        _settle(fut, None)
                continue
            for _, fut in batch:
                _settle(fut, None)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._opened_lock:
            stores, self._opened = self._opened, []
        for store in stores:
            with contextlib.suppress(Exception):
                store.close()


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():  # the request went away
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(None)


# --- the access log -------------------------------------------------------------


class AccessLog:
    """One line per request on stderr: client, request line, status, milliseconds.

    A plain write instead of uvicorn's logging-based access log, which cost a
    third of a small request's CPU. It shows the raw (still percent-encoded)
    target and never a header, so neither the token nor control characters
    reach the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            ms = (time.perf_counter() - started) * 1000
            line = (
                f'{who} "{scope["method"]} {target} HTTP/{scope["http_version"]}" {status or 500}'
            )
            sys.stderr.write(f"{output.clean(line)} {ms:.1f}ms\n")


# --- the token ------------------------------------------------------------------


class BearerAuth:
    """Require ``Authorization: Bearer <token>`` on every path but ``/healthz``.

    Pure ASGI (no per-request task) and a constant-time comparison; the token
    is never logged or echoed.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = rest.strip()
                break
        if given is None:
            response = error_response(
                401,
                "unauthorized",
                f"missing bearer token: send 'Authorization: Bearer <token>' ({TOKEN_ENV})",
                {"WWW-Authenticate": 'Bearer realm="avo"'},
            )
        elif not hmac.compare_digest(given, self.token):
            response = error_response(
                401,
                "unauthorized",
                "invalid bearer token",
                {"WWW-Authenticate": 'Bearer realm="avo", error="invalid_token"'},
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


# --- the application --------------------------------------------------------------


@dataclass
class ServeState:
    db: str
    max_bytes: int
    store: StoreAccess | None = None
    workers: list[InProcessWorker] = field(default_factory=list)


def _media_type(request: Request) -> tuple[str, str | None]:
    raw = request.headers.get("content-type", "")
    mime, _, params = raw.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return mime.strip().lower(), charset


async def _read_body(request: Request, cap: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > cap:
        raise ApiError(
            413, "too_large", f"request body is {int(length)} bytes, over the {cap}-byte limit"
        )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise ApiError(413, "too_large", f"request body is over the {cap}-byte limit")
    except ClientDisconnect:  # nobody to answer; nothing was queued
        raise ApiError(400, "client_disconnected", "the client went away mid-body") from None
    return bytes(body)


def _document_from_json(body: bytes) -> tuple[bytes, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "bad_json", f"request body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"malformed JSON: {exc.msg} at offset {exc.pos}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "bad_request", 'the JSON body must be an object: {"content": "..."}')
    content = obj.get("content")
    if not isinstance(content, str):
        raise ApiError(400, "bad_request", '"content" is required and must be a string')
    source = obj.get("source", DEFAULT_SOURCE)
    if source is None:
        source = DEFAULT_SOURCE
    if not isinstance(source, str):
        raise ApiError(400, "bad_request", '"source" must be a string')
    # Lone surrogates ("\ud800") survive JSON decoding; keep them so validate says "not UTF-8".
    return content.encode("utf-8", "surrogatepass"), source


def _check_source(source: str) -> str:
    source = source or DEFAULT_SOURCE
    if len(source) > MAX_SOURCE_CHARS:
        raise ApiError(400, "bad_request", f"source is longer than {MAX_SOURCE_CHARS} characters")
    return source


def create_app(
    db: str,
    *,
    max_bytes: int,
    token: str | None = None,
    workers: list[InProcessWorker] | None = None,
    access_log: bool = False,
    cors_origins: list[str] | None = None,
) -> ASGIApp:
    """The ASGI application. The store is opened by the lifespan, per thread."""
    state = ServeState(db=db, max_bytes=max_bytes, workers=list(workers or []))

    def store() -> StoreAccess:
        if state.store is None:  # pragma: no cover - only without the lifespan
            raise ApiError(503, "starting", "the server is starting")
        return state.store

    async def create_job(request: Request) -> Response:
        mime, charset = _media_type(request)
        if mime == JSON_TYPE:
            cap = json_body_cap(state.max_bytes)
        elif mime in TEXT_TYPES:
            if charset not in (None, "utf-8", "utf8"):
                raise ApiError(
                    415, "unsupported_media_type", f"charset {charset} is not supported: send UTF-8"
                )
            cap = state.max_bytes
        else:
            shown = mime or "none"
            raise ApiError(
                415,
                "unsupported_media_type",
                f"content type {shown} is not supported: send application/json "
                '{"content": "...", "source": "..."}, text/markdown or text/plain',
            )
        body = await _read_body(request, cap)
        if not body:
            raise ApiError(400, "empty_body", "request body is empty")
        if mime == JSON_TYPE:
            data, source = _document_from_json(body)
        else:
            data, source = body, request.query_params.get("source", DEFAULT_SOURCE)
        source = _check_source(source)
        try:
            job = validate(data, source, state.max_bytes)
        except BadInput as exc:
            status, code = (
                (413, "too_large") if len(data) > state.max_bytes else (400, "invalid_document")
            )
            raise ApiError(status, code, exc.message) from None
        await store().enqueue(job)
        for worker in state.workers:
            worker.wake()
        return json_response(
            {"event_id": job.event_id}, 201, {"Location": f"/api/jobs/{job.event_id}"}
        )

    async def get_job(request: Request) -> Response:
        ref = str(request.path_params["event_id"])
        row = await store().read(lambda s: s.get(ref))
        return json_response(job_json(row))

    async def list_jobs(request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiError(
                400, "bad_request", f"unknown status {status!r}: use one of {', '.join(STATUSES)}"
            )
        raw_limit = request.query_params.get("limit", "20")
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ApiError(
                400, "bad_request", f"limit must be an integer from 1 to {MAX_LIST_LIMIT}"
            )
        rows = await store().read(lambda s: s.recent(status, limit))
        return json_response([list_json(r) for r in rows])

    async def jobs(request: Request) -> Response:
        return await (create_job if request.method == "POST" else list_jobs)(request)

    async def healthz(request: Request) -> Response:
        alive = sum(1 for w in state.workers if w.alive)
        return json_response({"status": "ok", "version": __version__, "workers": alive})

    spec = openapi_spec()

    async def openapi(request: Request) -> Response:
        return json_response(spec)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message)

    async def avo_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AvoError)
        status, code = _avo_error_status(exc)
        return error_response(status, code, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {
            404: f"no such endpoint: {request.url.path}",
            405: f"method {request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers) if exc.headers else None
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), message, headers
        )

    async def internal_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal_error", "internal server error (see the server log)")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.store = StoreAccess(state.db)
        for worker in state.workers:
            worker.start()
        try:
            yield
        finally:
            for worker in state.workers:
                worker.stop()
            for worker in state.workers:
                await asyncio.to_thread(worker.join)
            await asyncio.to_thread(state.store.close)

    app = Starlette(
        routes=[
            Route("/api/jobs", jobs, methods=["GET", "POST"]),
            Route("/api/jobs/{event_id}", get_job, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        exception_handlers={
            ApiError: api_error,
            AvoError: avo_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    outer: ASGIApp = BearerAuth(app, token) if token else app
    if cors_origins:  # outside the token check: browsers send preflights without it
        from starlette.middleware.cors import CORSMiddleware

        outer = CORSMiddleware(
            outer,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location"],
            max_age=600,
        )
    return AccessLog(outer) if access_log else outer


# --- OpenAPI ------------------------------------------------------------------------


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    }


def openapi_spec() -> dict[str, Any]:
    """OpenAPI 3.1: the job schema comes from ``schema.Job`` (the contract itself)."""
    from avo_cli.schema import Job

    job_schema = Job.model_json_schema(
        by_alias=True, mode="serialization", ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = job_schema.pop("$defs", {})
    schemas["Job"] = job_schema
    schemas["Error"] = _error_schema()
    schemas["Created"] = {
        "type": "object",
        "required": ["event_id"],
        "additionalProperties": False,
        "properties": {"event_id": {"type": "string", "format": "uuid"}},
    }
    schemas["JobListItem"] = {
        "type": "object",
        "required": ["event_id", "status", "source", "created_at", "updated_at"],
        "additionalProperties": False,
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "source": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    schemas["Health"] = {
        "type": "object",
        "required": ["status", "version", "workers"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "const": "ok"},
            "version": {"type": "string"},
            "workers": {"type": "integer", "description": "in-process workers alive"},
        },
    }

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def err(description: str) -> dict[str, Any]:
        return {"description": description, "content": {JSON_TYPE: {"schema": ref("Error")}}}

    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {JSON_TYPE: {"schema": schema}}}

    unauthorized = err("Missing or wrong bearer token (only when AVO_API_TOKEN is set)")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "avo",
            "version": __version__,
            "description": (
                "The AVO API over avo's job queue: queue a guideline document, then poll "
                "its job until it is completed with a summary and a checklist."
            ),
        },
        "paths": {
            "/api/jobs": {
                "post": {
                    "summary": "Queue a document",
                    "operationId": "createJob",
                    "parameters": [
                        {
                            "name": "source",
                            "in": "query",
                            "required": False,
                            "description": "Name shown in listings (text bodies only)",
                            "schema": {"type": "string", "maxLength": MAX_SOURCE_CHARS},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            JSON_TYPE: {
                                "schema": {
                                    "type": "object",
                                    "required": ["content"],
                                    "properties": {
                                        "content": {"type": "string"},
                                        "source": {
                                            "type": "string",
                                            "maxLength": MAX_SOURCE_CHARS,
                                        },
                                    },
                                }
                            },
                            "text/markdown": {"schema": {"type": "string"}},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Queued",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {JSON_TYPE: {"schema": ref("Created")}},
                        },
                        "400": err("Empty, not UTF-8, binary (NUL bytes) or malformed JSON"),
                        "401": unauthorized,
                        "413": err("Document over AVO_MAX_BYTES"),
                        "415": err("Content type other than JSON, text/markdown, text/plain"),
                    },
                },
                "get": {
                    "summary": "Recent jobs, newest first",
                    "operationId": "listJobs",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": list(STATUSES)},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIST_LIMIT,
                                "default": 20,
                            },
                        },
                    ],
                    "responses": {
                        "200": ok("Jobs", {"type": "array", "items": ref("JobListItem")}),
                        "400": err("Unknown status or bad limit"),
                        "401": unauthorized,
                    },
                },
            },
            "/api/jobs/{event_id}": {
                "get": {
                    "summary": "A job, as avo status --json prints it",
                    "operationId": "getJob",
                    "parameters": [
                        {
                            "name": "event_id",
                            "in": "path",
                            "required": True,
                            "description": "Event id or a unique prefix of one",
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": ok("The job", ref("Job")),
                        "401": unauthorized,
                        "404": err("Unknown, malformed or ambiguous id"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness; never needs the token",
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": ok("Alive", ref("Health"))},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "operationId": "openapi",
                    "responses": {
                        "200": ok("OpenAPI document", {"type": "object"}),
                        "401": unauthorized,
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


# --- in-process workers ---------------------------------------------------------------


class InProcessWorker:
    """One ``Worker`` (the one ``avo work`` runs) on its own thread and event loop."""

    def __init__(self, worker: Worker, name: str) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        try:
            self.worker.run()
        except Exception as exc:  # keep serving; /healthz shows one worker fewer
            output.error(f"in-process worker stopped: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                self.worker.store.close()

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        self.worker.wake()

    def stop(self) -> None:
        self.worker.request_stop(signal.SIGTERM)

    def join(self) -> None:
        self.thread.join()


def make_workers(settings: Settings, n: int, grace: float) -> list[InProcessWorker]:
    """Engines and stores are built now so misconfiguration fails before binding."""
    from avo_cli.engines import load_engine
    from avo_cli.progress import LineReporter
    from avo_cli.worker import Worker, WorkerOptions

    workers = []
    for i in range(n):
        engine = load_engine(settings)
        options = WorkerOptions(
            concurrency=settings.concurrency or engine.max_concurrency or 4,
            lease=settings.lease,
            forever=True,
            grace=grace,
            max_attempts=settings.max_attempts,
            cache=settings.cache,
            handle_signals=False,
        )
        worker = Worker(open_store(settings.db), engine, options, LineReporter())
        workers.append(InProcessWorker(worker, f"avo-worker-{i + 1}"))
    return workers


# --- running ------------------------------------------------------------------------------


def api_token() -> str | None:
    raw = os.environ.get(TOKEN_ENV)
    if raw is None:
        return None
    token = raw.strip()
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is set but empty: unset it or give a token")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """Listen before anything starts, so a taken port is a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _log_config() -> dict[str, Any]:
    """uvicorn's own messages: warnings and errors only, one prefixed line each."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "avo serve: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"level": "WARNING"},
        },
    }


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    max_bytes: int,
    grace: float,
    access_log: bool,
    cors_origins: list[str] | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM; in-process workers get ``grace`` to finish."""
    token = api_token()
    store = open_store(settings.db)  # create and migrate now: errors before listening
    store.close()
    in_process = make_workers(settings, workers, grace) if workers else []
    sock = bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    bound_port = sock.getsockname()[1]
    parts = [f"database {settings.db}"]
    parts.append(f"{workers} in-process worker(s)" if workers else "no workers: run avo work")
    parts.append("bearer token required" if token else "no token")
    output.info(f"avo serve: listening on http://{shown_host}:{bound_port} ({', '.join(parts)})")
    if not token and not is_loopback(host):
        output.info(
            f"avo serve: warning: {host} is not loopback and {TOKEN_ENV} is not set: "
            "anyone who can reach it can queue jobs"
        )
    app = create_app(
        settings.db,
        max_bytes=max_bytes,
        token=token,
        workers=in_process,
        access_log=access_log,
        cors_origins=cors_origins,
    )
    config = uvicorn.Config(
        app,
        log_config=_log_config(),
        access_log=False,  # AccessLog does it, for a fraction of the CPU
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=max(int(grace), 1),
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down: turn
    # it into a quiet exit 130 (SIGINT) or 143 (SIGTERM), as ``avo work`` does.
    previous = {sig: signal.signal(sig, _exit_on_signal) for sig in EXIT_SIGNALS}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


EXIT_SIGNALS = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(int(EXIT_SIGNALS[signal.Signals(signum)]))
