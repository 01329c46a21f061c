"""The OpenAI engine: any OpenAI-compatible Chat Completions server.

Two stages per document (summary, then checklist), each one Chat Completions
call with structured outputs derived from the pydantic draft models. Only this
module imports ``openai`` (and only when a worker loads the engine); prompts
and schemas live in ``openai_prompts``, parsing and chunking in ``openai_parse``.

Long documents (over ``context_tokens`` minus a reserve, estimated from
characters) are split on headings, then paragraphs, then hard cuts: chunk
summaries run concurrently and a reduce call (in rounds if needed) merges them;
the checklist is written per chunk concurrently and merged by category name, so
every chunk is covered. Chunk checklists see their own text only, not the
summary, so the chain runs them alongside the summary calls
(``checklist_without_summary``) instead of after the reduce.

One engine (one AsyncOpenAI client) is shared by all concurrent jobs, and so
is its limit of ``concurrency`` model requests in flight: the chunk calls of
long documents and the calls of short ones queue for the same slots, so
``--concurrency`` is what the model server sees, and one long document alone
can use every slot.

Failure policy (the worker retries ``TransientJobError`` jobs up to
``max_attempts`` with its own back-off):

* requests are retried here by tenacity (the SDK's own retries are off):
  429 (not ``insufficient_quota``), 408/409, 5xx, connection errors and
  timeouts, with exponential back-off and jitter, honouring ``Retry-After`` /
  ``retry-after-ms`` (capped). Timeouts get fewer tries (``timeout_tries``)
  than 5xx answers. When the tries are exhausted: TransientJobError.
* a truncated or malformed response body is retried like a 5xx.
* 400/401/403/404/422, ``insufficient_quota``, refusals, ``finish_reason`` of
  ``length``/``content_filter``, a 200 that is not a chat completion (a wrong
  base URL): PermanentJobError at once.
* a server that rejects ``json_schema`` response formats is asked again with
  ``json_object`` and then with the schema in the prompt only; the working mode
  is remembered for the engine's life.
* an answer that is not valid JSON for the schema gets one repair round-trip
  showing the model its errors; if that fails too the job is *transient*: a
  sampled model that answered garbage once often answers well on the next
  attempt, and the worker's ``max_attempts`` bounds the cost.

Messages never contain the API key: they are built from the status code and
the error body, then scrubbed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from avo_cli.engines.base import Document, StageResult, SummaryDraft, Usage, job_marks
from avo_cli.engines.openai_parse import AnswerError, estimate_tokens, parse_answer, split_document
from avo_cli.engines.openai_prompts import (
    CHECKLIST_SCHEMA_NAME,
    CHECKLIST_SYSTEM,
    PROMPT_VERSION,
    REDUCE_SYSTEM,
    REPAIR_PROMPT,
    SUMMARY_SCHEMA_NAME,
    SUMMARY_SYSTEM,
    checklist_schema,
    checklist_user,
    reduce_user,
    schema_instruction,
    summary_schema,
    summary_user,
    system_prompt,
)
from avo_cli.errors import EngineError, PermanentJobError, TransientJobError

if TYPE_CHECKING:
    import openai
    from pydantic import BaseModel

    from avo_cli.config import Settings

PLACEHOLDER_KEY = "not-needed"
DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: room a whole-document checklist call keeps for the summary it is shown: a title,
#: ~120 words and up to 7 key points, sized for Korean too (at most a quarter of the budget)
SUMMARY_ALLOWANCE = 1000

#: response-format modes, most structured first
MODES = ("json_schema", "json_object", "prompt")

_KEY_LIKE = re.compile(r"\b(sk|sess|org|proj)-[A-Za-z0-9_\-*]{6,}")
_SCHEMA_WORDS = ("response_format", "json_schema", "schema", "structured output", "json_object")


class _ErrorBody(Exception):
    """A 200 whose body is an error object (gateways report upstream failures so)."""


class _SchemaRejected(Exception):
    """The server does not support the response format that was sent."""


@dataclass
class _Stage:
    name: str  # schema name
    schema: dict[str, Any]
    model: type[BaseModel]


class OpenAIEngine:
    source = "openai_gpt"
    checkpoints = True
    max_concurrency: int | None = None
    marks_requests = True  # see ``_request``: a job is marked when a request takes a slot

    # --- request retry policy (attributes so tests can shrink them) ---
    #: tries per request (the first one included)
    request_tries = 4
    #: exponential back-off: backoff_base * 2**(n-1) + uniform(0, backoff_jitter), capped
    backoff_base = 1.0
    backoff_max = 8.0
    backoff_jitter = 0.5
    #: tries per request when the server does not answer within the timeout: a server
    #: that hangs once tends to hang again, and the worker retries the job anyway
    timeout_tries = 2
    #: longest Retry-After honoured; longer waits are cut to this
    retry_after_cap = 30.0
    #: model requests in flight at once without --concurrency
    default_concurrency = 4
    #: tokens kept free for the prompt and the answer (scaled down for small contexts)
    answer_reserve = 6000
    #: most document tokens one checklist call covers (its answer grows with them)
    checklist_chunk_tokens = 24_000

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        lang: str | None = None,
        context_tokens: int = 128_000,
        concurrency: int | None = None,
    ) -> None:
        import httpx2
        import openai

        if not api_key and not base_url:
            raise EngineError(
                "the openai engine needs an API key: set OPENAI_API_KEY, or --base-url "
                "for a local OpenAI-compatible server"
            )
        self.model = model
        self.lang = lang
        self.timeout = timeout
        self.context_tokens = context_tokens
        self.base_url = base_url or DEFAULT_BASE_URL
        self._secret = api_key or ""
        self._mode = MODES[0]
        self._openai = openai
        self._httpx2 = httpx2
        self.request_limit = max(1, concurrency or self.default_concurrency)
        # one engine serves one event loop (so does its client's connection pool)
        self._slots = asyncio.Semaphore(self.request_limit)
        pool = max(64, self.request_limit)
        # per request too: a float there would override the client's connect timeout
        self._timeouts = httpx2.Timeout(timeout, connect=min(10.0, timeout))
        self._http = openai.DefaultAsyncHttpx2Client(
            limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=self._timeouts,
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=self.base_url,
            timeout=timeout,
            max_retries=0,
            http_client=self._http,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEngine:
        if not settings.model or not settings.model.strip():
            raise EngineError("no model name: set --model or AVO_MODEL (e.g. gpt-4o-mini)")
        base_url = settings.base_url or None
        if base_url:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise EngineError(
                    f"invalid base URL {base_url!r}: expected http(s)://host[:port]/v1"
                )
        return cls(
            model=settings.model,
            api_key=settings.api_key,
            base_url=base_url,
            timeout=settings.timeout,
            lang=settings.lang,
            context_tokens=settings.context_tokens,
            concurrency=settings.concurrency,
        )

    # --- contract -------------------------------------------------------------

    @property
    def mode(self) -> str:
        """The response-format mode that currently works with the server."""
        return self._mode

    def cache_key(self) -> str:
        host = _host(self.base_url)
        return f"openai:{self.model}:p{PROMPT_VERSION}:{self.lang or 'auto'}:{host}"

    @property
    def chunk_budget(self) -> int:
        reserve = min(self.answer_reserve, self.context_tokens // 2)
        return max(16, self.context_tokens - reserve)

    async def summarize(self, doc: Document) -> StageResult:
        stage = _Stage(SUMMARY_SCHEMA_NAME, summary_schema(), _summary_model())
        system = system_prompt(SUMMARY_SYSTEM, self.lang)
        chunks = split_document(doc.text, self.chunk_budget)
        usage = Usage()
        if len(chunks) == 1:
            draft = await self._structured(system, summary_user(doc.text), stage, usage)
            return StageResult(draft=draft, usage=usage)
        total = len(chunks)

        async def one(index: int, chunk: str) -> dict[str, Any]:
            return await self._structured(system, summary_user(chunk, (index, total)), stage, usage)

        partials = list(await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks, 1))))
        reduce_system = system_prompt(REDUCE_SYSTEM, self.lang)

        async def merge(group: list[dict[str, Any]]) -> dict[str, Any]:
            return await self._structured(reduce_system, reduce_user(group), stage, usage)

        # partial summaries too long for one reduce call are merged in rounds
        while len(partials) > 1 and estimate_tokens(reduce_user(partials)) > self.chunk_budget:
            groups = _group_partials(partials, self.chunk_budget)
            if len(groups) == len(partials):  # each partial alone fills the budget
                break
            partials = list(await asyncio.gather(*(merge(g) for g in groups)))
        draft = await merge(partials)
        return StageResult(draft=draft, usage=usage)

    @property
    def checklist_budget(self) -> int:
        # a checklist is as long as the rules it covers: bound the text per call so the
        # answer stays well inside a model's output limit, not only the context window
        return min(self.chunk_budget, self.checklist_chunk_tokens)

    def checklist_without_summary(self, doc: Document) -> bool:
        """True when the checklist is written in chunks, which do not see the summary.

        A summary of the whole document helps one checklist call over the whole
        document; a chunk's call has its own part in full. Not waiting for the
        summary's map and reduce rounds lets the chain run both stages at once.
        """
        budget = self.checklist_budget
        return estimate_tokens(doc.text) > budget - min(SUMMARY_ALLOWANCE, budget // 4)

    async def checklist(self, doc: Document, summary: SummaryDraft | None) -> StageResult:
        stage = _Stage(CHECKLIST_SCHEMA_NAME, checklist_schema(), _checklist_model())
        system = system_prompt(CHECKLIST_SYSTEM, self.lang)
        usage = Usage()
        if not self.checklist_without_summary(doc):
            if summary is None:
                raise ValueError("a checklist over the whole document needs its summary")
            user = checklist_user(doc.text, dict(summary))
            draft = await self._structured(system, user, stage, usage)
            return StageResult(draft=draft, usage=usage)
        chunks = split_document(doc.text, self.checklist_budget)
        total = len(chunks)

        async def one(index: int, chunk: str) -> dict[str, Any]:
            user = checklist_user(chunk, None, (index, total) if total > 1 else None)
            return await self._structured(system, user, stage, usage)

        parts = await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks, 1)))
        return StageResult(draft=merge_checklists(list(parts)), usage=usage)

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    # --- one structured answer ---------------------------------------------------

    async def _structured(
        self, system: str, user: str, stage: _Stage, usage: Usage
    ) -> dict[str, Any]:
        """Ask for one JSON answer; one repair round-trip if it does not validate."""
        messages: list[dict[str, str]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        text = await self._chat(messages, stage, usage)
        try:
            return parse_answer(text, stage.model)
        except AnswerError as first:
            messages = [
                *messages,
                {"role": "assistant", "content": (text or "")[:8000]},
                {
                    "role": "user",
                    "content": REPAIR_PROMPT.format(errors=str(first), schema=_dumps(stage.schema)),
                },
            ]
        text = await self._chat(messages, stage, usage)
        try:
            return parse_answer(text, stage.model)
        except AnswerError as second:
            raise TransientJobError(
                f"model {self.model} gave no valid {stage.name} JSON even after a repair "
                f"request: {_one_line(str(second))}"
            ) from None

    async def _chat(
        self, messages: list[dict[str, str]], stage: _Stage, usage: Usage
    ) -> str | None:
        """One completion in the best mode the server accepts; returns the content."""
        while True:
            mode = self._mode
            kwargs: dict[str, Any] = {}
            sent = messages
            if mode == "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": stage.name, "strict": True, "schema": stage.schema},
                }
            else:
                if mode == "json_object":
                    kwargs["response_format"] = {"type": "json_object"}
                extra = schema_instruction(stage.name, stage.schema)
                sent = [
                    {"role": "system", "content": f"{messages[0]['content']}\n\n{extra}"},
                    *messages[1:],
                ]
            try:
                response = await self._request(sent, kwargs)
            except _SchemaRejected:
                next_mode = MODES[MODES.index(mode) + 1]
                if self._mode == mode:
                    self._mode = next_mode
                continue
            return self._content(response, usage)

    def _content(self, response: Any, usage: Usage) -> str | None:
        """The answer's text from a chat completion body (a dict, as JSON decoded it)."""
        if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
            # e.g. an HTML page: a base URL that is not the API root (it usually ends in /v1)
            raise PermanentJobError(
                f"{self._where()} did not answer with a chat completion; check --base-url "
                "(usually ending in /v1)"
            )
        u = _dict(response.get("usage"))
        usage.add(
            Usage(
                prompt_tokens=_count(u.get("prompt_tokens")),
                completion_tokens=_count(u.get("completion_tokens")),
                calls=1,
            )
        )
        choices = response["choices"]
        if not choices:
            raise TransientJobError(f"model {self.model} returned no choices")
        choice = _dict(choices[0])
        message = _dict(choice.get("message"))
        refusal = message.get("refusal")
        if refusal:
            raise PermanentJobError(
                self._scrub(f"model {self.model} refused the request: {_one_line(str(refusal))}")
            )
        reason = choice.get("finish_reason")
        if reason == "length":
            raise PermanentJobError(
                f"model {self.model} answer was cut off at its token limit "
                "(finish_reason=length); use a model with a larger output limit"
            )
        if reason == "content_filter":
            raise PermanentJobError(f"model {self.model} answer was blocked by the content filter")
        return _text_of(message.get("content"))

    # --- one HTTP request with retries ---------------------------------------------

    async def _request(self, messages: list[dict[str, str]], kwargs: dict[str, Any]) -> Any:
        from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

        oa = self._openai
        tries = max(1, self.request_tries)
        timeouts = 0
        made = 0

        def stop(state: RetryCallState) -> bool:
            nonlocal timeouts
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, oa.APITimeoutError):
                timeouts += 1
            return state.attempt_number >= tries or timeouts >= max(1, self.timeout_tries)

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    made = attempt.retry_state.attempt_number
                    # The client's documented raw path (``post`` with ``cast_to`` the HTTP
                    # response) rather than ``chat.completions.create``: our dicts are
                    # already wire format, and the SDK's TypedDict transform of the
                    # arguments and its pydantic ChatCompletion cost ~0.8 ms of CPU per
                    # call, which caps throughput at high concurrency. Status errors,
                    # auth and timeouts are the client's as before.
                    async with self._slots:  # held per try, not during a back-off
                        if (marks := job_marks.get()) is not None:
                            marks.requested = True
                        response = await self._client.post(
                            "/chat/completions",
                            cast_to=self._httpx2.Response,
                            body={"model": self.model, "messages": messages, **kwargs},
                            options={"timeout": self._timeouts},
                        )
                    return _json_body(response)
        except oa.APIStatusError as exc:
            raise self._status_error(exc, kwargs, made) from None
        except oa.APIConnectionError as exc:
            raise self._connection_error(exc, made) from None
        except _ErrorBody as exc:
            msg = f"{self._where()} answered with an error instead of a completion {_tries(made)}"
            raise TransientJobError(self._scrub(f"{msg}: {exc}")) from None
        except (ValueError, oa.APIError) as exc:  # a truncated or malformed response body
            msg = f"{self._where()} sent a malformed response {_tries(made)} in a row"
            raise TransientJobError(f"{msg} ({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _retryable(self, exc: BaseException) -> bool:
        oa = self._openai
        if isinstance(exc, oa.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(exc, oa.APIStatusError):
            status = exc.status_code
            if status == 429:
                return _error_code(exc) != "insufficient_quota"
            return status in (408, 409) or status >= 500
        # a truncated or malformed body (JSONDecodeError is a ValueError), or a 200
        # carrying an error object: both are worth another try
        return isinstance(exc, (ValueError, oa.APIError, _ErrorBody))

    def _wait(self, retry_state: Any) -> float:
        import random

        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        hinted = retry_after(exc) if exc is not None else None
        if hinted is not None:
            return min(max(hinted, 0.0), self.retry_after_cap)
        n = max(1, retry_state.attempt_number)
        delay = self.backoff_base * 2 ** (n - 1) + random.uniform(0, self.backoff_jitter)
        return float(min(delay, self.backoff_max))

    def _status_error(self, exc: Any, kwargs: dict[str, Any], made: int) -> Exception:
        status = int(exc.status_code)
        code = _error_code(exc)
        detail = _one_line(_error_message(exc))
        where = self._where()
        text = f"HTTP {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
        if status in (400, 422) and "response_format" in kwargs:
            lowered = detail.lower()
            if any(word in lowered for word in _SCHEMA_WORDS):
                return _SchemaRejected(text)
        if status == 429 and code == "insufficient_quota":
            msg = f"{where} has no quota left for this API key ({text}); check billing"
            return PermanentJobError(self._scrub(msg))
        if status == 429:
            msg = f"{where} kept rate-limiting after {_tries(made)} ({text})"
            return TransientJobError(self._scrub(msg))
        if status >= 500 or status in (408, 409):
            msg = f"{where} kept failing after {_tries(made)} ({text})"
            return TransientJobError(self._scrub(msg))
        hint = {
            401: "authentication failed; check OPENAI_API_KEY",
            403: "permission denied for this key or model",
            404: f"model {self.model!r} or endpoint not found; check --model and --base-url",
        }.get(status, "request rejected")
        return PermanentJobError(self._scrub(f"{where} {hint} ({text})"))

    def _connection_error(self, exc: Any, made: int) -> Exception:
        where = self._where()
        if isinstance(exc, self._openai.APITimeoutError):
            msg = f"{where} did not answer within {self.timeout:g}s ({_tries(made)})"
        else:
            cause = exc.__cause__ or exc.__context__
            reason = _one_line(f"{type(cause).__name__}: {cause}") if cause else "connection error"
            msg = f"cannot reach {where} after {_tries(made)} ({reason})"
        return TransientJobError(self._scrub(msg))

    def _where(self) -> str:
        host = _host(self.base_url) or "the server"
        return f"OpenAI-compatible server {host}"

    def _scrub(self, text: str) -> str:
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return _KEY_LIKE.sub(lambda m: f"{m.group(1)}-***", text)


# --- helpers ------------------------------------------------------------------


def _json_body(response: Any) -> Any:
    """The decoded body; ``None`` when it is not JSON at all (an HTML page, say).

    A body that claims to be JSON and does not parse (truncated by a proxy) raises
    ``ValueError``, which is retried like a 5xx.
    """
    content_type = response.headers.get("content-type", "")
    try:
        body = json.loads(response.content)
    except ValueError:
        if "json" in content_type:
            raise
        return None
    if isinstance(body, dict) and body.get("error") and "choices" not in body:
        # some gateways (LiteLLM, OpenRouter) report upstream failures with a 200
        error = body["error"]
        detail = error.get("message") if isinstance(error, dict) else error
        raise _ErrorBody(_one_line(str(detail or "no message")))
    return body


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list (some servers send parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _group_partials(partials: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """Consecutive groups of at least two partial summaries, each within the budget if possible."""
    groups: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for partial in partials:
        candidate = [*current, partial]
        if len(current) >= 2 and estimate_tokens(reduce_user(candidate)) > budget:
            groups.append(current)
            current = [partial]
        else:
            current = candidate
    if current:
        if len(current) == 1 and groups:
            groups[-1].append(current[0])
        else:
            groups.append(current)
    return groups


def _summary_model() -> type[BaseModel]:
    from avo_cli.schema import SummaryDraftModel

    return SummaryDraftModel


def _checklist_model() -> type[BaseModel]:
    from avo_cli.schema import ChecklistDraftModel

    return ChecklistDraftModel


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _host(url: str) -> str:
    """host[:port] of a URL, never its user:password part."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    return f"{host}:{port}" if port else host


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _error_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else body
    return {}


def _error_code(exc: Any) -> str | None:
    code = getattr(exc, "code", None) or _error_body(exc).get("code")
    if code is None:
        code = _error_body(exc).get("type")
    return str(code) if code else None


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    message = _error_body(exc).get("message")
    if isinstance(message, str):
        return message
    if isinstance(body, str):
        return body
    detail = _error_body(exc).get("detail")
    return str(detail) if detail else ""


def retry_after(exc: BaseException | None, now: float | None = None) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return float(raw_ms) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def merge_checklists(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-chunk checklists: categories by name (first-seen order), items deduplicated."""
    merged: dict[str, dict[str, Any]] = {}
    seen: dict[str, set[str]] = {}
    for part in parts:
        for category in part.get("categories", []):
            name = str(category.get("name", "")).strip() or "General"
            key = name.casefold()
            if key not in merged:
                merged[key] = {"name": name, "items": []}
                seen[key] = set()
            for item in category.get("items", []):
                norm = " ".join(str(item.get("text", "")).casefold().split())
                if not norm or norm in seen[key]:
                    continue
                seen[key].add(norm)
                merged[key]["items"].append(
                    {"text": item["text"], "required": bool(item.get("required", False))}
                )
    return {"categories": [c for c in merged.values() if c["items"]]}


if TYPE_CHECKING:  # the engine satisfies the contract
    from avo_cli.engines.base import Engine

    _check: type[Engine] = OpenAIEngine
    _unused: openai.AsyncOpenAI
