"""The two-stage chain, whatever the engine: summary, then checklist.

Engines write drafts; this module owns everything derived from them:
``word_count``, item ids, ``total_items``, ``required_items``, the
``_source``/``_model`` tags, and the clean-up that keeps a result inside the
contract (empty items and categories dropped, text trimmed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from avo_cli.engines.base import Document, Engine, StageResult, SummaryDraft, Usage
from avo_cli.errors import JobError, PermanentJobError

MAX_KEY_POINTS = 7


@dataclass
class ChainOutcome:
    result: dict[str, Any]
    usage: dict[str, Any] = field(default_factory=dict)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise PermanentJobError(f"engine returned a non-text {what}")
    return value.strip()


def normalise_summary(draft: Any) -> SummaryDraft:
    if not isinstance(draft, dict):
        raise PermanentJobError("engine returned a summary that is not an object")
    points = draft.get("key_points")
    if not isinstance(points, list):
        raise PermanentJobError("engine returned a summary without key_points")
    key_points = [p for p in (_text(p, "key point") for p in points) if p][:MAX_KEY_POINTS]
    content = _text(draft.get("content"), "summary content")
    title = _text(draft.get("title"), "title")
    if not content:
        raise PermanentJobError("engine returned an empty summary")
    if not key_points:
        key_points = [title or content.split(". ")[0]]
    return {"title": title, "content": content, "key_points": key_points}


def build_summary(draft: SummaryDraft, engine: Engine) -> dict[str, Any]:
    return {
        "_source": engine.source,
        "_model": engine.model,
        "title": draft["title"],
        "content": draft["content"],
        "key_points": list(draft["key_points"]),
        "word_count": len(draft["content"].split()),
    }


def build_checklist(draft: Any, engine: Engine) -> dict[str, Any]:
    if not isinstance(draft, dict) or not isinstance(draft.get("categories"), list):
        raise PermanentJobError("engine returned a checklist without categories")
    categories: list[dict[str, Any]] = []
    next_id = 1
    required = 0
    for cat in draft["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("items"), list):
            raise PermanentJobError("engine returned a malformed checklist category")
        items = []
        for item in cat["items"]:
            if not isinstance(item, dict) or not isinstance(item.get("required"), bool):
                raise PermanentJobError("engine returned a malformed checklist item")
            text = _text(item.get("text"), "checklist item")
            if not text:
                continue
            items.append({"id": next_id, "text": text, "required": item["required"]})
            required += item["required"]
            next_id += 1
        if items:
            name = _text(cat.get("name"), "category name") or "General"
            categories.append({"name": name, "items": items})
    return {
        "_source": engine.source,
        "_model": engine.model,
        "categories": categories,
        "total_items": next_id - 1,
        "required_items": required,
    }


async def run_chain(
    engine: Engine,
    doc: Document,
    checkpoint: str | None,
    save_checkpoint: Callable[[str], None] | None,
) -> ChainOutcome:
    """Run stage 1 (unless checkpointed) and stage 2; return the result JSON.

    A ``JobError`` leaves with ``usage`` set to what the finished stages spent, so a
    failed job's cost is still recorded.
    """
    usage: dict[str, Any] = {}
    try:
        return await _run_stages(engine, doc, checkpoint, save_checkpoint, usage)
    except JobError as exc:
        exc.usage = usage
        raise


async def _run_stages(
    engine: Engine,
    doc: Document,
    checkpoint: str | None,
    save_checkpoint: Callable[[str], None] | None,
    usage: dict[str, Any],
) -> ChainOutcome:
    summary: SummaryDraft | None = None
    if checkpoint:
        try:
            summary = normalise_summary(json.loads(checkpoint)["summary"])
            usage["summary"] = json.loads(checkpoint).get("usage")
            usage["summary_from_checkpoint"] = True
        except (ValueError, KeyError, TypeError, PermanentJobError):
            summary = None  # a damaged checkpoint costs one stage-1 call, nothing more
    if summary is not None:
        stage2 = await engine.checklist(doc, summary)
    elif engine.checklist_without_summary(doc):
        summary, stage2 = await _both_at_once(engine, doc, save_checkpoint, usage)
    else:
        summary = await _stage_one(engine, doc, save_checkpoint, usage)
        stage2 = await engine.checklist(doc, summary)
    usage["checklist"] = stage2.usage.as_dict()
    result = {
        "summary": build_summary(summary, engine),
        "checklist": build_checklist(stage2.draft, engine),
    }
    return ChainOutcome(result=result, usage=usage)


async def _stage_one(
    engine: Engine,
    doc: Document,
    save_checkpoint: Callable[[str], None] | None,
    usage: dict[str, Any],
) -> SummaryDraft:
    stage1 = await engine.summarize(doc)
    summary = normalise_summary(stage1.draft)
    usage["summary"] = stage1.usage.as_dict()
    if engine.checkpoints and save_checkpoint is not None:
        save_checkpoint(
            json.dumps({"summary": summary, "usage": usage["summary"]}, ensure_ascii=False)
        )
    return summary


async def _both_at_once(
    engine: Engine,
    doc: Document,
    save_checkpoint: Callable[[str], None] | None,
    usage: dict[str, Any],
) -> tuple[SummaryDraft, StageResult]:
    """Stage 1 and a summary-free stage 2 at once.

    Stage 1 starts first, so its calls queue for the engine's request slots ahead
    of the checklist's, and it is checkpointed the moment it is done. A failure of
    stage 1, or a permanent one of stage 2, cancels the other stage; after a
    transient stage-2 failure stage 1 finishes and is checkpointed first, so the
    job's retry does not pay for the summary again.
    """
    stage1 = asyncio.ensure_future(_stage_one(engine, doc, save_checkpoint, usage))
    stage2 = asyncio.ensure_future(engine.checklist(doc, None))
    try:
        await asyncio.wait((stage1, stage2), return_when=asyncio.FIRST_EXCEPTION)
        failed = stage2.done() and stage2.exception()
        if failed:
            if _transient(failed):
                await asyncio.wait((stage1,))
                if stage1.exception() is not None and not _transient(stage1.exception()):
                    await stage1  # a permanent failure decides the job, not a transient one
            await stage2  # raises the checklist's error
        return await stage1, await stage2
    finally:
        for task in (stage1, stage2):
            task.cancel()  # no-op for a finished task
        # retrieves every outcome; a cancellation of this job itself still propagates
        await asyncio.gather(stage1, stage2, return_exceptions=True)


def _transient(exc: BaseException | None) -> bool:
    return isinstance(exc, JobError) and exc.transient


def total_usage(usage: dict[str, Any]) -> Usage:
    total = Usage()
    for key in ("summary", "checklist"):
        part = usage.get(key)
        if isinstance(part, dict):
            total.add(
                Usage(
                    int(part.get("prompt_tokens", 0)),
                    int(part.get("completion_tokens", 0)),
                    int(part.get("calls", 0)),
                )
            )
    return total
