"""A stored job as the seed API's job JSON, and the bytes every surface prints.

``avo status --json``, ``avo run`` and ``GET /api/jobs/{id}`` all call
``job_json`` and ``dump_json`` so they agree byte for byte, whatever the
backend.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from avo_cli.store.base import JobRow

MESSAGES = {
    "en": {
        "pending": "Job is queued.",
        "processing": "Job is being processed.",
        "completed": "Job completed.",
        "failed": "Job failed: {error}",
        "cancelled": "Job was cancelled.",
        "retrying": "Job is queued for another attempt after an error: {error}",
    },
    "ko": {
        "pending": "작업이 대기 중입니다.",
        "processing": "작업을 처리하고 있습니다.",
        "completed": "작업이 완료되었습니다.",
        "failed": "작업이 실패했습니다: {error}",
        "cancelled": "작업이 취소되었습니다.",
        "retrying": "오류 후 다시 시도하기 위해 대기 중입니다: {error}",
    },
}


def message_lang() -> str:
    lang = os.environ.get("AVO_LANG", "").lower()
    return "ko" if lang.startswith("ko") else "en"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def message(row: JobRow, lang: str | None = None) -> str:
    texts = MESSAGES[lang or message_lang()]
    key = row.status
    if key == "pending" and row.error:
        key = "retrying"
    return texts[key].format(error=row.error or "unknown error")


def job_json(row: JobRow, lang: str | None = None) -> dict[str, Any]:
    """Exactly the seed's keys, in the seed's order."""
    result = json.loads(row.result) if row.status == "completed" and row.result else None
    return {
        "event_id": row.event_id,
        "status": row.status,
        "message": message(row, lang),
        "result": result,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def list_json(row: JobRow) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "status": row.status,
        "source": row.source,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def dump_json(obj: Any) -> str:
    """The one JSON serialisation: UTF-8 text, two-space indent, keys in order."""
    return json.dumps(obj, ensure_ascii=False, indent=2)


def dump_json_line(obj: Any) -> str:
    """``dump_json``'s compact twin: the same object on one line (JSON Lines)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def verbose_details(row: JobRow) -> dict[str, Any]:
    """What ``status --verbose`` adds beside the seed schema: attempts, engine, tokens."""
    usage = json.loads(row.usage) if row.usage else None
    details: dict[str, Any] = {
        "source": row.source,
        "size": row.size,
        "sha256": row.sha256,
        "attempts": row.attempts,
        "engine": row.engine,
        "model": row.model,
        "error": row.error,
        "started_at": iso(row.started_at) if row.started_at else None,
        "finished_at": iso(row.finished_at) if row.finished_at else None,
        "usage": usage,
        "cost_usd": _rounded(job_cost(row.model, usage_totals(usage))),
    }
    return details


def usage_totals(usage: Any) -> tuple[int, int, int] | None:
    """(prompt tokens, completion tokens, calls) of a job's recorded usage.

    Takes the stored JSON text or its parsed form; None when absent or unreadable.
    The one reader of ``usage.total`` for status, the terminal view and ``avo stats``.
    """
    if isinstance(usage, str):
        try:
            usage = json.loads(usage)
        except ValueError:
            return None
    total = usage.get("total") if isinstance(usage, dict) else None
    if not isinstance(total, dict):
        return None
    try:
        return (
            int(total.get("prompt_tokens", 0)),
            int(total.get("completion_tokens", 0)),
            int(total.get("calls", 0)),
        )
    except (TypeError, ValueError):
        return None


def job_cost(model: str | None, totals: tuple[int, int, int] | None) -> float | None:
    """Dollar cost of a job's model calls; None when unpriced or nothing was called."""
    if not model or totals is None or not totals[2]:
        return None
    from avo_cli.pricing import cost

    return cost(model, totals[0], totals[1])


def _rounded(price: float | None) -> float | None:
    return None if price is None else round(price, 6)
