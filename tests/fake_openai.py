"""A fake OpenAI-compatible server for tests and benches (127.0.0.1, free port).

Implements ``POST /v1/chat/completions`` and ``GET /v1/models``. Each chat
request takes the next scripted behaviour from ``server.script`` (a deque, see
the helpers ``ok``, ``error``, ``rate_limited``, ``hang``, ``content`` ...);
when the script is empty, ``server.default`` answers (normally: valid JSON
derived from the prompt). Every request is recorded (path, headers, body) and
the peak number of requests in flight is tracked in ``max_in_flight``.

Normal answers: a summary titled by the document's first ``#`` heading (or the
first ``"title"`` of a JSON block in the prompt) and a checklist with one item
per line starting with ``- `` (required when it says must/반드시), grouped by
``#`` headings.

As a script: ``python tests/fake_openai.py --port 8765 --latency 0.25``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    kind: str = "ok"  # ok | status | hang | content | close
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content: str | None = None
    finish_reason: str = "stop"
    refusal: str | None = None
    delay: float | None = None  # overrides the server latency
    usage: tuple[int, int] = (11, 7)


def ok(**kw: Any) -> Reply:
    return Reply(**kw)


def content(text: str, **kw: Any) -> Reply:
    """Answer with exactly this message content (malformed JSON, fenced JSON...)."""
    return Reply(kind="content", content=text, **kw)


def fenced() -> Reply:
    """A normal answer wrapped in a ```json code fence."""
    return Reply(kind="fenced")


def error(
    status: int,
    message: str = "error",
    code: str | None = None,
    type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    body = {"error": {"message": message, "type": type or "invalid_request_error", "code": code}}
    return Reply(kind="status", status=status, body=body, headers=headers or {})


def rate_limited(retry_after: str = "0", ms: str | None = None) -> Reply:
    headers = {"retry-after": retry_after}
    if ms is not None:
        headers["retry-after-ms"] = ms
    return error(429, "Rate limit reached for requests", "rate_limit_exceeded", "requests", headers)


def server_error() -> Reply:
    return error(
        500, "The server had an error while processing your request.", None, "server_error"
    )


def raw(text: str, status: int = 200, content_type: str = "text/html") -> Reply:
    """Answer with this body as is (a proxy's HTML page, truncated JSON...)."""
    return Reply(kind="raw", status=status, content=text, headers={"Content-Type": content_type})


def hang(seconds: float = 5.0) -> Reply:
    return Reply(kind="hang", delay=seconds)


def length() -> Reply:
    return Reply(kind="content", content='{"title": "cut', finish_reason="length")


def refusal(text: str = "I'm sorry, I cannot help with that.") -> Reply:
    return Reply(kind="refusal", refusal=text)


def reject_schema(what: str = "json_schema") -> Reply:
    return error(
        400,
        f"Invalid parameter: 'response_format' of type '{what}' is not supported with this model.",
        None,
        "invalid_request_error",
    )


def quota() -> Reply:
    return error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    )


# --- answers derived from the prompt -----------------------------------------------

_DOC = re.compile(r"<document>\n(.*)\n</document>", re.DOTALL)


def request_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def schema_name(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return str(fmt["json_schema"]["name"])
    system = str(body.get("messages", [{}])[0].get("content", ""))
    return "guideline_checklist" if "guideline_checklist" in system else "guideline_summary"


def _document(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        match = _DOC.search(str(message.get("content", "")))
        if match:
            return match.group(1)
    return request_text(body)


def summary_answer(body: dict[str, Any]) -> dict[str, Any]:
    doc = _document(body)
    title = "Untitled"
    heading = re.search(r"^#{1,6}\s+(.+)$", doc, re.MULTILINE)
    if heading:
        title = heading.group(1).strip()
    else:
        found = re.search(r'"title":\s*"([^"]*)"', doc)
        if found:
            title = found.group(1)
    bullets = [line[2:].strip() for line in doc.splitlines() if line.startswith("- ")]
    return {"title": title, "content": " ".join(doc.split())[:200], "key_points": bullets[:3]}


def checklist_answer(body: dict[str, Any]) -> dict[str, Any]:
    doc = _document(body)
    categories: list[dict[str, Any]] = []
    current: dict[str, Any] = {"name": "General", "items": []}
    for line in doc.splitlines():
        heading = re.match(r"^#{2,6}\s+(.+)$", line)
        if heading:
            if current["items"]:
                categories.append(current)
            current = {"name": heading.group(1).strip(), "items": []}
        elif line.startswith("- "):
            rule = line[2:].strip()
            required = bool(re.search(r"\bmust\b|반드시|필수", rule, re.IGNORECASE))
            current["items"].append({"text": f"Did you follow: {rule}?", "required": required})
    if current["items"]:
        categories.append(current)
    return {"categories": categories}


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    if schema_name(body) == "guideline_checklist":
        return checklist_answer(body)
    return summary_answer(body)


def completion(
    body: dict[str, Any],
    text: str | None,
    finish_reason: str = "stop",
    refusal_text: str | None = None,
    usage: tuple[int, int] = (11, 7),
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": refusal_text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }


# --- the server ---------------------------------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeOpenAI:
    def __init__(self, latency: float = 0.0, port: int = 0) -> None:
        self.latency = latency
        self.script: collections.deque[Reply | Callable[[dict[str, Any]], Reply]]
        self.script = collections.deque()
        self.default: Reply | Callable[[dict[str, Any]], Reply] = Reply()
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # scripting
    def push(self, *replies: Reply | Callable[[dict[str, Any]], Reply]) -> FakeOpenAI:
        self.script.extend(replies)
        return self

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            behaviour = self.script.popleft() if self.script else self.default
        return behaviour(body) if callable(behaviour) else behaviour

    def start(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def _send_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_GET(self) -> None:
                server._record(self, {})
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length_ = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length_) if length_ else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                server._record(self, body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"unknown path {self.path}"}})
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server._next(body)
                    delay = server.latency if reply.delay is None else reply.delay
                    if delay > 0 and server._stop.wait(delay):
                        return
                    if reply.kind == "hang":
                        self.close_connection = True
                        return
                    if reply.kind == "raw":
                        self._send_raw(reply.status, (reply.content or "").encode(), reply.headers)
                        return
                    if reply.kind == "status":
                        self._send(reply.status, reply.body, reply.headers)
                        return
                    if reply.kind == "content":
                        payload = completion(
                            body, reply.content, reply.finish_reason, None, reply.usage
                        )
                    elif reply.kind == "refusal":
                        payload = completion(body, None, "stop", reply.refusal, reply.usage)
                    elif reply.kind == "fenced":
                        text = json.dumps(answer_for(body), ensure_ascii=False, indent=2)
                        payload = completion(
                            body, f"```json\n{text}\n```", "stop", None, reply.usage
                        )
                    else:
                        text = json.dumps(answer_for(body), ensure_ascii=False)
                        payload = completion(body, text, reply.finish_reason, None, reply.usage)
                    self._send(200, payload, reply.headers)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # a client that hung up (timeout tests, killed workers) is not an error
                if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    return
                super().handle_error(request, client_address)

        self._httpd = Server(("127.0.0.1", self._port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def _record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(Recorded(handler.path, headers, body, time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI; import this module's fixture or register it in conftest."""
    with FakeOpenAI() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.25)
    args = parser.parse_args()
    server = FakeOpenAI(latency=args.latency, port=args.port).start()
    print(f"fake OpenAI server on {server.url} (latency {args.latency}s)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
