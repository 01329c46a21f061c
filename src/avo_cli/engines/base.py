"""The engine contract shared by the chain, the worker and every engine.

An engine produces *drafts*: what a model (or the offline extractor) can be
trusted to write. Everything derivable (``word_count``, item ids,
``total_items``, ``required_items``, ``_source``, ``_model``) is computed by
``avo_cli.chain`` in code, never taken from the engine.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict


class SummaryDraft(TypedDict):
    title: str
    content: str
    key_points: list[str]


class ItemDraft(TypedDict):
    text: str
    required: bool


class CategoryDraft(TypedDict):
    name: str
    items: list[ItemDraft]


class ChecklistDraft(TypedDict):
    categories: list[CategoryDraft]


@dataclass
class Usage:
    """Tokens one stage spent; ``None`` counts mean the engine does not meter."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "calls": self.calls,
        }


@dataclass
class Document:
    """What a worker hands an engine: the stored text and its origin."""

    event_id: str
    source: str
    text: str
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobMarks:
    """What an engine tells the worker about the job it runs (see ``job_marks``)."""

    #: a model request of this job has taken a request slot: it costs money now
    requested: bool = False


#: The running job's marks, set by the worker in each job's task (child tasks share it).
job_marks: ContextVar[JobMarks | None] = ContextVar("avo_job_marks", default=None)


@dataclass
class StageResult:
    draft: Any  # SummaryDraft or ChecklistDraft
    usage: Usage = field(default_factory=Usage)


class Engine(Protocol):
    """An engine is stateless per job and safe to share between concurrent jobs.

    ``summarize`` and ``checklist`` raise ``avo_cli.errors.TransientJobError``
    for failures worth retrying later and ``PermanentJobError`` otherwise; any
    other exception is a bug and fails the job with its message.
    """

    source: str  # the ``_source`` tag of results, e.g. "local_extractive"
    model: str  # the ``_model`` tag of results
    #: True when stage 1 is costly enough to checkpoint before stage 2.
    checkpoints: bool
    #: Jobs one process may run at once; the offline engine is CPU-bound.
    max_concurrency: int | None
    #: True when the engine sets ``job_marks`` as a job's first model request goes out,
    #: so a stopping worker can hand back jobs still waiting for a request slot.
    marks_requests: bool

    def cache_key(self) -> str | None:
        """Identity of (engine, model, prompt version) for result reuse, or None."""
        ...

    async def summarize(self, doc: Document) -> StageResult: ...

    def checklist_without_summary(self, doc: Document) -> bool:
        """True when ``checklist`` will not use the summary for this document (it is
        written in parts), so the chain may run both stages at once."""
        ...

    async def checklist(self, doc: Document, summary: SummaryDraft | None) -> StageResult: ...

    async def aclose(self) -> None: ...
