"""The job JSON contract of the original AVO API, in one place.

``Job`` and its parts describe exactly what ``avo status --json`` prints (and
``GET /api/jobs/{id}`` serves). The ``*Draft`` models are the part of it an
engine writes; the OpenAI engine derives its structured-output schemas from
them, and ``avo_cli.chain`` adds everything computed in code.

pydantic is only imported by code that validates (the worker, the tests);
``avo status`` builds its JSON from stored rows without it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "processing", "completed", "failed", "cancelled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- what an engine writes -------------------------------------------------


class SummaryDraftModel(_Strict):
    title: str = Field(description="Title of the guideline document")
    content: str = Field(description="Summary of the document, at most about 120 words")
    key_points: list[str] = Field(description="The most important points, 1 to 7 items")


class ItemDraftModel(_Strict):
    text: str = Field(description="A yes/no check question traceable to one rule")
    required: bool = Field(description="True for mandatory rules, false for recommendations")


class CategoryDraftModel(_Strict):
    name: str = Field(description="Category name, usually a section of the document")
    items: list[ItemDraftModel]


class ChecklistDraftModel(_Strict):
    categories: list[CategoryDraftModel]


# --- what avo prints ---------------------------------------------------------


class Summary(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="_source")
    model: str = Field(alias="_model")
    title: str
    content: str
    key_points: list[str]
    word_count: int


class ChecklistItem(_Strict):
    id: int
    text: str
    required: bool


class Category(_Strict):
    name: str
    items: list[ChecklistItem]


class Checklist(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="_source")
    model: str = Field(alias="_model")
    categories: list[Category]
    total_items: int
    required_items: int


class Result(_Strict):
    summary: Summary
    checklist: Checklist


class Job(_Strict):
    event_id: str
    status: Status
    message: str
    result: Result | None
    created_at: str
    updated_at: str


JOB_KEYS = ("event_id", "status", "message", "result", "created_at", "updated_at")
SUMMARY_KEYS = ("_source", "_model", "title", "content", "key_points", "word_count")
CHECKLIST_KEYS = ("_source", "_model", "categories", "total_items", "required_items")
CATEGORY_KEYS = ("name", "items")
ITEM_KEYS = ("id", "text", "required")
